"""`rollback --forensic-override REASON` (#13, journal): the one way to act on a journal whose
chain is broken, for forensics only; journalled first, and the plan check still holds."""

import sqlite3
import subprocess
import sys

import pytest

from migrate import commands, config
from migrate.engine.events import Bus
from migrate.errors import MigrateError
from migrate.model.plan import Action, StepPlan, WavePlan
from tests.unit.lab_copy import lab_inventory

REASON = "disk image taken for case 42; restoring service"


@pytest.fixture
def inv(tmp_path):
    """The lab inventory with passfiles that exist (nothing here connects)."""
    return config.load(lab_inventory(tmp_path))


def started(inv, effect: Action | None = None):
    """A run whose plan has nothing to undo (or journals `effect`), then a record altered."""
    j = commands.journal(inv)
    j.append("wave-1-x", "wave-1", "run_started", {"operator": "t", "plan": WavePlan("wave-1", "wave-1-x", (
        StepPlan("personnel/create-db:personale", "personnel", "create", ()),)).to_json()})
    if effect:
        j.append("wave-1-x", "wave-1", "effect", {"action": effect.to_json()}, step="personnel/create-db:personale")
    j.append("wave-1-x", "wave-1", "step_started", {}, step="personnel/create-db:personale")
    last = j.records()[-1].seq
    with sqlite3.connect(j.path) as db:
        db.execute("UPDATE records SET data = '{\"x\":1}' WHERE seq = ?", (last,))
    assert j.verify_chain() == f"record {last} was altered"
    return j


def test_without_the_override_a_broken_chain_is_refused(inv):
    j = started(inv)
    before = len(j.records())
    with pytest.raises(MigrateError, match="was altered; refusing to act on it"):
        commands.rollback(inv, "wave-1", bus=Bus(), confirm=lambda text: True)
    assert len(j.records()) == before


def test_the_override_journals_who_why_and_the_breakage_first_then_rolls_back(inv):
    j = started(inv)
    broken, before = j.verify_chain(), len(j.records())
    asked = []
    done = commands.rollback(inv, "wave-1", bus=Bus(), confirm=lambda text: asked.append(text) or True,
                             forensic_override=REASON)
    assert done.status == "rolled_back"
    added = j.records()[before:]
    assert [r.kind for r in added] == ["chain_override", "rollback_started", "rollback_finished"]
    assert added[0].data == {"operator": commands.operator(), "reason": REASON, "breakage": broken}
    assert added[0].run_id == "wave-1-x" and added[0].wave == "wave-1"
    assert asked and asked[0].startswith(f"JOURNAL CHAIN BROKEN ({broken})")
    assert j.verify_chain() == broken, "the breakage stays visible"


def test_the_override_still_refuses_an_effect_outside_the_journalled_plan(inv):
    evil = Action("db.create_database", {"server": "cloud-pg", "dbname": "personale"}, "create",
                  undo=Action("db.drop_database", {"server": "onprem-pg", "dbname": "personale"}, "drop"))
    j = started(inv, evil)
    asked = []
    with pytest.raises(MigrateError, match="is not an action of the plan journalled"):
        commands.rollback(inv, "wave-1", bus=Bus(), confirm=lambda text: asked.append(text) or True,
                          forensic_override=REASON)
    kinds = [r.kind for r in j.records()]
    assert kinds[-1] == "chain_override" and "rollback_started" not in kinds and asked == []


def migrate(inv, *args):
    return subprocess.run([sys.executable, "-m", "migrate.cli", "-i", str(inv.path), *args],
                          capture_output=True, text=True, timeout=120)


def test_the_cli_offers_it_for_rollback_only_and_says_it_is_for_forensics(inv):
    helped = migrate(inv, "rollback", "--help")
    assert "--forensic-override" in helped.stdout and "FOR FORENSICS ONLY" in helped.stdout
    for verb in ("run", "sync"):
        proc = migrate(inv, verb, "wave-1", "--yes", "--forensic-override", REASON)
        assert proc.returncode == 2 and "No such option '--forensic-override'" in proc.stderr
    blank = migrate(inv, "rollback", "wave-1", "--yes", "--forensic-override", " ")
    assert blank.returncode == 2 and "--forensic-override needs the reason" in blank.stderr


def test_the_cli_rolls_back_a_broken_journal_with_the_override(inv):
    j = started(inv)
    refused = migrate(inv, "rollback", "wave-1", "--yes")
    assert refused.returncode == 1 and "refusing to act on it" in refused.stderr
    done = migrate(inv, "rollback", "wave-1", "--yes", "--forensic-override", REASON)
    assert done.returncode == 0, done.stderr
    assert "JOURNAL CHAIN BROKEN" in done.stderr
    assert [r.data["reason"] for r in j.records() if r.kind == "chain_override"] == [REASON]
