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
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install --quiet "torch==2.13.0"
fi
.venv/bin/python -m pip install --quiet -e ".[dev,workflow]"
# Build the native CPU kernel now (under a minute), so the first run does not; without a C++
# compiler flexcore uses its PyTorch reference operator instead, which is slower.
.venv/bin/python -m flexcore.core.ops.cpu --build \
  || echo "bootstrap: the native CPU kernel did not build; flexcore will use the slower PyTorch reference"
.venv/bin/python -c "import flexcore, torch, snakemake; print('flexcore', flexcore.__version__, '| torch', torch.__version__, '| snakemake', snakemake.__version__ if hasattr(snakemake, '__version__') else '')"
