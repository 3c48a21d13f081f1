"""The one way a stage opens the folder it writes (a run folder: `score --out`, `pretrain --out`, a coreset, a grid,
`data build --out`) and checks a single output file: the path must be a folder that can be created and written,
and one run at a time writes it.

`open_run` takes an advisory lock (`fcntl.flock`) on `.lock` inside the folder for as long as the stage runs; the
lock file records the holder (pid, host, start time, command line), so a second run into a busy folder is one line
naming the holder (exit status 2), or, asked to wait, one warning line and a wait. The kernel releases the lock of a
killed process, so a stale lock file never blocks; the holder deletes it when done. Nested opens of one folder by
the same process (a grid opening a cell it already holds) share the lock. Under torchrun only rank 0 locks (every
rank writes the same run). A stage that finds its result finished reads it without opening the folder, so a
finished run reruns on read-only media.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
import time
from pathlib import Path

from corelib.errors import InputError, warn, write_fault

LOCK = ".lock"
_HELD: dict[Path, int] = {}   # folders this process holds -> nesting depth


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _command() -> str:
    argv = list(sys.argv)
    if argv and argv[0].endswith(os.path.join("corelib", "__main__.py")):
        argv[0] = "python -m corelib"
    line = " ".join(argv)
    return line if len(line) <= 160 else line[:157] + "..."


def _create(folder: Path, what: str) -> None:
    """mkdir -p, or one InputError naming the folder (an existing file, a parent that cannot hold folders)."""
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: is a file, not a folder ({what} must be a folder)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{folder}: cannot create this folder for {what} ({_reason(exc)})") from None


def _holder(path: Path) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        text = ""
    return text or "another process"


def _acquire(folder: Path, wait: bool, what: str, read_only_ok: bool) -> int | None:
    """An open descriptor of folder/.lock holding an exclusive flock (retried when the previous holder deleted the
    file while this process waited for it); None for a folder that cannot be written, when `read_only_ok`."""
    path = folder / LOCK
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if read_only_ok and write_fault(exc) is not None:
                return None
            raise InputError(f"{folder}: cannot write in this folder for {what} ({_reason(exc)})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(path)
            if not wait:
                os.close(fd)
                raise InputError(f"{folder}: busy: {holder} is writing it; wait for that run to finish, or rerun "
                                 f"with --wait") from None
            warn(f"{folder}: busy: {holder} is writing it; waiting for it to finish")
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)   # the holder deleted the file it locked: lock the new one


@contextlib.contextmanager
def open_run(folder, *, wait: bool = False, what: str = "--out", read_only_ok: bool = False):
    """Create `folder` if needed and hold its lock while the block runs (see the module docstring); yields the
    folder. An existing file, a path that cannot be created (e.g. under /proc), a folder that cannot be written
    (read-only media, no permission) or one another run holds is one InputError naming it (`what`: the flag that
    gave the path, for the message). With `read_only_ok`, a folder that cannot be written is yielded unlocked: a
    stage that only reads a finished run (a grid) goes on, and any write it then tries is one line naming the
    file."""
    folder = Path(folder)
    _create(folder, what)
    key = folder.resolve()
    if key in _HELD or int(os.environ.get("RANK", "0") or 0) != 0:
        if key not in _HELD and not os.access(folder, os.W_OK):
            raise InputError(f"{folder}: cannot write in this folder for {what} (permission denied)")
        _HELD[key] = _HELD.get(key, 0) + 1
        try:
            yield folder
        finally:
            _HELD[key] -= 1
            if not _HELD[key]:
                del _HELD[key]
        return
    fd = _acquire(folder, wait, what, read_only_ok)
    if fd is None:
        yield folder
        return
    try:
        with contextlib.suppress(OSError):   # who holds it, for the message of a second run (best effort)
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')} "
                         f"({_command()})\n".encode())
        _HELD[key] = 1
        yield folder
    finally:
        _HELD.pop(key, None)
        with contextlib.suppress(OSError):
            os.unlink(folder / LOCK)   # before unlocking: a waiter then finds the file gone and locks a new one
        os.close(fd)


def output_file(path, what: str = "output file") -> Path:
    """Check before any work that `path` can be written as a file: not a folder, its folder created and writable
    (probed with path.tmp, which `atomic_write` uses); one InputError naming it otherwise."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give {what} a file path")
    _create(path.parent, what)
    probe = path.with_name(path.name + ".tmp")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT, 0o644))
    except OSError as exc:
        raise InputError(f"{path}: cannot write it for {what} ({_reason(exc)})") from None
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return path
