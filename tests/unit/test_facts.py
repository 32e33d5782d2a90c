"""Gathering facts: each read once, all of them, failures raised; and the pure process() of the
planning facts on canned answers."""

import threading
from dataclasses import dataclass

import pytest

from migrate.errors import StepFailed
from migrate.facts import Fact, gather
from migrate.facts.archive import ArchiveOnHost, ArchiveVolume
from migrate.facts.cutover import FrontDoorUpstreams

READS: list[str] = []
LOCK = threading.Lock()


@dataclass(frozen=True)
class Echo(Fact):
    name: str

    def read(self, inv):
        with LOCK:
            READS.append(self.name)
        if self.name == "broken":
            raise StepFailed("host broken: unreachable")
        return self.name.upper()


def test_each_fact_is_read_once_and_every_one_is_there():
    READS.clear()
    found = gather(None, [Echo("a"), Echo("b"), Echo("a"), Echo("c")] * 3)
    assert sorted(READS) == ["a", "b", "c"]
    assert {f.name: v for f, v in found.items()} == {"a": "A", "b": "B", "c": "C"}
    with pytest.raises(KeyError, match="was not gathered"):
        found[Echo("d")]


def test_a_fact_that_cannot_be_read_fails_the_gathering():
    with pytest.raises(StepFailed, match="host broken"):
        gather(None, [Echo("a"), Echo("broken"), Echo("b")])


def test_no_facts_needed_reads_nothing():
    assert len(gather(None, [])) == 0


@pytest.mark.parametrize("raw, upstreams", [
    (None, {}),
    ("", {}),
    ("[other]\nx = 1\n", {}),
    ("[upstreams]\npersonale = http://127.0.0.1:12281\npresenze = http://127.0.0.1:12282\n",
     {"personale": "http://127.0.0.1:12281", "presenze": "http://127.0.0.1:12282"}),
])
def test_front_door_upstreams_from_its_file(raw, upstreams):
    assert FrontDoorUpstreams("front", "/etc/front/upstreams.conf").process(raw) == upstreams


def test_archive_volume_counts_files_and_bytes():
    listing = [("a.pdf", 10, 0, 0o640), ("sub/b.pdf", 32, 0, 0o600)]
    assert ArchiveOnHost("src-app", "/srv/docs").process(listing) == ArchiveVolume(2, 42)
