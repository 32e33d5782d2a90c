"""The operator's shell environment, kept away from libraries that read it on their own.

libpq reads PGPASSWORD, PGOPTIONS and friends from the environment and lets them override the
spec's passfile or change session settings; ansible-runner copies the whole environment into
its artifacts. So at start-up every PG* variable moves out of `os.environ` into this module,
and only code that the spec points at (`password_env`) reads it back.
"""

from __future__ import annotations

import os

HELD: dict[str, str] = {}


def hold_libpq_variables() -> None:
    for name in [k for k in os.environ if k.startswith("PG")]:
        HELD[name] = os.environ.pop(name)


def get(name: str) -> str | None:
    return os.environ.get(name, HELD.get(name))


def checkout_commit(directory) -> str | None:
    """The git commit of a checkout (the tool's own, when it runs from one); None otherwise."""
    import subprocess

    try:
        done = subprocess.run(["git", "-C", str(directory), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None
