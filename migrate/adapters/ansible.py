"""Playbooks through ansible-runner, used safely.

- a fresh private data directory per run, env files suppressed (a stale `env/cmdline` from a
  check run once turned the next real run into a check run);
- the runner's environment is an allow-list: its artifacts record the whole environment,
  so nothing of the orchestrator's (cloud keys, passwords) may reach it;
- host keys checked against the inventory's known_hosts, and SSH multiplexing sockets kept in
  the run's own directory so no later run reuses a connection that skipped that check;
- a failed playbook is a status, not an exception.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import ansible_runner
from ansible_runner.config.runner import RunnerConfig

from migrate.adapters import guard
from migrate.config import HOSTS_FILE, Inventory
from migrate.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOKS = ROOT / "playbooks"
TEMPLATES = ROOT / "templates"
ENV_KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "LOGNAME", "TZ")
ENV_KEEP_PREFIXES = ("ANSIBLE_", "RUNNER_", "AWX_", "JOB_ID")


@dataclass(frozen=True)
class PlaybookResult:
    status: str
    rc: int
    changed: dict = field(default_factory=dict)
    failed: dict = field(default_factory=dict)
    changed_tasks: list = field(default_factory=list)
    artifacts: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "successful" and self.rc == 0


def run_playbook(inv: Inventory, playbook: str, hosts: list[str], extravars: dict, *,
                 check: bool = False) -> PlaybookResult:
    path = PLAYBOOKS / playbook
    if not path.is_file():
        raise ConfigError(f"playbook {path} not found")
    for name in hosts:
        if name not in inv.hosts:
            raise ConfigError(f"host '{name}' is not in the inventory")
        guard.check(inv, inv.hosts[name].address, f"host {name}")
    base = inv.state_dir / "ansible"
    base.mkdir(parents=True, exist_ok=True)
    private = Path(tempfile.mkdtemp(prefix=f"{path.stem}-", dir=base))
    cmdline = "--check --diff" if check else "--diff"
    rc = RunnerConfig(private_data_dir=str(private), playbook=str(path), inventory=str(inv.path / HOSTS_FILE),
                      limit=",".join(hosts), extravars={**extravars, "templates_dir": str(TEMPLATES)},
                      cmdline=cmdline, suppress_env_files=True, quiet=True,
                      envvars=_ansible_env(inv, hosts, private))
    rc.prepare()
    rc.env = _scrub(rc.env)
    rc.command = _dies_with_us(rc.command)
    runner = ansible_runner.Runner(config=rc)
    runner.run()
    result = _summarise(runner, private)
    _redact_command_artifact(private)
    return result


def _dies_with_us(command: list[str]) -> list[str]:
    """ansible-playbook killed with the orchestrator: a SIGKILLed run must not leave a playbook
    running on, racing the rollback that follows (it would undo the rollback's work)."""
    setpriv = shutil.which("setpriv")  # util-linux: the kernel's parent-death signal
    return [setpriv, "--pdeathsig", "KILL", "--", *command] if setpriv else command


def stop_leftovers(inv: Inventory, grace: float = 3.0) -> int:
    """Stop what a killed orchestrator's playbooks left running: ansible's forked task workers
    (the parent-death signal reaches only ansible-playbook itself) and its ssh masters. They are
    the processes whose environment has the ANSIBLE_LOCAL_TEMP we give playbooks of this inventory
    (not a command line naming the directory: an operator's `less` of an artefact is not ours).
    SIGTERM, then SIGKILL after `grace` seconds. Returns how many were found (Linux /proc)."""
    mark = f"\0ANSIBLE_LOCAL_TEMP={inv.state_dir / 'ansible'}/".encode()
    found = [pid for pid in _pids() if pid != os.getpid() and mark in b"\0" + _proc(pid, "environ")]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(pid) for pid in found):
            time.sleep(0.05)
    return len(found)


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()] if os.path.isdir("/proc") else []


def _proc(pid: int, name: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    """Running, and not a zombie waiting for its parent."""
    stat = _proc(pid, "stat")
    return bool(stat) and stat.rsplit(b")", 1)[-1].split()[0] != b"Z"


def _ansible_env(inv: Inventory, hosts: list[str], private: Path) -> dict:
    known = {inv.hosts[h].vars.get("known_hosts_file") for h in hosts}
    if len(known) != 1 or None in known:
        raise ConfigError(f"{HOSTS_FILE}: hosts {', '.join(hosts)} need one shared known_hosts_file")
    return {
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_SSH_COMMON_ARGS": f"-o UserKnownHostsFile={known.pop()} -o StrictHostKeyChecking=yes",
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(private / "cp"),
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=5s",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "True",
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_LOCAL_TEMP": str(private / "tmp"),
    }


def _scrub(env: dict) -> dict:
    return {k: v for k, v in env.items() if k in ENV_KEEP or k.startswith(ENV_KEEP_PREFIXES)}


def _summarise(runner, private: Path) -> PlaybookResult:
    stats = runner.stats or {}
    changed_tasks = []
    for event in runner.events:
        res = (event.get("event_data") or {}).get("res") or {}
        if event.get("event") == "runner_on_ok" and res.get("changed"):
            changed_tasks.append(event["event_data"].get("task"))
    return PlaybookResult(status=runner.status, rc=runner.rc if runner.rc is not None else -1,
                          changed=stats.get("changed", {}), failed={**stats.get("failures", {}),
                                                                    **stats.get("dark", {})},
                          changed_tasks=changed_tasks, artifacts=str(private))


def _redact_command_artifact(private: Path) -> None:
    """The `command` artifact copies the runner's environment; keep only variable names."""
    for command in private.glob("artifacts/*/command"):
        data = json.loads(command.read_text())
        data["env"] = sorted(data.get("env", {}))
        command.write_text(json.dumps(data))
