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


@dataclass(frozen=True)
class ArchiveOwners(Fact):
    """Who our program runs as on a host, and which owner:group pairs the files under a path
    have (the host's python3 answers: the packed layout needs it on both hosts)."""
    host: str
    path: str

    def read(self, inv) -> tuple[dict, list[dict]]:
        who, files, _ = ssh.scan_program(inv, self.host, ssh.host_path(ssh.host(inv, self.host), self.path))
        return who, files

    def process(self, raw) -> dict:
        who, files = raw
        return {**who, "owners": sorted({(f["uname"], f["gname"]) for f in files})}
