"""The executor, resume and rollback, with operations that write to a list: no lab needed."""

import os
import signal
import subprocess
import sys

import pytest

from migrate.engine import lock, state
from migrate.engine.events import Bus
from migrate.engine.executor import Executor, NullJournal
from migrate.engine.journal import Journal
from migrate.engine.ops import OPS
from migrate.engine.sinks import DryRunSink, LiveSink
from migrate.errors import LockHeld, StepFailed
from migrate.model.plan import Action, StepPlan, WavePlan

WORLD: list[str] = []
FAIL_ON: set[str] = set()


def _add(ctx, *, item):
    if item in FAIL_ON:
        raise StepFailed(f"cannot add {item}")
    WORLD.append(item)
    return {"size": len(WORLD)}


def _remove(ctx, *, item):
    if item in WORLD:
        WORLD.remove(item)


OPS["test.add"] = _add
OPS["test.remove"] = _remove


@pytest.fixture(autouse=True)
def clean_world():
    WORLD.clear()
    FAIL_ON.clear()


def add(item):
    return Action("test.add", {"item": item}, f"add {item}", undo=Action("test.remove", {"item": item}, f"remove {item}"))


def wave_plan():
    return WavePlan("w", "run-1", (
        StepPlan("a", "sys", "step a", (add("a1"), add("a2"))),
        StepPlan("b", "sys", "step b", noop="nothing to do"),
        StepPlan("c", "sys", "step c", (add("c1"),)),
    ))


class Ctx:
    check = False


def start(j, plan):
    j.append(plan.run_id, plan.wave, "run_started", {"plan": plan.to_json(), "operator": "t@h"})


def test_apply_journals_and_performs_in_order(tmp_path):
    j, plan, events = Journal(tmp_path / "j"), wave_plan(), []
    start(j, plan)
    Executor(j, LiveSink(Ctx()), Bus(lambda k, d: events.append(k))).apply(plan)
    assert WORLD == ["a1", "a2", "c1"]
    view = state.latest(j.records(wave="w"))
    assert {s.id: s.state for s in view.steps.values()} == {"a": "done", "b": "done", "c": "done"}
    assert [e[2].summary for e in view.pending_undo()] == ["add c1", "add a2", "add a1"]
    kinds = [r.kind for r in j.records()]
    assert kinds.index("effect") < kinds.index("effect_done"), "the effect is journalled before it happens"


def test_failed_step_resumes_without_repeating_completed_effects(tmp_path):
    j, plan = Journal(tmp_path / "j"), wave_plan()
    start(j, plan)
    FAIL_ON.add("c1")
    with pytest.raises(StepFailed):
        Executor(j, LiveSink(Ctx()), Bus()).apply(plan)
    view = state.latest(j.records(wave="w"))
    assert view.status == "failed" and view.steps["c"].state == "failed"
    FAIL_ON.clear()
    Executor(j, LiveSink(Ctx()), Bus()).apply(plan, view)
    assert WORLD == ["a1", "a2", "c1"], "a1 and a2 were not added twice"


def test_interrupted_step_is_undone_then_rerun(tmp_path):
    j, plan = Journal(tmp_path / "j"), wave_plan()
    start(j, plan)
    # A crash after a1 was done but before a2: the journal holds a's start and a1's effect.
    j.append("run-1", "w", "step_started", {}, step="a")
    j.append("run-1", "w", "effect", {"action": add("a1").to_json()}, step="a")
    WORLD.append("a1")
    Executor(j, LiveSink(Ctx()), Bus()).apply(plan, state.latest(j.records(wave="w")))
    assert WORLD == ["a1", "a2", "c1"]


def test_rollback_undoes_everything_newest_first(tmp_path):
    j, plan, seen = Journal(tmp_path / "j"), wave_plan(), []
    start(j, plan)
    Executor(j, LiveSink(Ctx()), Bus()).apply(plan)
    OPS["test.remove"] = lambda ctx, *, item: (seen.append(item), _remove(ctx, item=item))[1]
    try:
        view = state.latest(j.records(wave="w"))
        Executor(j, LiveSink(Ctx()), Bus()).undo(plan, view.pending_undo())
    finally:
        OPS["test.remove"] = _remove
    assert WORLD == [] and seen == ["c1", "a2", "a1"]
    assert state.latest(j.records(wave="w")).pending_undo() == []


def test_dry_run_changes_nothing_and_lists_everything(tmp_path):
    sink = DryRunSink(type("C", (), {"with_check": lambda self: self})())
    Executor(NullJournal(), sink, Bus()).apply(wave_plan())
    assert WORLD == [] and [a.summary for a in sink.listed] == ["add a1", "add a2", "add c1"]


def test_second_lock_is_refused_naming_the_holder(tmp_path):
    with lock.wave_lock(tmp_path, "w", "run"):
        with pytest.raises(LockHeld, match=rf"pid {os.getpid()} on .* \(run\)"):
            with lock.wave_lock(tmp_path, "w", "rollback"):
                pass
        assert lock.holder(tmp_path, "w")["pid"] == os.getpid()
    assert lock.holder(tmp_path, "w") is None


def test_lock_of_a_killed_holder_is_taken_over(tmp_path):
    code = ("import sys,time; from pathlib import Path; from migrate.engine import lock\n"
            f"with lock.wave_lock(Path({str(tmp_path)!r}), 'w', 'run'):\n"
            "    print('locked', flush=True); time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "locked"
    assert lock.holder(tmp_path, "w")["pid"] == child.pid
    with pytest.raises(LockHeld):
        lock.unlock(tmp_path, "w")
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert lock.holder(tmp_path, "w") is None
    with lock.wave_lock(tmp_path, "w", "run") as stale:
        assert stale["pid"] == child.pid


def test_gate_stops_the_run_until_approved_and_journals_who(tmp_path):
    from types import SimpleNamespace

    from migrate.errors import AwaitingApproval
    from migrate.steps.cutover import approve
    OPS["test.gate"] = approve
    spec = SimpleNamespace(waves={"w": SimpleNamespace(automatic=False)})
    ctx = SimpleNamespace(wave="w", approved_by=None, inv=SimpleNamespace(spec=spec), check=False)
    plan = WavePlan("w", "run-1", (StepPlan("a", "sys", "a", (add("a1"),)),
                                   StepPlan("gate", "sys", "gate", (Action("test.gate", {}, "go/no-go"),)),
                                   StepPlan("c", "sys", "c", (add("c1"),))))
    j = Journal(tmp_path / "j")
    start(j, plan)
    with pytest.raises(AwaitingApproval, match="--approve NAME"):
        Executor(j, LiveSink(ctx), Bus()).apply(plan)
    view = state.latest(j.records(wave="w"))
    assert view.status == "awaiting_approval" and view.steps["gate"].state == "waiting" and WORLD == ["a1"]
    ctx.approved_by = "Maria Rossi"
    Executor(j, LiveSink(ctx), Bus()).apply(plan, view)
    view = state.latest(j.records(wave="w"))
    assert WORLD == ["a1", "c1"] and view.approval == {"approved_by": "Maria Rossi", "how": "--approve"}
    spec.waves["w"].automatic, ctx.approved_by = True, None
    assert approve(ctx)["how"] == "automatic (spec)"
