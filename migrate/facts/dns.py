"""Facts about the entry point's DNS records (Route53), for preflight and the switch's undo."""

from __future__ import annotations

from dataclasses import dataclass

from migrate.adapters import dns
from migrate.facts import Fact


@dataclass(frozen=True)
class CnameValue(Fact):
    """The record's value now, as a fully qualified name (None when there is no record)."""

    name: str

    def read(self, inv) -> str | None:
        return dns.cname(inv, self.name)
