"""One lock per wave: a kernel lock (flock) on a file that names its holder (pid, host, since).

The kernel drops the lock when its holder dies, even by SIGKILL, so a crashed run never blocks
the next one; the file's content then tells who held it, and the next run says it took over.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from migrate.errors import LockHeld, MigrateError


def lock_path(state_dir: Path, wave: str) -> Path:
    return state_dir / "locks" / f"{wave}.lock"


def _read(fd: int) -> dict | None:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096)
    try:
        return json.loads(raw) if raw.strip() else None
    except ValueError:
        return {"pid": "?", "host": "?", "since": "?", "action": "?"}


def describe(info: dict) -> str:
    return f"pid {info.get('pid')} on {info.get('host')} since {info.get('since')} ({info.get('action')})"


def _open(state_dir: Path, wave: str) -> int:
    path = lock_path(state_dir, wave)
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


@contextmanager
def wave_lock(state_dir: Path, wave: str, action: str):
    """Yields the previous holder's record when it died without releasing, else None."""
    fd = _open(state_dir, wave)
    try:
        if not _try_lock(fd):
            raise LockHeld(f"wave {wave} is locked by {describe(_read(fd) or {})}")
        stale = _read(fd)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "action": action,
                "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        try:
            yield stale
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)


def holder(state_dir: Path, wave: str) -> dict | None:
    """The live holder of the lock, or None."""
    if not lock_path(state_dir, wave).exists():
        return None
    fd = _open(state_dir, wave)
    try:
        if _try_lock(fd):
            return None
        return _read(fd) or {}
    finally:
        os.close(fd)


def alive_here(info: dict) -> bool:
    """Whether the recorded holder is a process alive on this host. Another host's holder cannot
    be checked from here (its host says so); a pid we cannot read counts as alive."""
    if info.get("host") != socket.gethostname():
        return False
    pid = info.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def unlock(state_dir: Path, wave: str, *, force: bool = False) -> str:
    path = lock_path(state_dir, wave)
    if not path.exists():
        return f"wave {wave} is not locked"
    live = holder(state_dir, wave)
    if live is not None and not force:
        raise LockHeld(f"wave {wave} is locked by {describe(live)}, which is still running;"
                       " use --force only if you are sure it is gone")
    if live is not None and alive_here(live):
        # Removing the file of a live holder lets a second run lock a new file and act on the
        # same wave at once (it aborted the first run's uploads): --force takes over only a
        # dead holder's lock (one whose kernel lock survives in a forked child, say).
        raise MigrateError(f"wave {wave} is locked by {describe(live)}, and pid {live.get('pid')} is alive on this"
                           " host: --force only clears the lock of a holder that is gone; stop that process first")
    fd = _open(state_dir, wave)
    try:
        stale = _read(fd)
    finally:
        os.close(fd)
    path.unlink(missing_ok=True)
    if not (live or stale):
        return f"wave {wave} is not locked"
    return f"lock of wave {wave} removed (last held by {describe(live or stale)})"
