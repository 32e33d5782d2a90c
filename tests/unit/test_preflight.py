"""Preflight facts' process() on canned answers and the judgements on canned facts: no lab."""

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from migrate.config import Database, Window
from migrate.facts.bucket import BucketSettings
from migrate.facts.host import HostState, free_bytes
from migrate.facts.server import SourceServer, TargetServer
from migrate.preflight import judge as p

DF = """Filesystem     1024-blocks      Used Available Capacity Mounted on
/dev/vda         263174212  23000000 75000000      24% /
"""


@pytest.mark.parametrize("output, free", [
    (DF, 75000000 * 1024),
    ("garbage", None),
    ("", None),
    ("Filesystem 1024-blocks Used Available\n/dev/vda 10 5 many\n", None),
])
def test_free_bytes_from_df(output, free):
    assert free_bytes(output) == free


def test_df_pass_and_fail():
    assert p.judge_df("h", free_bytes(DF), 10 * 1024**3).status == "pass"
    bad = p.judge_df("h", free_bytes(DF), 100 * 1024**3)
    assert bad.status == "fail" and "71.5 GiB free, 100.0 GiB needed" in bad.reason
    unreadable = p.judge_df("h", None, 1)
    assert unreadable.status == "fail" and "could not read df output" in unreadable.reason


@pytest.mark.parametrize("become, output, expected", [
    (False, "1000.25\n0\n" + DF, [("clock skew", "pass", "+0.2s"), ("privileges", "pass", "uid 0"),
                                   ("free disk", "pass", "71.5 GiB free")]),
    (True, "1000.0\n1000\n" + DF, [("clock skew", "pass", "+0.0s"), ("privileges", "pass", "sudo works"),
                                    ("free disk", "pass", "free")]),
    (False, "1045.0\n1000\n" + DF, [("clock skew", "fail", "+45.0s"), ("privileges", "warn", "uid 1000 without become"),
                                     ("free disk", "pass", "free")]),
    (False, "1000.0\n0\nno df here", [("clock skew", "pass", "+0.0s"), ("privileges", "pass", "uid 0"),
                                        ("free disk", "fail", "could not read df output")]),
])
def test_host_state(become, output, expected):
    state = HostState("h").process({"become": become, "output": output, "middle": 1000.0})
    found = p.judge_host("h", state, 10 * 1024**3)
    assert [(f.check, f.status) for f in found] == [(c, s) for c, s, _ in expected]
    assert all(words in f.reason for f, (_, _, words) in zip(found, expected)), found


@pytest.mark.parametrize("known, status, words", [
    ({"ssh-ed25519": "AAAA"}, "pass", "verified"),
    ({}, "fail", "unknown host"),
    ({"ssh-ed25519": "BBBB"}, "fail", "host key changed"),
    ({"ssh-rsa": "AAAA"}, "fail", "host key changed"),
])
def test_host_key(known, status, words):
    f = p.judge_host_key("src-app", ("ssh-ed25519", "AAAA", "SHA256:xyz"), known)
    assert f.status == status and words in f.reason
    if status == "fail":
        assert "SHA256:xyz" in f.reason, "the operator needs the fingerprint to check out of band"


def test_versions():
    assert p.judge_versions("db", 150018, 160002).status == "pass"
    older = p.judge_versions("db", 160002, 150018)
    assert older.status == "fail" and "target major 15 is older than source 16" in older.reason


def test_extensions():
    assert p.judge_extensions("db", {"pg_trgm"}, {"pg_trgm", "hstore"}).status == "pass"
    f = p.judge_extensions("db", {"pg_trgm", "postgis"}, {"pg_trgm"})
    assert f.status == "fail" and "postgis" in f.reason


def test_encoding():
    assert p.judge_encoding("db", ("UTF8", "it_IT.UTF-8"), ("UTF8", "it_IT.UTF-8")).status == "pass"
    assert p.judge_encoding("db", ("UTF8", "it_IT.UTF-8"), ("UTF8", "C.UTF-8")).status == "warn"
    assert p.judge_encoding("db", ("LATIN9", "it_IT"), ("UTF8", "it_IT")).status == "fail"


GOOD_BUCKET = {"region": "eu-south-1", "encryption": "AES256", "versioning": "Enabled",
               "public_access_block": dict.fromkeys(
                   ["BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"], True)}


@pytest.mark.parametrize("change, check, words", [
    ({"encryption": None}, "bucket encryption", "no default encryption"),
    ({"versioning": "Suspended"}, "bucket versioning", "Suspended"),
    ({"region": "us-east-2"}, "bucket region", "bucket is in us-east-2, the spec declares eu-south-1"),
    ({"region": None}, "bucket region", "us-east-1"),
    ({"public_access_block": {"BlockPublicAcls": True}}, "bucket public access", "IgnorePublicAcls"),
])
def test_bucket(change, check, words):
    assert all(f.status == "pass" for f in p.judge_bucket("b", GOOD_BUCKET, "eu-south-1"))
    found = {f.check: f for f in p.judge_bucket("b", {**GOOD_BUCKET, **change}, "eu-south-1")}
    assert found[check].status == "fail" and words in found[check].reason


def refused(code):
    return {"Error": {"Code": code}}


# What boto3 answers the four settings requests of a well-configured bucket.
GOOD_ANSWERS = {
    "region": {"LocationConstraint": "eu-south-1"},
    "encryption": {"ServerSideEncryptionConfiguration": {
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}},
    "public_access_block": {"PublicAccessBlockConfiguration": GOOD_BUCKET["public_access_block"]},
    "versioning": {"Status": "Enabled"},
}


def test_bucket_settings_process_reads_every_setting():
    assert BucketSettings().process(GOOD_ANSWERS) == {**GOOD_BUCKET, "unreadable": {}}


@pytest.mark.parametrize("setting, answer, value, unreadable", [
    ("encryption", refused("ServerSideEncryptionConfigurationNotFoundError"), None, None),
    ("encryption", refused("AccessDenied"), None, "AccessDenied"),
    ("encryption", refused("NoSuchPublicAccessBlockConfiguration"), None, "NoSuchPublicAccessBlockConfiguration"),
    ("public_access_block", refused("NoSuchPublicAccessBlockConfiguration"), None, None),
    ("public_access_block", refused("NotImplemented"), None, "NotImplemented"),
    ("versioning", {}, None, None),
    ("versioning", {"Status": "Suspended"}, "Suspended", None),
    ("region", {"LocationConstraint": None}, None, None),
    ("region", refused("AccessDenied"), None, "AccessDenied"),
])
def test_bucket_settings_process_tells_absent_from_unreadable(setting, answer, value, unreadable):
    found = BucketSettings().process({**GOOD_ANSWERS, setting: answer})
    assert found[setting] == value
    assert found["unreadable"] == ({setting: unreadable} if unreadable else {})


@pytest.mark.parametrize("setting, answer, check, words", [
    ("encryption", refused("ServerSideEncryptionConfigurationNotFoundError"), "bucket encryption",
     "no default encryption"),
    ("encryption", refused("AccessDenied"), "bucket encryption", "could not read default encryption: AccessDenied"),
    ("encryption", refused("EndpointConnectionError"), "bucket encryption",
     "could not read default encryption: EndpointConnectionError"),
    ("public_access_block", refused("NoSuchPublicAccessBlockConfiguration"), "bucket public access",
     "not blocked: BlockPublicAcls, IgnorePublicAcls, BlockPublicPolicy, RestrictPublicBuckets"),
    ("public_access_block", refused("AccessDenied"), "bucket public access",
     "could not read public access block: AccessDenied"),
    ("versioning", {}, "bucket versioning", "versioning is off"),
    ("versioning", refused("AccessDenied"), "bucket versioning", "could not read versioning: AccessDenied"),
    ("region", {}, "bucket region", "bucket is in us-east-1, the spec declares eu-south-1"),
    ("region", refused("AccessDenied"), "bucket region", "could not read region: AccessDenied"),
])
def test_bucket_answers_judged(setting, answer, check, words):
    assert all(f.status == "pass" for f in p.judge_bucket("b", BucketSettings().process(GOOD_ANSWERS), "eu-south-1"))
    found = p.judge_bucket("b", BucketSettings().process({**GOOD_ANSWERS, setting: answer}), "eu-south-1")
    assert [(f.check, f.status) for f in found if f.status != "pass"] == [(check, "fail")]
    assert words in next(f.reason for f in found if f.check == check)


def test_target_region():
    assert p.judge_target_region("b", "eu-south-1", "eu-south-1") == []
    [f] = p.judge_target_region("b", "eu-west-1", "eu-south-1")
    assert f.status == "fail" and "storage region eu-west-1 differs from the target's eu-south-1" in f.reason


SOURCE_RAW = {"version": 160002, "extensions": [("pg_trgm",)], "encoding": ("UTF8", "it_IT.UTF-8"),
              "unreadable": 0, "may_subscribe": True}
TARGET_RAW = {"version": 160004, "extensions": [("pg_trgm",), ("hstore",)], "encoding": ("UTF8", "it_IT.UTF-8"),
              "may_create_databases": True, "replication": ("logical", 4)}
DB = Database(source={"server": "onprem-pg", "dbname": "presenze"}, target={"server": "cloud-pg", "dbname": "presenze"})


def test_server_facts_process():
    assert SourceServer("onprem-pg", "presenze").process(SOURCE_RAW) == {
        "version": 160002, "extensions": {"pg_trgm"}, "encoding": ("UTF8", "it_IT.UTF-8"), "unreadable": 0,
        "may_subscribe": True}
    assert TargetServer("cloud-pg").process(TARGET_RAW) == {
        "version": 160004, "extensions": {"pg_trgm", "hstore"}, "encoding": ("UTF8", "it_IT.UTF-8"),
        "may_create_databases": True, "wal_level": "logical", "free_slots": 4}


@pytest.mark.parametrize("source, target, way_back, check, status, words", [
    ({}, {}, True, None, "pass", ""),
    ({"version": 170001}, {}, True, "postgres version", "fail", "target major 16 is older than source 17"),
    ({"extensions": [("pg_trgm",), ("postgis",)]}, {}, True, "extensions", "fail", "postgis"),
    ({"encoding": ("LATIN9", "it_IT")}, {}, True, "encoding", "fail", "source LATIN9, target UTF8"),
    ({"unreadable": 2}, {}, True, "privileges", "fail", "2 source relation(s) not readable"),
    ({}, {"may_create_databases": False}, True, "privileges", "fail", "may not create databases"),
    ({}, {"replication": ("replica", 4)}, True, "way back", "fail", "wal_level is replica"),
    ({}, {"replication": ("replica", 4)}, False, None, "pass", ""),
    ({"may_subscribe": False}, {}, True, "way back", "fail", "may not create subscriptions"),
])
def test_database(source, target, way_back, check, status, words):
    found = p.judge_database("presenze", DB, SourceServer("s", "d").process({**SOURCE_RAW, **source}),
                             TargetServer("t").process({**TARGET_RAW, **target}), way_back)
    assert found[0].check == "postgres reachable" and found[0].reason == "onprem-pg and cloud-pg"
    assert ("way back" in {f.check for f in found}) == way_back
    assert [(f.check, f.status) for f in found if f.status != "pass"] == ([(check, status)] if check else [])
    assert all(words in f.reason for f in found if f.check == check)


def test_service_level():
    found = p.judge_service_level("critical", {"hr": "critical", "web": "ordinary", "core": "strategic"})
    assert [f.status for f in found] == ["pass", "pass", "fail"]


@pytest.mark.parametrize("skew, status", [(0.3, "pass"), (-5, "warn"), (45, "fail")])
def test_skew(skew, status):
    assert p.judge_skew("h", skew).status == status


WINDOW = Window(timezone="Europe/Rome", slots=[{"days": ["sat"], "start": "18:00", "end": "24:00"}],
                blackout=[date(2026, 12, 26)])


@pytest.mark.parametrize("local, status, words", [
    (datetime(2026, 12, 19, 20, 0), "pass", "inside 18:00-24:00"),
    (datetime(2026, 12, 19, 17, 59), "fail", "outside"),
    (datetime(2026, 12, 18, 20, 0), "fail", "outside"),
    (datetime(2026, 12, 26, 20, 0), "fail", "2026-12-26 is a blackout date"),
])
def test_window(local, status, words):
    f = p.judge_window("w", WINDOW, local.replace(tzinfo=ZoneInfo("Europe/Rome")))
    assert f.status == status and words in f.reason


def test_window_uses_its_timezone():
    # 19:30 UTC on a Saturday in December is 20:30 in Rome: inside.
    utc = datetime(2026, 12, 19, 19, 30, tzinfo=ZoneInfo("UTC"))
    assert p.judge_window("w", WINDOW, utc).status == "pass"


def test_duration():
    f = p.judge_duration("w", 3600 * 100 * 1024 * 1024, p.Pace(100 * 1024 * 1024, 120.0))
    assert "1:02:00" in f.reason and "plus 120s" in f.reason and "measured" in f.reason
    assumed = p.judge_duration("w", 0, None)
    assert "0:00:00" in assumed.reason and "assumed" in assumed.reason


@pytest.mark.parametrize("wal, slots, may, status, words", [
    ("logical", 3, True, "pass", "publishes logically"),
    ("replica", 3, True, "fail", "wal_level is replica"),
    ("logical", 0, True, "fail", "no free replication slot"),
    ("logical", 3, False, "fail", "may not create subscriptions"),
])
def test_way_back(wal, slots, may, status, words):
    f = p.judge_way_back("presenze", wal, slots, may)
    assert f.status == status and words in f.reason


@pytest.mark.parametrize("current, status, words", [
    ("src.example.", "pass", "points to the source"),
    ("tgt.example.", "warn", "already points to the target"),
    (None, "fail", "points to nothing"),
    ("elsewhere.example.", "fail", "points to elsewhere.example."),
])
def test_dns(current, status, words):
    f = p.judge_dns("hr.example.", current, "src.example.", "tgt.example.")
    assert f.status == status and words in f.reason


def test_rehearsal_required():
    day = 86400.0
    now = 100 * day
    ok = [{"result": "rolled_back", "at": now - 2 * day}]
    assert p.judge_rehearsal("w", ok, 30, now, "staging").status == "pass"
    old = p.judge_rehearsal("w", [{"result": "rolled_back", "at": now - 40 * day}], 30, now, "staging")
    assert old.status == "fail" and "40 days old (limit 30)" in old.reason
    half = p.judge_rehearsal("w", [{"result": "cancelled", "at": now}], 30, now, "staging")
    assert half.status == "fail" and "no rehearsal of w" in half.reason


# --- archive owners (the packed layout's restore) ---------------------------------------------

from migrate.preflight.judge import judge_archive_owners  # noqa: E402

SOURCE_OWNERS = {"user": "svc", "groups": ["svc"], "root": False, "owners": [("personale", "hr")]}


def test_archive_owners_root_gives_any_owner():
    target = {"user": "root", "groups": ["root"], "root": True, "owners": []}
    assert judge_archive_owners("personnel", SOURCE_OWNERS, target, {}).status == "pass"


def test_archive_owners_not_root_fails_naming_the_pair_and_the_spec_field():
    target = {"user": "deploy", "groups": ["deploy"], "root": False, "owners": []}
    found = judge_archive_owners("personnel", SOURCE_OWNERS, target, {})
    assert found.status == "fail" and "personale:hr" in found.reason
    assert "systems.personnel.archive.owners" in found.reason


def test_archive_owners_mapped_to_the_restoring_user_pass():
    target = {"user": "deploy", "groups": ["deploy", "www"], "root": False, "owners": []}
    mapped = judge_archive_owners("personnel", SOURCE_OWNERS, target, {"personale": "deploy", "hr": "www"})
    assert mapped.status == "pass"


def test_dns_on_the_target_is_no_warning_when_it_is_the_resumed_runs_own_switch():
    from migrate.preflight import judge as p
    own = p.judge_dns("hr.example.", "tgt.example.", "src.example.", "tgt.example.", own_switch=True)
    assert own.status == "pass" and "this run's own switch" in own.reason
    assert p.judge_dns("hr.example.", "other.example.", "src.example.", "tgt.example.", own_switch=True).status == "fail"
