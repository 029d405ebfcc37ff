"""envs/uv_args.py: uv gets the package sources pip is configured with."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "envs" / "uv_args.py"


def _module():
    spec = importlib.util.spec_from_file_location("uv_args", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_environment_overrides_the_config_files_and_every_value_is_passed():
    listing = "\n".join([
        "global.cert='/etc/ssl/certs/ca.crt'",
        "global.find-links='/opt/wheels'",
        "global.extra-index-url='file:///a/simple file:///b/simple'",
        "install.constraint='/etc/constraints.txt'",
        ":env:.find-links='/local/wheels'",
        ":env:.disable-pip-version-check='1'",
    ])
    args = _module().uv_args(listing)
    pairs = list(zip(args[::2], args[1::2]))
    assert ("--find-links", "/local/wheels") in pairs and ("--find-links", "/opt/wheels") not in pairs
    assert pairs.count(("--extra-index-url", "file:///a/simple")) == 1
    assert ("--extra-index-url", "file:///b/simple") in pairs
    assert ("--constraint", "/etc/constraints.txt") in pairs
    # pip picks the best version across its indexes; uv must be told to do the same
    assert pairs[-1] == ("--index-strategy", "unsafe-best-match")
    assert not any("cert" in a or "version-check" in a for a in args)


def test_no_pip_sources_means_no_arguments_at_all(tmp_path):
    # an empty line would reach uv as an empty argument and stop the set-up
    assert _module().uv_args("global.timeout='60'\n") == []
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull  # pip reads no configuration file at all
    out = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert out == ""
    env["PIP_FIND_LINKS"] = str(tmp_path)
    out = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert out.splitlines() == ["--find-links", str(tmp_path)]
