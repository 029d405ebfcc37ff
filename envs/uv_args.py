"""Print, one per line, the uv options that repeat pip's configured package sources.

envs/bootstrap.sh installs with uv when it can (it is several times faster than pip), but uv
does not read pip's configuration. A machine that points pip at local wheels, a mirror or a
constraints file (``pip config list``: find-links, index-url, extra-index-url, constraint)
must get the same packages through uv, or uv would fetch others from PyPI: a CUDA torch
instead of the local CPU wheel, for one. Run with the venv's python:
``mapfile -t ARGS < <(.venv/bin/python envs/uv_args.py)``.
"""

import shlex
import subprocess
import sys

# pip's option name -> uv's flag (uv's --index-url/--extra-index-url are pip's meaning)
FLAGS = {
    "find-links": "--find-links",
    "index-url": "--index-url",
    "extra-index-url": "--extra-index-url",
    "constraint": "--constraint",
}
# pip's precedence, lowest first: the config files' sections, then the environment
SECTIONS = ("global", "install", ":env:")


def pip_config(listing: str) -> dict[str, list[str]]:
    """The source options in ``pip config list`` output, each from the section pip obeys."""
    found: dict[tuple[str, str], list[str]] = {}
    for line in listing.splitlines():
        key, sep, value = line.partition("=")
        section, _, name = key.rpartition(".")
        if not sep or name not in FLAGS or section not in SECTIONS:
            continue
        found[(section, name)] = [v for item in shlex.split(value) for v in item.split()]
    chosen: dict[str, list[str]] = {}
    for section in SECTIONS:
        for (sec, name), values in found.items():
            if sec == section:
                chosen[name] = values
    return chosen


def uv_args(listing: str) -> list[str]:
    config = pip_config(listing)
    args = [arg for name, values in config.items() for value in values for arg in (FLAGS[name], value)]
    if "extra-index-url" in config:
        # pip takes the best version from all its indexes; uv by default only looks at the
        # first index that lists a package. Several local indexes need pip's behaviour.
        args += ["--index-strategy", "unsafe-best-match"]
    return args


def main() -> None:
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    for arg in uv_args(listing):
        print(arg)


if __name__ == "__main__":
    main()
