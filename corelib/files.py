"""Files a stage commits and reads back: atomic writes (NAME.tmp renamed into place, so a kill leaves the old file
or the new one, never half of one, and a failed write leaves neither a .tmp nor a traceback), deterministic gzip,
sha256, the settings record of a resumable folder, and the readers of JSON and .npy files and of a run's own
intermediate files (one line naming a missing, empty, truncated or foreign file)."""
from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import json
import os
import stat
from pathlib import Path

import numpy as np

from corelib.errors import InputError, warn, write_fault


def sha256_file(path) -> str:
    """Hex sha256 of a file, streamed (remembered per path, size, mtime and inode, so a pool is hashed once per
    process); a missing file or a folder is an InputError naming it."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{path}: is a folder, expected a file")
    return _sha256(str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)


@functools.lru_cache(maxsize=256)
def _sha256(path: str, size: int, mtime_ns: int, inode: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write(path, write) -> Path:
    """Call `write(tmp_path)`, then rename tmp_path to `path` (same folder, so the rename is atomic). Any failure
    removes tmp_path; a write the machine refuses (disk full, no permission, read-only media: `WRITE_FAULTS`) is
    one InputError naming `path`, and the files finished before it stay as they were."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        fault = write_fault(exc)
        if fault is not None:
            raise InputError(f"{path}: cannot write it: {fault.strerror or os.strerror(fault.errno)} "
                             f"(the files finished before it are kept)") from None
        raise
    return path


def atomic_gzip(path, write) -> Path:
    """Call `write(gz)` with a deterministic gzip stream (no name, mtime 0, level 9) written atomically to
    `path`: the same content gives the same bytes (the committed data files rebuild byte for byte)."""
    def to_tmp(tmp: Path) -> None:
        with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
            write(gz)

    return atomic_write(path, to_tmp)


def save_npy(path, array) -> Path:
    """An array as a .npy file, written atomically (through a handle: np.save would add .npy to a .tmp name)."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, np.asarray(array))

    return atomic_write(path, write)


def save_json(path, data) -> Path:
    """A JSON object written atomically (sorted keys, indented)."""
    return atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, sort_keys=True)))


def _readable(path: Path, what: str) -> Path:
    if not path.exists():
        raise InputError(f"{path}: {what} not found")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected a {what}")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes), expected a {what}")
    return path


def read_json(path, what: str = "JSON file") -> dict:
    """A JSON object a user or an earlier run wrote; a missing, empty, truncated or foreign file is one InputError
    naming it and what is wrong."""
    path = _readable(Path(path), what)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"{path}: binary data, expected a {what} (JSON)") from None
    except ValueError as exc:
        raise InputError(f"{path}: not a {what}: damaged or truncated JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: not a {what} (a JSON {type(data).__name__}, expected an object)")
    return data


def read_npy(path, what: str = ".npy array", kind: str = "iu", ndim: int = 1) -> np.ndarray:
    """A .npy array (no pickles) of `ndim` dimensions and a dtype kind in `kind`; a missing, empty, truncated or
    foreign file is one InputError naming it and what is wrong."""
    path = _readable(Path(path), what)
    try:
        with open(path, "rb") as fh:
            array = np.load(fh, allow_pickle=False)
    except Exception as exc:   # noqa: BLE001 - numpy raises several types for a damaged file
        first = (str(exc).splitlines() or [""])[0][:100] or "truncated"
        raise InputError(f"{path}: not a readable {what} ({type(exc).__name__}: {first})") from None
    if not isinstance(array, np.ndarray) or array.ndim != ndim or array.dtype.kind not in kind:
        raise InputError(f"{path}: not a {what} (a {getattr(array, 'ndim', '?')}-d {getattr(array, 'dtype', '?')} "
                         f"array)")
    return array


def read_intermediate(path, read, *, owner: bool = True):
    """A file an unfinished run made for itself (a score shard, fisher.pt, finetuned.pt, the loop's checkpoint.pt):
    `read(path)`, or None when it is absent or damaged. `read` raises InputError only for a damaged file; that file
    is one warning line and is deleted (by the `owner`: rank 0 under torchrun), so the step that makes it runs
    again, from inputs that are all still there."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return read(path)
    except InputError as exc:
        if owner:
            warn(f"{exc}; recomputing it")
            with contextlib.suppress(OSError):
                path.unlink()
        return None


def record_settings(path, settings: dict, ignore=(), write: bool = True, defaults: dict | None = None) -> list[str]:
    """Compare `settings` with the JSON recorded at `path` (keys in `ignore` aside) and return the keys
    that differ; with none recorded yet, record them (if `write`) and return []. With `defaults` (every current
    key's default value), a record older than the settings still matches: a key it lacks counts as equal when
    its value is the default, and a key no longer among the settings is ignored. A damaged record is one
    InputError naming it."""
    path = Path(path)
    now = {k: v for k, v in json.loads(json.dumps(settings)).items() if k not in ignore}
    if path.exists():
        try:
            recorded = read_json(path, "settings record")
        except InputError as exc:
            raise InputError(f"{exc}; delete it to start over") from None
        before = {k: v for k, v in recorded.items() if k not in ignore}
        if defaults is not None:
            defaults = json.loads(json.dumps(defaults))
            before = {**{k: v for k, v in now.items() if k not in before and v == defaults.get(k)},
                      **{k: v for k, v in before.items() if k in now}}
        return sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    if write:
        save_json(path, settings)
    return []
