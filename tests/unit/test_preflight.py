"""Preflight judgements on canned facts: no lab needed."""

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from migrate import preflight as p
from migrate.config import Window

DF = """Filesystem     1024-blocks      Used Available Capacity Mounted on
/dev/vda         263174212  23000000 75000000      24% /
"""


def test_df_pass_and_fail():
    assert p.judge_df("h", DF, 10 * 1024**3).status == "pass"
    bad = p.judge_df("h", DF, 100 * 1024**3)
    assert bad.status == "fail" and "71.5 GiB free, 100.0 GiB needed" in bad.reason
    assert p.judge_df("h", "garbage", 1).status == "fail"


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
