"""Facts about files on hosts, for planning: whether a path exists."""

from __future__ import annotations

from dataclasses import dataclass

from migrate.adapters import ssh
from migrate.facts import Fact


@dataclass(frozen=True)
class PathExists(Fact):
    host: str
    path: str

    def read(self, inv) -> bool:
        return ssh.exists(inv, self.host, self.path)
