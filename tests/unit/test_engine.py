"""The executor, resume and rollback, with operations that write to a list: no lab needed."""

import os
import signal
import subprocess
import sys

import pytest

from migrate.engine import lock, state
from migrate.engine.context import Context
from migrate.engine.events import Bus
from migrate.engine.executor import Executor, NullJournal
from migrate.engine.journal import Journal
from migrate.engine.registry import Operation, Registry
from migrate.engine.sinks import DryRunSink, LiveSink
from migrate.errors import LockHeld, StepFailed
from migrate.model.plan import Action, StepPlan, WavePlan, reading

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


def _look(ctx):
    return {"seen": len(WORLD)}


REGISTRY = Registry([Operation("test.add", _add), Operation("test.remove", _remove), Operation("test.look", _look)])


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


def Ctx(**kw):
    return Context(**{"inv": None, "run_id": "run-1", "wave": "w", **kw})


def live(ctx=None, registry=REGISTRY):
    return LiveSink(ctx or Ctx(), registry)


def start(j, plan):
    j.append(plan.run_id, plan.wave, "run_started", {"plan": plan.to_json(), "operator": "t@h"})


def test_apply_journals_and_performs_in_order(tmp_path):
    j, plan, events = Journal(tmp_path / "j"), wave_plan(), []
    start(j, plan)
    Executor(j, live(), Bus(lambda k, d: events.append(k))).apply(plan)
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
    results = Executor(j, live(), Bus()).apply(plan)
    assert [(r.step, r.status, r.changed) for r in results] == [("a", "done", 2), ("b", "done", 0), ("c", "failed", 0)]
    assert results[-1].error == "cannot add c1" and isinstance(results[-1].cause, StepFailed)
    view = state.latest(j.records(wave="w"))
    assert view.status == "failed" and view.steps["c"].state == "failed"
    FAIL_ON.clear()
    again = Executor(j, live(), Bus()).apply(plan, view)
    assert [(r.step, r.status) for r in again] == [("a", "skipped"), ("b", "skipped"), ("c", "done")]
    assert WORLD == ["a1", "a2", "c1"], "a1 and a2 were not added twice"


def test_a_resumed_run_killed_again_is_resumable_again(tmp_path):
    j, plan = Journal(tmp_path / "j"), wave_plan()
    start(j, plan)
    FAIL_ON.add("c1")
    Executor(j, live(), Bus()).apply(plan)
    j.append("run-1", "w", "run_resumed", {"operator": "t@h"})
    j.append("run-1", "w", "step_started", {}, step="c")  # and then killed
    view = state.latest(j.records(wave="w"))
    assert view.status == "interrupted" and view.steps["c"].state == "running"
    FAIL_ON.clear()
    Executor(j, live(), Bus()).apply(plan, view)
    assert WORLD == ["a1", "a2", "c1"]


def test_interrupted_step_is_undone_then_rerun(tmp_path):
    j, plan = Journal(tmp_path / "j"), wave_plan()
    start(j, plan)
    # A crash after a1 was done but before a2: the journal holds a's start and a1's effect.
    j.append("run-1", "w", "step_started", {}, step="a")
    j.append("run-1", "w", "effect", {"action": add("a1").to_json()}, step="a")
    WORLD.append("a1")
    Executor(j, live(), Bus()).apply(plan, state.latest(j.records(wave="w")))
    assert WORLD == ["a1", "a2", "c1"]


def test_rollback_undoes_everything_newest_first(tmp_path):
    j, plan, seen = Journal(tmp_path / "j"), wave_plan(), []
    start(j, plan)
    Executor(j, live(), Bus()).apply(plan)
    watching = Registry([Operation("test.add", _add),
                         Operation("test.remove", lambda ctx, *, item: (seen.append(item), _remove(ctx, item=item))[1])])
    view = state.latest(j.records(wave="w"))
    Executor(j, live(registry=watching), Bus()).undo(plan, view.pending_undo())
    assert WORLD == [] and seen == ["c1", "a2", "a1"]
    assert state.latest(j.records(wave="w")).pending_undo() == []


def test_dry_run_changes_nothing_and_lists_everything(tmp_path):
    sink = DryRunSink(Ctx(), REGISTRY)
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


def test_force_never_takes_the_lock_of_a_live_holder(tmp_path):
    from migrate.errors import MigrateError
    code = ("import sys,time; from pathlib import Path; from migrate.engine import lock\n"
            f"with lock.wave_lock(Path({str(tmp_path)!r}), 'w', 'run'):\n"
            "    print('locked', flush=True); time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(MigrateError) as refused:
            lock.unlock(tmp_path, "w", force=True)
        assert not isinstance(refused.value, LockHeld) and refused.value.exit_code == 1
        assert f"pid {child.pid}" in str(refused.value) and "(run)" in str(refused.value)
        assert lock.lock_path(tmp_path, "w").exists()
        assert lock.holder(tmp_path, "w")["pid"] == child.pid, "the live holder keeps its lock"
        with pytest.raises(LockHeld):
            with lock.wave_lock(tmp_path, "w", "run"):
                pass
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert "removed (last held by pid" in lock.unlock(tmp_path, "w", force=True)


def test_force_clears_a_lock_whose_recorded_holder_is_gone(tmp_path):
    """The kernel lock outlives its recorded holder in a forked child: --force may clear that."""
    code = ("import os,sys,time; from pathlib import Path; from migrate.engine import lock\n"
            f"with lock.wave_lock(Path({str(tmp_path)!r}), 'w', 'run'):\n"
            "    if os.fork() == 0:\n"
            "        print(os.getpid(), flush=True); time.sleep(60)\n"
            "    os._exit(0)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    orphan = int(parent.stdout.readline())
    parent.wait()
    try:
        live = lock.holder(tmp_path, "w")
        assert live is not None and live["pid"] == parent.pid and not lock.alive_here(live)
        assert "removed (last held by pid" in lock.unlock(tmp_path, "w", force=True)
        with lock.wave_lock(tmp_path, "w", "run") as stale:
            assert stale is None
    finally:
        os.kill(orphan, signal.SIGKILL)


def test_gate_stops_the_run_until_approved_and_journals_who(tmp_path):
    from types import SimpleNamespace

    from migrate.errors import AwaitingApproval, MigrateError
    from migrate.ops.cutover import approve
    gate = Registry([Operation("test.add", _add), Operation("test.remove", _remove), approve.operation])
    spec = SimpleNamespace(waves={"w": SimpleNamespace(automatic=False)})
    j = Journal(tmp_path / "j")
    ctx = Ctx(inv=SimpleNamespace(spec=spec), journal=j)
    plan = WavePlan("w", "run-1", (StepPlan("a", "sys", "a", (add("a1"),)),
                                   StepPlan("go-no-go", "sys", "gate", (reading("cutover.approve", {}, "go/no-go"),)),
                                   StepPlan("c", "sys", "c", (add("c1"),))))
    start(j, plan)
    stopped = Executor(j, live(ctx, gate), Bus()).apply(plan)[-1]
    assert (stopped.step, stopped.status) == ("go-no-go", "waiting") and "--approve NAME" in stopped.error
    assert isinstance(stopped.cause, AwaitingApproval) and not isinstance(stopped.cause, StepFailed)
    assert isinstance(stopped.cause, MigrateError)
    view = state.latest(j.records(wave="w"))
    assert view.status == "awaiting_approval" and view.steps["go-no-go"].state == "waiting" and WORLD == ["a1"]
    assert view.approval is None
    ctx.approved_by = "Maria Rossi"
    Executor(j, live(ctx, gate), Bus()).apply(plan, view)
    view = state.latest(j.records(wave="w"))
    assert WORLD == ["a1", "c1"] and view.approval == {"approved_by": "Maria Rossi", "how": "--approve"}
    assert [r.step for r in j.records() if r.kind == "approval"] == ["go-no-go"], "the gate's own record"
    spec.waves["w"].automatic, ctx.approved_by = True, None
    assert approve(ctx)["how"] == "automatic (spec)"


def test_an_undo_for_rollback_only_survives_a_resume(tmp_path):
    kept = Action("test.add", {"item": "k1"}, "add k1", undo=Action("test.remove", {"item": "k1"}, "remove k1"),
                  undo_on="rollback")
    plan = WavePlan("w", "run-1", (StepPlan("k", "sys", "keep", (kept, add("k2"))),))
    j = Journal(tmp_path / "j")
    start(j, plan)
    # A crash after both effects of the step, before its end.
    j.append("run-1", "w", "step_started", {}, step="k")
    for action in plan.steps[0].actions:
        j.append("run-1", "w", "effect", {"action": action.to_json()}, step="k")
        WORLD.append(action.args["item"])
    Executor(j, live(), Bus()).apply(plan, state.latest(j.records(wave="w")))
    assert WORLD == ["k1", "k1", "k2"], "k2 undone and redone; k1 kept (the rerun adds it again)"
    view = state.latest(j.records(wave="w"))
    Executor(j, live(), Bus()).undo(plan, view.pending_undo())
    assert WORLD == [], "the rollback undoes the kept effect too"


def test_reads_are_not_in_the_rollback_list(tmp_path):
    plan = WavePlan("w", "run-1", (StepPlan("r", "sys", "read", (reading("test.look", {}, "look"), add("r1"))),))
    j, events = Journal(tmp_path / "j"), []
    start(j, plan)
    Executor(j, live(), Bus()).apply(plan)
    view = state.latest(j.records(wave="w"))
    assert [a.summary for _, _, a in view.pending_undo()] == ["add r1"]
    Executor(j, live(), Bus(lambda k, d: events.append(k))).undo(plan, view.pending_undo())
    assert WORLD == [] and "irreversible" not in events


@pytest.mark.parametrize("kwargs", [{}, {"read_only": True, "irreversible": "why"},
                                    {"undo": Action("x", {}, "x", read_only=True), "read_only": True}])
def test_an_action_declares_exactly_one_kind_of_reversibility(kwargs):
    with pytest.raises(ValueError, match="exactly one of undo, irreversible, read_only"):
        StepPlan("s", "sys", "step", (Action("op", {}, "summary", **kwargs),))
