"""Facts about a document archive on a host, for planning: how many files, how many bytes."""

from __future__ import annotations

from dataclasses import dataclass

from migrate.adapters import ssh
from migrate.facts import Fact


@dataclass(frozen=True)
class ArchiveVolume:
    files: int
    bytes: int


@dataclass(frozen=True)
class ArchiveOnHost(Fact):
    host: str
    path: str

    def read(self, inv) -> list[tuple[str, int, int, int]]:
        return ssh.list_files(inv, self.host, self.path)

    def process(self, raw) -> ArchiveVolume:
        return ArchiveVolume(len(raw), sum(size for _, size, _, _ in raw))
