import sqlite3

import pytest

from migrate.engine.journal import Journal
from tests.unit.lab_copy import lab_inventory


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


def _journal_of(path, n: int) -> Journal:
    j = Journal(path)
    for i in range(n):
        j.append("r1", "wave-1", "effect", {"i": i})
    return j


def test_a_cut_tail_is_detected_by_the_anchored_head(tmp_path):
    path = tmp_path / "j.sqlite"
    _journal_of(path, 4).close()
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM records WHERE seq >= 3")
    assert Journal(path).verify_chain() == "records 3 to 4 are missing (cut from the end; the head says 4)"


def test_a_kill_between_commit_and_anchor_leaves_an_intact_chain(tmp_path):
    path = tmp_path / "j.sqlite"
    j = _journal_of(path, 3)
    head = j.head_path.read_text()
    j.append("r1", "wave-1", "effect", {"i": 3})
    j.head_path.write_text(head)  # the head as it was before the last append: one record behind
    assert j.verify_chain() is None
    j.append("r1", "wave-1", "effect", {"i": 4})
    assert j.head_path.read_text().startswith("5 ")


def test_a_head_that_names_another_record_is_refused(tmp_path):
    path = tmp_path / "j.sqlite"
    j = _journal_of(path, 3)
    j.head_path.write_text("3 " + "0" * 64 + "\n")
    assert j.verify_chain() == "record 3 does not match the anchored head"


def test_a_journal_from_before_anchors_is_judged_by_its_chain(tmp_path):
    path = tmp_path / "j.sqlite"
    j = _journal_of(path, 2)
    j.head_path.unlink()
    assert j.verify_chain() is None


def test_run_and_rollback_refuse_a_broken_chain_before_acting(tmp_path):
    from migrate import commands, config
    from migrate.engine.events import Bus
    from migrate.errors import MigrateError
    inv = config.load(lab_inventory(tmp_path))
    j = commands.journal(inv)
    j.append("wave-1-x", "wave-1", "effect", {"i": 1})
    j.append("wave-1-x", "wave-1", "effect", {"i": 2})
    with sqlite3.connect(j.path) as db:
        db.execute("UPDATE records SET data = '{\"i\":9}' WHERE seq = 1")
    for verb in (commands.run, commands.rollback, commands.sync):
        with pytest.raises(MigrateError, match="record 1 was altered; refusing to act on it"):
            verb(inv, "wave-1", bus=Bus(), confirm=lambda text: True)


def test_an_undo_that_is_not_the_plans_is_refused_even_with_an_intact_chain(tmp_path):
    """The fault matrix's attack with the chain written again: the effect's undo names the
    source's database; the plan journalled at the start names the target's. Nothing runs."""
    from migrate import commands, config
    from migrate.engine.events import Bus
    from migrate.errors import MigrateError
    from migrate.model.plan import Action, StepPlan, WavePlan
    inv = config.load(lab_inventory(tmp_path))
    drop = Action("db.drop_database", {"server": "cloud-pg", "dbname": "personale"}, "drop cloud-pg/personale")
    create = Action("db.create_database", {"server": "cloud-pg", "dbname": "personale"}, "create", undo=drop)
    plan = WavePlan("wave-1", "wave-1-x", (StepPlan("personnel/create-db:personale", "personnel", "create",
                                                     (create,)),))
    j = commands.journal(inv)
    j.append("wave-1-x", "wave-1", "run_started", {"operator": "t", "plan": plan.to_json()})
    evil = Action("db.create_database", create.args, "create",
                  undo=Action("db.drop_database", {"server": "onprem-pg", "dbname": "personale"},
                              "drop cloud-pg/personale"))
    j.append("wave-1-x", "wave-1", "effect", {"action": evil.to_json()}, step="personnel/create-db:personale")
    assert j.verify_chain() is None
    asked = []
    with pytest.raises(MigrateError, match="journal record 2: the effect of personnel/create-db:personale is not an"
                                           " action of the plan"):
        commands.rollback(inv, "wave-1", bus=Bus(), confirm=lambda text: asked.append(text) or True)
    assert asked == [], "refused before the prompt"


def test_the_rollback_prompt_says_what_each_undo_will_touch():
    from migrate.commands import _undo_line
    from migrate.model.plan import Action
    action = Action("db.create_database", {}, "create",
                    undo=Action("db.drop_database", {"server": "cloud-pg", "dbname": "personale"}, "drop it"))
    assert _undo_line(action) == "drop it [db.drop_database server=cloud-pg, dbname=personale]"


def test_limit_to_a_system_whose_dependency_is_not_migrated_is_bad_usage(tmp_path):
    from migrate import commands, config
    from migrate.engine.events import Bus
    from migrate.errors import ConfigError
    inv = config.load(lab_inventory(tmp_path))
    with pytest.raises(ConfigError, match="--limit attendance: it depends on personnel") as refused:
        commands.run(inv, "wave-1", bus=Bus(), confirm=lambda text: True, limit="attendance")
    assert refused.value.exit_code == 2


class Remote:
    """A second anchor in memory, as the bucket keeps it."""

    def __init__(self):
        self.heads = {}

    def put(self, first, seq, digest):
        self.heads[first] = (seq, digest)
        return True

    def get(self, first):
        return self.heads.get(first)


def test_a_tail_cut_with_the_head_file_beside_it_is_caught_by_the_bucket_copy(tmp_path):
    remote = Remote()
    j = Journal(tmp_path / "j.sqlite", remote=remote)
    j.append("r1", "w", "run_started", {})
    for i in range(3):
        j.append("r1", "w", "step_started", {}, step=f"s{i}")
        j.append("r1", "w", "step_done", {}, step=f"s{i}")
    assert remote.heads and j.verify_chain() is None
    assert list(remote.heads.values())[0][0] == 7, "sent at each step's end"
    with sqlite3.connect(j.path) as db:
        db.execute("DELETE FROM records WHERE seq > 4")
        head = db.execute("SELECT hash FROM records WHERE seq = 4").fetchone()[0]
    j.head_path.write_text(f"4 {head}\n")  # the file beside it cut back too
    assert j.verify_chain() == ("records 5 to 7 are missing (cut from the end; the bucket's copy of the head"
                                " says 7)")


def test_an_unreachable_bucket_leaves_the_journal_to_its_local_anchor(tmp_path):
    class Down:
        def put(self, *a):
            return False

        def get(self, first):
            return "unreachable"
    j = Journal(tmp_path / "j.sqlite", remote=Down())
    j.append("r1", "w", "run_started", {})
    j.append("r1", "w", "step_done", {}, step="s")
    assert j.verify_chain() is None
