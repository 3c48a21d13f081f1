"""Atomic file writes: everything a stage commits is written to NAME.tmp and renamed into place, so a
kill leaves either the old file or the new one, never half of one."""
from __future__ import annotations

import os
from pathlib import Path


def atomic_write(path, write) -> Path:
    """Call `write(tmp_path)`, then rename tmp_path to `path` (same folder, so the rename is atomic)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)
    return path
