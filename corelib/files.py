"""Files a stage commits: atomic writes (NAME.tmp renamed into place, so a kill leaves the old file or the
new one, never half of one), deterministic gzip, sha256, and the settings record of a resumable folder."""
from __future__ import annotations

import gzip
import hashlib
import json
import os
from pathlib import Path


def sha256_file(path) -> str:
    """Hex sha256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write(path, write) -> Path:
    """Call `write(tmp_path)`, then rename tmp_path to `path` (same folder, so the rename is atomic)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)
    return path


def atomic_gzip(path, write) -> Path:
    """Call `write(gz)` with a deterministic gzip stream (no name, mtime 0, level 9) written atomically to
    `path`: the same content gives the same bytes (the committed data files rebuild byte for byte)."""
    def to_tmp(tmp: Path) -> None:
        with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
            write(gz)

    return atomic_write(path, to_tmp)


def record_settings(path, settings: dict, ignore=(), write: bool = True, defaults: dict | None = None) -> list[str]:
    """Compare `settings` with the JSON recorded at `path` (keys in `ignore` aside) and return the keys
    that differ; with none recorded yet, record them (if `write`) and return []. With `defaults` (every current
    key's default value), a record older than the settings still matches: a key it lacks counts as equal when
    its value is the default, and a key no longer among the settings is ignored."""
    path = Path(path)
    now = {k: v for k, v in json.loads(json.dumps(settings)).items() if k not in ignore}
    if path.exists():
        before = {k: v for k, v in json.loads(path.read_text()).items() if k not in ignore}
        if defaults is not None:
            defaults = json.loads(json.dumps(defaults))
            before = {**{k: v for k, v in now.items() if k not in before and v == defaults.get(k)},
                      **{k: v for k, v in before.items() if k in now}}
        return sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    if write:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings, indent=2, sort_keys=True))
    return []
