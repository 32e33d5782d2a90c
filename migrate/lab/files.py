"""Writing the lab's files: secrets with safe permissions from the first byte, and whole trees
emptied or made exact copies of another."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def write_private(path: Path, text: str) -> None:
    """Write a secret file 0600 from the first byte (no window with looser permissions)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def write_file(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def clear_tree(root: Path, keep: str | None = None) -> None:
    """Empty `root` except the subtree `keep` (relative) and the directories leading to it."""
    root.mkdir(parents=True, exist_ok=True)
    kept = root / keep if keep else None
    for entry in root.iterdir():
        if kept is not None and entry == kept:
            continue
        if kept is not None and entry.is_dir() and not entry.is_symlink() \
                and kept.is_relative_to(entry):
            clear_tree(entry, str(kept.relative_to(entry)))
        elif entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def sync_tree(saved: Path, live: Path, *, keep: Path | None = None) -> None:
    """Make `live` an exact copy of `saved` (files, directories, modes), touching only what
    differs: the document archive can be large, and most of it is never changed.
    keep: a path inside `live` left as it is (its owner restores it by other means)."""
    live.mkdir(parents=True, exist_ok=True)
    for dirpath, dirnames, filenames in os.walk(live):
        here, there = Path(dirpath), saved / Path(dirpath).relative_to(live)
        for name in list(dirnames) + filenames:
            if here / name == keep:
                if name in dirnames:
                    dirnames.remove(name)
            elif _kind(here / name) != _kind(there / name):
                _remove(here / name)
                if name in dirnames:
                    dirnames.remove(name)
    for dirpath, dirnames, filenames in os.walk(saved):
        there, here = Path(dirpath), live / Path(dirpath).relative_to(saved)
        here.mkdir(exist_ok=True)
        shutil.copymode(there, here)
        for name in filenames:
            if _differs(there / name, here / name):
                tmp = here / f".{name}.lab-restore"
                shutil.copy2(there / name, tmp, follow_symlinks=False)
                os.replace(tmp, here / name)


def _kind(path: Path) -> str | None:
    if path.is_symlink():
        return "link"
    if path.is_dir():
        return "dir"
    return "file" if path.exists() else None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _differs(saved: Path, live: Path) -> bool:
    if not live.exists() and not live.is_symlink():
        return True
    if saved.is_symlink():
        return os.readlink(saved) != os.readlink(live)
    a, b = saved.stat(), live.stat()
    # copy2 keeps the modification time to the nanosecond: any later write changes it.
    return (a.st_size, a.st_mtime_ns, a.st_mode) != (b.st_size, b.st_mtime_ns, b.st_mode)
