#!/usr/bin/env bash
# Create ./.venv (if needed) and install flexcore with everything the demo and tests use.
# torch==2.13.0 (CPU) is installed first when no torch is present, so the package's torch
# range does not pull a multi-GB CUDA build; users with their own CUDA torch keep theirs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# Packages go in through uv when it is on PATH or installs into the venv (here: 42 s
# against pip's 130 s), with pip's own sources and constraints (envs/uv_args.py); else pip.
INSTALL=(.venv/bin/python -m pip install --quiet)
UV=$(command -v uv || true)
if [ -z "$UV" ] && .venv/bin/python -m pip install --quiet uv >/dev/null 2>&1; then
  UV=.venv/bin/uv
fi
if [ -n "$UV" ]; then
  mapfile -t PIP_SOURCES < <(.venv/bin/python envs/uv_args.py)
  INSTALL=("$UV" pip install --quiet --python .venv/bin/python --compile-bytecode "${PIP_SOURCES[@]}")
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  "${INSTALL[@]}" "torch==2.13.0"
fi
"${INSTALL[@]}" -e ".[dev,workflow]"
# Build the native CPU kernel now (under a minute), so the first run does not; without a C++
# compiler flexcore uses its PyTorch reference operator instead, which is slower.
.venv/bin/python -m flexcore.core.ops.cpu --build \
  || echo "bootstrap: the native CPU kernel did not build; flexcore will use the slower PyTorch reference"
.venv/bin/python -c "import flexcore, torch, snakemake; print('flexcore', flexcore.__version__, '| torch', torch.__version__, '| snakemake', snakemake.__version__ if hasattr(snakemake, '__version__') else '')"
