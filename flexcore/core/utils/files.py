"""File fingerprints: SHA-256 of a file's bytes (checkpoints record their mesh and prepared
particles by it; resume decisions compare them)."""

from __future__ import annotations

import hashlib


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
