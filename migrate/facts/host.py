"""Facts about a host over SSH, for preflight: the key it offers and what it says about itself."""

from __future__ import annotations

from dataclasses import dataclass

from migrate.adapters import ssh
from migrate.facts import Fact


@dataclass(frozen=True)
class HostKey(Fact):
    """The key the host offers now, (type, base64, fingerprint), and what known_hosts holds for
    it (type -> base64)."""

    host: str

    def read(self, inv) -> tuple[tuple[str, str, str], dict[str, str]]:
        return ssh.offered_host_key(inv, self.host), ssh.known_host_keys(inv, self.host)


@dataclass(frozen=True)
class HostState(Fact):
    """The host's clock against ours, its user id (or that sudo works) and its free disk, from
    one command."""

    host: str

    def read(self, inv) -> dict:
        h = ssh.host(inv, self.host)
        become = bool(h.vars.get("ansible_become"))
        sudo = "sudo -n true && " if become else ""
        out, middle = ssh.run_timed(inv, self.host, f"{sudo}date +%s.%N && id -u && df -Pk {ssh.host_path(h, '/')}")
        return {"become": become, "output": out, "middle": middle}

    def process(self, raw: dict) -> dict:
        clock, uid, *df = raw["output"].strip().splitlines()
        return {"skew": float(clock) - raw["middle"], "uid": uid, "become": raw["become"],
                "free_bytes": free_bytes("\n".join(df))}


def free_bytes(df_output: str) -> int | None:
    """`df -Pk PATH` output: the fourth column of the last line is free KiB (None: unreadable)."""
    try:
        return int(df_output.strip().splitlines()[-1].split()[3]) * 1024
    except (IndexError, ValueError):
        return None
