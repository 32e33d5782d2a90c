import sqlite3

import pytest

from migrate.engine.journal import Journal


def test_records_chain_and_read_back(tmp_path):
    j = Journal(tmp_path / "j.sqlite")
    j.append("r1", "wave-1", "run_started", {"n": 1})
    j.append("r1", "wave-1", "step_started", {}, step="s1")
    j.append("r2", "wave-2", "run_started", {})
    assert [r.kind for r in j.records(run_id="r1")] == ["run_started", "step_started"]
    assert [r.run_id for r in j.records(wave="wave-2")] == ["r2"]
    assert j.waves() == ["wave-1", "wave-2"]
    assert j.verify_chain() is None


@pytest.mark.parametrize("tamper, finding", [
    ("UPDATE records SET data = '{\"i\":7}' WHERE seq = 2", "record 2 was altered"),
    ("DELETE FROM records WHERE seq = 2", "record 2 is missing"),
])
def test_tampering_is_detected(tmp_path, tamper, finding):
    path = tmp_path / "j.sqlite"
    j = Journal(path)
    for i in range(3):
        j.append("r1", "wave-1", "effect", {"i": i})
    j.close()
    with sqlite3.connect(path) as db:
        db.execute(tamper)
    assert Journal(path).verify_chain() == finding


def test_journal_survives_reopen(tmp_path):
    Journal(tmp_path / "j.sqlite").append("r1", "w", "run_started", {})
    j = Journal(tmp_path / "j.sqlite")
    j.append("r1", "w", "run_finished", {})
    assert [r.seq for r in j.records()] == [1, 2] and j.verify_chain() is None
