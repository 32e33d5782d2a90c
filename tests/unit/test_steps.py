"""Every step's planning on canned facts, and the wave graph: facts in, actions out. No lab,
no network: planning that tried to connect anywhere would fail here (see `no_network`)."""

import dataclasses
import inspect
import socket
from pathlib import Path

import pytest

from migrate import commands, config, steps
from migrate.engine import state
from migrate.engine.events import Bus
from migrate.engine.executor import Executor
from migrate.engine.journal import Journal
from migrate.errors import ConfigError, StepFailed
from migrate.facts.archive import ArchiveOnHost, ArchiveVolume
from migrate.facts.cutover import FrontDoorUpstreams
from migrate.facts.database import (
    DatabaseExists,
    DatabaseSize,
    RolesPresent,
    RolesReferenced,
    TablesToCopy,
)
from migrate.facts.dns import CnameValue
from migrate.facts.files import PathExists
from migrate.model.plan import WavePlan
from migrate.facts.replication import LargeObjects, TablesWithoutKey
from migrate.steps import app, archive, checks, cutover, database, sync
from migrate.steps.base import Step
from migrate.testing import RecordingSink, canned_facts
from migrate.transfer.catalog import Table

LAB = Path(__file__).resolve().parents[2] / "inventories" / "lab"
INV = config.load(LAB)
RUN = steps.Run(INV, "wave-1", "wave-1-20261201T000000Z-abcdef")
PREFIX = "waves/wave-1/wave-1-20261201T000000Z-abcdef"
MIB = 1024 * 1024


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("planning tried to open a connection")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def plan(step, values=None):
    return step.plan(RUN, canned_facts(step.needs(RUN), values))


def ops(step_plan):
    return [(a.op, a.undo.op if a.undo else None) for a in step_plan.actions]


# --- application hosts ------------------------------------------------------------------------

FREEZE = app.Freeze("src-app", ("personnel", "attendance"), ("personale", "presenze"),
                    (("presenze", "/presenze/drain"),))
FLAG_P, FLAG_A = PathExists("src-app", app.maintenance_flag("personale")), PathExists("src-app", app.maintenance_flag("presenze"))


@pytest.mark.parametrize("flags, services, drains", [
    ({}, ["personale", "presenze"], [{"service": "presenze", "path": "/presenze/drain"}]),
    ({FLAG_A: True}, ["personale"], []),
    ({FLAG_P: True}, ["presenze"], [{"service": "presenze", "path": "/presenze/drain"}]),
])
def test_freeze_puts_in_maintenance_only_what_is_not_yet(flags, services, drains):
    p = plan(FREEZE, flags)
    (on,) = p.actions
    assert p.id == "freeze:src-app" and p.system == "personnel+attendance"
    assert on.args["vars"] == {"services": services, "state": "on", "wave": "wave-1", "drains": drains}
    assert on.undo.args["vars"] == {"services": services, "state": "off", "wave": "wave-1"}


def test_freeze_of_a_host_already_in_maintenance_is_a_noop():
    p = plan(FREEZE, {FLAG_P: True, FLAG_A: True})
    assert p.actions == () and p.noop == "already in maintenance before this wave"


CONFIGURE = next(s for s in steps.build(INV.spec, "wave-1") if isinstance(s, app.Configure))


def test_configure_renders_and_starts_both_apps_and_its_undo_removes_them():
    assert isinstance(CONFIGURE, app.Configure)
    p = plan(CONFIGURE)
    (put,) = p.actions
    assert put.args["hosts"] == ["tgt-app"] and put.args["vars"]["state"] == "present"
    assert [c["dest"] for c in put.args["vars"]["configs"]] == ["/etc/hr/personale.conf", "/etc/hr/presenze.conf"]
    assert "port=15433 dbname=personale" in put.args["vars"]["configs"][0]["settings"]["db_personale"]
    assert put.undo.args["vars"]["state"] == "absent" and put.undo.args["vars"]["configs"] == put.args["vars"]["configs"]


def test_a_warm_wave_renders_before_the_freeze_and_starts_inside_it():
    warm = steps.build(INV.spec, "wave-1", warm=True)
    render = next(s for s in warm if isinstance(s, app.Configure))
    start = next(s for s in warm if isinstance(s, app.StartTargets))
    (put,) = plan(render).actions
    assert put.args["vars"]["state"] == "rendered" and put.undo.args["vars"]["state"] == "absent"
    (up,) = plan(start).actions
    assert up.args["vars"]["state"] == "started" and up.undo.args["vars"]["state"] == "stopped"
    assert up.args["vars"]["configs"] == put.args["vars"]["configs"]


def test_configure_refuses_to_overwrite_a_configuration_it_did_not_create():
    with pytest.raises(StepFailed, match="tgt-app:/etc/hr/presenze.conf already exists"):
        plan(CONFIGURE, {PathExists("tgt-app", "/etc/hr/presenze.conf"): True})


# --- databases ----------------------------------------------------------------------------------

def test_open_staging_expires_the_run_prefix_and_only_a_rollback_deletes_it():
    (action,) = plan(database.OpenStaging("comune-migration-staging")).actions
    assert action.args == {"prefix": PREFIX, "days": 7, "rule_id": "migrate-staging-" + RUN.run_id}
    assert action.undo.op == "s3.close_staging" and action.undo_on == "rollback"


def test_stage_database_dumps_the_schema_and_reports_the_size():
    step = database.StageDatabase("personnel", "personale", "onprem-pg", "personale")
    p = plan(step, {DatabaseSize("onprem-pg", "personale"): 123_456})
    assert p.id == "personnel/stage-db:personale" and p.volume == {"database_bytes": 123_456}
    assert ops(p) == [("db.stage_schema", "s3.delete_prefix")]
    assert p.actions[0].args["prefix"] == f"{PREFIX}/db/personale"


CREATE = database.CreateDatabase("personnel", "personale", "cloud-pg", "personale")
REFERENCED = RolesReferenced("onprem-pg", "personale")


@pytest.mark.parametrize("present, expected", [
    (frozenset({"migrate"}), [("db.create_roles", "db.drop_roles"), ("db.create_target", "db.drop_database")]),
    (frozenset({"migrate", "hr_owner"}), [("db.create_target", "db.drop_database")]),
])
def test_create_database_creates_only_the_missing_roles(present, expected):
    p = plan(CREATE, {REFERENCED: frozenset({"hr_owner", "pg_read_all_data"}), RolesPresent("cloud-pg"): present})
    assert ops(p) == expected
    if len(expected) == 2:
        assert p.actions[0].args["roles"] == ["hr_owner"] and RUN.run_id in p.actions[0].args["marker"]
    assert p.actions[-1].args["roles"] == {"renames": {"hr_owner": "hr_owner"}, "unmapped": "fail"}


def test_create_database_refuses_an_existing_target():
    with pytest.raises(StepFailed, match="cloud-pg/personale already exists"):
        plan(CREATE, {DatabaseExists("cloud-pg", "personale"): True})


def test_create_database_names_the_spec_field_of_an_unmapped_role():
    with pytest.raises(ConfigError, match=r"migrate.yml: systems.personnel.databases.personale.roles: source role\(s\) clerk"):
        plan(CREATE, {REFERENCED: frozenset({"hr_owner", "clerk"})})


def test_restore_database_chunks_the_tables_it_was_told_of():
    step = database.RestoreDatabase("attendance", "presenze", "onprem-pg", "presenze", "cloud-pg", "presenze")
    small = Table("public", "reason_code", 0, ("code", "kind"), ("integer", "text"), ("code",), bytes=8192, blocks=1)
    big = Table("public", "punch", 0, ("punch_id", "employee_id"), ("bigint", "integer"), ("punch_id",),
                bytes=200 * MIB, blocks=25600, key_min=1, key_max=1_000_000)
    p = plan(step, {TablesToCopy("onprem-pg", "presenze", 64 * MIB): (small, big)})
    (action,) = p.actions
    assert p.volume["tables"] == 2 and p.volume["table_bytes"] == 200 * MIB + 8192
    assert p.volume["chunks"] == len(action.args["chunks"]) > 2, "the big table is split by key range"
    assert action.args["source"] == {"server": "onprem-pg", "dbname": "presenze"}
    assert action.undo.args == {"prefix": f"{PREFIX}/db/presenze/data/"}


# --- documents --------------------------------------------------------------------------------

def objects_run():
    """The lab's spec with its archive in the `objects` layout (one object per document)."""
    personnel = INV.spec.systems["personnel"]
    archive_spec = personnel.archive.model_copy(update={"layout": "objects"})
    systems = {**INV.spec.systems, "personnel": personnel.model_copy(update={"archive": archive_spec})}
    inv = dataclasses.replace(INV, spec=INV.spec.model_copy(update={"systems": systems}))
    return steps.Run(inv, RUN.wave, RUN.run_id)


DOCS = {ArchiveOnHost("src-app", "/srv/personale/documents"): ArchiveVolume(3, 3000)}


def test_stage_archive_packs_the_tree_by_default_and_reports_its_volume():
    step = archive.StageArchive("personnel", "src-app", "/srv/personale/documents")
    p = plan(step, DOCS)
    assert p.volume == {"files": 3, "bytes": 3000}
    assert ops(p) == [("files.pack_to_bucket", "s3.abort_uploads")]
    assert p.actions[0].args == {"host": "src-app", "path": "/srv/personale/documents", "system": "personnel",
                                 "step": "personnel/stage-archive", "delta": False, "live": False}
    assert p.actions[0].undo.args == {"prefix": f"{PREFIX}/docs/personnel/packs/"}
    assert plan(archive.StageArchive("personnel", "src-app", "/srv/personale/documents", live=True),
                DOCS).actions[0].args["live"] is True


def test_stage_archive_in_the_objects_layout_copies_one_object_per_document():
    step = archive.StageArchive("personnel", "src-app", "/srv/personale/documents")
    p = step.plan(objects_run(), canned_facts(step.needs(RUN), DOCS))
    assert ops(p) == [("files.archive_to_bucket", "s3.abort_uploads")]
    assert p.actions[0].args["prefix"] == f"{PREFIX}/docs/personnel"


def test_restore_archive_keeps_restored_files_on_resume_and_removes_them_on_rollback():
    step = archive.RestoreArchive("personnel", "tgt-app", "/srv/personale/documents")
    (action,) = plan(step, DOCS).actions
    assert (action.op, action.undo.op, action.undo_on) == ("files.restore_packs", "files.unrestore_packs", "rollback")
    (action,) = step.plan(objects_run(), canned_facts(step.needs(RUN), DOCS)).actions
    assert (action.op, action.undo.op, action.undo_on) == ("files.restore_from_bucket", "files.remove_restored", "rollback")


def test_archive_delta_packs_and_restores_only_changes_and_undoes_on_rollback():
    step = archive.ArchiveDelta("personnel", "src-app", "/srv/personale/documents", "tgt-app", "/srv/personale/documents")
    p = plan(step, DOCS)
    assert ops(p) == [("files.pack_to_bucket", "s3.abort_uploads"), ("files.restore_packs", "files.unrestore_packs")]
    assert [a.args["delta"] for a in p.actions] == [True, True] and p.actions[1].undo_on == "rollback"
    assert p.actions[0].args["live"] is False, "inside the freeze a file changing while read is an error"
    staged_only = archive.ArchiveDelta("personnel", "src-app", "/srv/personale/documents", None, None)
    assert ops(plan(staged_only, DOCS)) == [("files.pack_to_bucket", "s3.abort_uploads")]


def test_restore_archive_without_a_target_host_names_the_spec_field():
    with pytest.raises(ConfigError, match="systems.personnel.archive.target_path: system personnel has no app.target_host"):
        plan(archive.RestoreArchive("personnel", None, "/srv/personale/documents"))


# --- read-only steps --------------------------------------------------------------------------

@pytest.mark.parametrize("step, op", [
    (checks.EvidenceDigest("attendance", "presenze", "onprem-pg", "presenze", ("punch",)), "verify.evidence_digest"),
    (checks.VerifyWave(("personnel", "attendance")), "verify.wave"),
    (cutover.TargetHealth(("personnel", "attendance")), "cutover.health"),
    (cutover.Gate(("personnel", "attendance")), "cutover.approve"),
])
def test_read_only_steps_have_nothing_to_undo(step, op):
    (action,) = plan(step).actions
    assert action.op == op and action.read_only and action.undo is None and action.irreversible is None


def test_target_health_asks_each_app_for_its_target_database():
    (action,) = plan(cutover.TargetHealth(("personnel",))).actions
    (check,) = action.args["checks"]
    assert check["url"].endswith("/personale/health") and check["databases"] == ["personale"]
    assert check["servers"] == ["127.0.0.1:15433"]


# --- cutover ----------------------------------------------------------------------------------

def test_way_back_replicates_target_to_source_and_its_undo_drains_it():
    (action,) = plan(cutover.WayBack("attendance", "presenze")).actions
    where = {"source": "onprem-pg", "source_db": "presenze", "target": "cloud-pg", "target_db": "presenze"}
    assert (action.op, action.args, action.undo.op, action.undo.args) == ("replication.start", where, "replication.stop", where)


SWITCH = cutover.SwitchEntry(("personnel", "attendance"))
DOOR = FrontDoorUpstreams("front", "/etc/front/upstreams.conf")


def test_switch_undo_puts_back_what_was_there_at_plan_time():
    p = plan(SWITCH, {DOOR: {"personale": "http://old:1", "other": "http://x"},
                      CnameValue("personale.comune.lab."): "src-app.comune.lab."})
    door, dns_p, dns_a = p.actions
    assert door.args["services"] == {"personale": cutover.target_url(RUN, "personnel"),
                                     "presenze": cutover.target_url(RUN, "attendance")}
    assert door.undo.args["services"] == {"personale": "http://old:1", "presenze": None}, "only this wave's services"
    assert (dns_p.args["value"], dns_p.undo.args["value"]) == ("tgt-app.comune.lab.", "src-app.comune.lab.")
    assert dns_a.undo.args["value"] is None, "no record before: the undo deletes it"


def test_post_cutover_checks_through_the_front_door_and_asks_for_rollback_on_failure():
    p = plan(cutover.PostCutover(("personnel", "attendance")))
    health, dns_check = p.actions
    assert p.rollback_on_failure and health.read_only and dns_check.read_only
    assert all(c["url"].startswith("http://127.0.0.1:12280/") for c in health.args["checks"])
    assert dns_check.args["records"] == {"personale.comune.lab.": "tgt-app.comune.lab.",
                                         "presenze.comune.lab.": "tgt-app.comune.lab."}


# --- the warm path --------------------------------------------------------------------------

SYNC = sync.SyncDatabase("personnel", "personale")
KEYLESS = TablesWithoutKey("onprem-pg", "personale")
LOBS = LargeObjects("onprem-pg", "personale")


def test_sync_database_publishes_copies_from_a_slot_and_undoes_everything_on_rollback():
    p = plan(SYNC, {KEYLESS: ("public.headcount_snapshot",), LOBS: 0})
    assert ops(p) == [("sync.prepare_source", "sync.restore_source"), ("sync.copy_and_follow", "sync.unfollow")]
    prepare, copy = p.actions
    assert prepare.args["replica_identity_full"] == ["public.headcount_snapshot"]
    assert prepare.undo.args["replica_identity_full"] == ["public.headcount_snapshot"]
    assert {a.undo_on for a in p.actions} == {"rollback"}, "a resume continues the sync, never undoes it"
    assert copy.args["sides"] == {"source": "onprem-pg", "source_db": "personale", "target": "cloud-pg",
                                  "target_db": "personale"}
    assert copy.args["prefix"] == f"{PREFIX}/db/personale" and copy.args["roles"]


def test_sync_database_refuses_large_objects_naming_the_database():
    with pytest.raises(ConfigError, match="systems.personnel.databases.personale: onprem-pg/personale has 3 large"):
        plan(SYNC, {KEYLESS: (), LOBS: 3})


def test_sync_database_needs_a_replication_passfile_on_the_target_server():
    servers = {**INV.spec.db_servers, "cloud-pg": INV.spec.db_servers["cloud-pg"].model_copy(
        update={"replication_passfile": None})}
    inv = dataclasses.replace(INV, spec=INV.spec.model_copy(update={"db_servers": servers}))
    run = steps.Run(inv, RUN.wave, RUN.run_id)
    with pytest.raises(ConfigError, match="db_servers.cloud-pg.replication_passfile: required for a warm sync"):
        SYNC.plan(run, canned_facts(SYNC.needs(run), {KEYLESS: (), LOBS: 0}))


def test_synced_and_cutover_check_only_read():
    (hold,) = plan(sync.Synced((("personnel", "personale"),))).actions
    (check,) = plan(sync.CutoverCheck((("personnel", "personale"),))).actions
    assert hold.read_only and hold.op == "sync.hold"
    assert check.read_only and check.args["databases"][0]["label"] == "personnel/personale"


def test_fence_lifts_itself_on_rollback_only():
    p = plan(sync.FenceDatabase("attendance", "presenze"))
    assert ops(p) == [("sync.fence", "sync.unfence")]
    (fence,) = p.actions
    assert fence.undo_on == "rollback" and fence.undo.args == {"server": "onprem-pg", "dbname": "presenze"}


# --- the catalogue and the wave graph ---------------------------------------------------------

TESTED = {app.Freeze, app.Configure, app.StartTargets, database.OpenStaging, database.StageDatabase, database.CreateDatabase,
          database.RestoreDatabase, archive.StageArchive, archive.RestoreArchive, archive.ArchiveDelta,
          checks.EvidenceDigest,
          checks.VerifyWave, cutover.WayBack, cutover.TargetHealth, cutover.Gate, cutover.SwitchEntry,
          cutover.PostCutover, sync.SyncDatabase, sync.Synced, sync.CutoverCheck, sync.FenceDatabase}


def test_every_step_of_the_catalogue_has_a_planning_test_here():
    catalogue = {cls for module in (app, database, archive, checks, cutover, sync)
                 for _, cls in inspect.getmembers(module, inspect.isclass)
                 if issubclass(cls, Step) and cls is not Step}
    assert catalogue == TESTED


LAB_WAVE = ["freeze:src-app", "attendance/evidence:presenze", "staging:comune-migration-staging",
            "personnel/stage-db:personale", "attendance/stage-db:presenze", "personnel/stage-archive",
            "personnel/restore-archive", "personnel/create-db:personale", "attendance/create-db:presenze",
            "personnel/restore-db:personale", "attendance/restore-db:presenze", "verify",
            "configure:tgt-app", "target-health", "go-no-go", "personnel/way-back:personale",
            "attendance/way-back:presenze", "switch-entry", "post-cutover"]

# Source live until cutover-check; the freeze holds only what must be frozen.
WARM_WAVE = ["staging:comune-migration-staging", "personnel/stage-db:personale", "attendance/stage-db:presenze",
             "personnel/create-db:personale", "attendance/create-db:presenze", "personnel/sync-db:personale",
             "attendance/sync-db:presenze", "personnel/stage-archive", "personnel/restore-archive",
             "configure:tgt-app", "synced", "cutover-check", "freeze:src-app",
             "personnel/fence-db:personale", "attendance/fence-db:presenze", "attendance/evidence:presenze",
             "personnel/archive-delta", "verify", "start:tgt-app", "target-health",
             "go-no-go", "personnel/way-back:personale", "attendance/way-back:presenze", "switch-entry",
             "post-cutover"]


def test_the_lab_wave_in_phase_and_dependency_order():
    assert [s.id for s in steps.build(INV.spec, "wave-1")] == LAB_WAVE


def test_the_warm_wave_copies_before_the_freeze_and_fences_inside_it():
    assert [s.id for s in steps.build(INV.spec, "wave-1", warm=True)] == WARM_WAVE


def test_the_way_back_starts_after_the_gate_and_before_the_switch():
    for warm in (False, True):
        ids = [s.id for s in steps.build(INV.spec, "wave-1", warm=warm)]
        assert ids.index("go-no-go") < ids.index("personnel/way-back:personale") < ids.index("switch-entry")


def test_a_limited_wave_has_only_its_system():
    ids = [s.id for s in steps.build(INV.limited("wave-1", "attendance").spec, "wave-1")]
    assert "attendance/restore-db:presenze" in ids and not [i for i in ids if i.startswith("personnel/")]
    assert ids[0] == "freeze:src-app" and ids[-1] == "post-cutover"


def test_a_system_without_app_gets_no_freeze_way_back_or_switch():
    personnel = INV.spec.systems["personnel"]
    alone = personnel.model_copy(update={"app": None,
                                          "archive": personnel.archive.model_copy(update={"target_path": None})})
    wave = INV.spec.waves["wave-1"].model_copy(update={"systems": ["personnel"]})
    spec = INV.spec.model_copy(update={"systems": {**INV.spec.systems, "personnel": alone}, "waves": {"wave-1": wave}})
    ids = [s.id for s in steps.build(spec, "wave-1")]
    assert ids == ["staging:comune-migration-staging", "personnel/stage-db:personale", "personnel/stage-archive",
                   "personnel/create-db:personale", "personnel/restore-db:personale", "verify"]


def test_no_entry_point_means_no_gate_and_no_switch():
    spec = INV.spec.model_copy(update={"entry_point": None})
    ids = [s.id for s in steps.build(spec, "wave-1")]
    assert ids[-2:] == ["configure:tgt-app", "target-health"]
    assert ids[-4:-2] == ["personnel/way-back:personale", "attendance/way-back:presenze"], \
        "without a switch, the target writes from its start: the way back comes first"


def lab_wave_plan(warm: bool = False) -> WavePlan:
    wave_steps = steps.build(INV.spec, "wave-1", warm=warm)
    found = canned_facts([f for s in wave_steps for f in s.needs(RUN)],
                         {REFERENCED: frozenset({"hr_owner"}), RolesReferenced("onprem-pg", "presenze"): frozenset({"hr_owner"})})
    return WavePlan("wave-1", RUN.run_id, tuple(s.plan(RUN, found) for s in wave_steps))


def test_every_operation_a_plan_names_is_registered():
    actions = [a for s in lab_wave_plan().steps + lab_wave_plan(warm=True).steps for a in s.actions]
    named = {a.op for a in actions} | {a.undo.op for a in actions if a.undo}
    assert named <= commands.REGISTRY.names()


def test_the_lab_wave_journals_an_undo_for_every_change_it_makes(tmp_path):
    plan, sink, j = lab_wave_plan(), RecordingSink(), Journal(tmp_path / "journal.sqlite")
    j.append(plan.run_id, plan.wave, "run_started", {"plan": plan.to_json(), "operator": "test"})
    assert [r.status for r in Executor(j, sink, Bus()).apply(plan)] == ["done"] * len(plan.steps)
    view = state.latest(j.records(wave="wave-1"))
    assert set(view.states().values()) == {"done"}
    changes = [a for a in sink.executed if not a.read_only]
    assert changes and all(a.undo is not None for a in changes), "nothing in the lab wave is irreversible"
    assert [a for _, _, a in view.pending_undo()] == changes[::-1], "the rollback list: every change, newest first"
    assert {a.op for a in sink.executed if a.read_only} == {"verify.evidence_digest", "verify.wave", "cutover.health",
                                                            "cutover.approve", "cutover.dns_check"}
