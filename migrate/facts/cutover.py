"""Facts the switch plans its undo from: the front door's upstreams as they are (and, from
`facts.dns`, the DNS records)."""

from __future__ import annotations

import configparser
from dataclasses import dataclass

from migrate.adapters import ssh
from migrate.facts import Fact


@dataclass(frozen=True)
class FrontDoorUpstreams(Fact):
    host: str
    path: str

    def read(self, inv) -> str | None:
        return ssh.read_text(inv, self.host, self.path)

    def process(self, raw: str | None) -> dict[str, str]:
        """The [upstreams] section of the file: service -> URL ({} when there is none)."""
        if not raw:
            return {}
        parser = configparser.ConfigParser()
        parser.read_string(raw)
        return dict(parser["upstreams"]) if parser.has_section("upstreams") else {}
