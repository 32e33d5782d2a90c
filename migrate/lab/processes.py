"""Processes: short commands (`run`), the servers the lab spawns, recognised and stopped by
recorded PID (never by name), and the probes that tell whether a port answers.

A recorded PID is only ever trusted together with words its command line must contain (its
identity, see supervisor.identity_of): after a crash or a reboot the PID may belong to anyone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from migrate.lab.errors import LabError
from migrate.lab.layout import HOST, PG_OS_USER

log = logging.getLogger(__name__)

READY_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
CMDLINE_SETTLE = 0.5  # seconds an empty command line of a live process may take to appear

# A clean environment for the servers: the caller's AWS credentials and the like stay out of
# /proc/PID/environ of processes that do not need them.
SERVER_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}

# Servers started by this Python process, kept so they can be reaped once stopped (a zombie
# still has a /proc entry) and so that Popen does not warn about them being dropped.
_SPAWNED: dict[int, subprocess.Popen] = {}


def spawn(argv: list[str], log_file: Path, env: dict[str, str]) -> int:
    with open(log_file, "ab") as out:
        # A new session: Ctrl-C in the terminal that ran `up` must not take the lab down.
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, cwd="/", env=env,
                                start_new_session=True, close_fds=True)
    _SPAWNED[proc.pid] = proc
    return proc.pid


def _reap(pid: int) -> None:
    proc = _SPAWNED.get(pid)
    if proc is not None and proc.poll() is not None:
        del _SPAWNED[pid]


def _cmdline(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _settled_cmdline(pid: int) -> str | None:
    """The command line, read again for a moment while it is empty but the process is neither
    gone nor a zombie: right after exec (Popen has returned) and while a killed process exits,
    the kernel shows an empty one. A server just spawned was otherwise taken for one that died."""
    args = _cmdline(pid)
    deadline = time.monotonic() + CMDLINE_SETTLE
    while args == "" and _state(pid) not in (None, "Z", "X") and time.monotonic() < deadline:
        time.sleep(0.005)
        args = _cmdline(pid)
    return args


def pid_is(pid: int | None, identity: list[str]) -> bool:
    """True if `pid` is alive and is the process described by `identity`."""
    if not pid:
        return False
    _reap(pid)
    args = _settled_cmdline(pid)
    if not args:  # gone, or a zombie (empty cmdline)
        return False
    # The trailing space makes "-D /lab/pg/source" not match "-D /lab/pg/source2".
    return all(word + " " in args + " " for word in identity)


def children(pid: int) -> list[int]:
    """Direct children of `pid` (sshd forks one process per connection, in its own session)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name in parentheses may contain spaces: parse after the last ')'.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def processes_in(directory: Path) -> list[int]:
    """Live processes whose working directory is `directory` (every PostgreSQL process
    chdirs into its data directory, whatever its title says)."""
    target = os.path.realpath(directory)  # the kernel reports cwd with symlinks resolved
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(entry / "cwd") == target:
                    found.append(int(entry.name))
    return found


def wait_gone(pid: int, identity: list[str], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_is(pid, identity):
            return True
        time.sleep(0.05)
    return not pid_is(pid, identity)


def terminate(pid: int, identity: list[str]) -> None:
    """SIGTERM, then SIGKILL after a grace period; only if `pid` is still our process."""
    if not pid_is(pid, identity):
        return
    os.kill(pid, signal.SIGTERM)
    if wait_gone(pid, identity, STOP_TIMEOUT):
        return
    log.warning("pid %s ignored SIGTERM; sending SIGKILL", pid)
    os.kill(pid, signal.SIGKILL)
    if not wait_gone(pid, identity, STOP_TIMEOUT):
        raise LabError(f"process {pid} did not stop")


def run(argv: list[str], *, as_postgres: bool = False, stdin: str | None = None,
        what: str) -> str:
    """Run a short command; a failure becomes a LabError naming `what` and the output tail."""
    if as_postgres:
        argv = ["runuser", "-u", PG_OS_USER, "--", *argv]
    # cwd=/ because the postgres user cannot enter the caller's directory (often /root).
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, cwd="/",
                          env=SERVER_ENV, start_new_session=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise LabError(f"{what} failed (exit {proc.returncode}): {tail[0]}")
    return proc.stdout


def log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return " | ".join(text[-lines:]) or "empty log"


# --- ports and probes ----------------------------------------------------------------------

def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR so that a just-closed connection in TIME_WAIT does not count as taken;
        # a listening socket (on 127.0.0.1 or 0.0.0.0) still makes bind fail.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def probe_banner(port: int, prefix: bytes) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=2) as sock:
            return sock.recv(64).startswith(prefix)
    except OSError:
        return False


def probe_http(port: int) -> bool:
    import http.client

    conn = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()
