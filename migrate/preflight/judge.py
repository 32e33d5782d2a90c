"""Preflight judgements: pure functions from facts to findings (pass / warn / fail with one
line of reason). Unit tests feed them canned facts."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from migrate.config import Database, Window
from migrate.config.spec import DAYS

LEVELS = ("ordinary", "critical", "strategic")
SKEW_WARN_S, SKEW_FAIL_S = 2.0, 30.0
DEFAULT_THROUGHPUT = 50 * 1024 * 1024  # bytes/s when no earlier run measured one


@dataclass(frozen=True)
class Finding:
    check: str
    subject: str
    status: str  # pass | warn | fail
    reason: str

    def to_json(self) -> dict:
        return asdict(self)


def passed(check, subject, reason="ok"):
    return Finding(check, subject, "pass", reason)


def warned(check, subject, reason):
    return Finding(check, subject, "warn", reason)


def failed(check, subject, reason):
    return Finding(check, subject, "fail", reason)


def judge_host_key(host: str, offered: tuple[str, str, str], known: dict[str, str]) -> Finding:
    """offered: (key type, base64, fingerprint); known: key type -> base64 from known_hosts."""
    kind, b64, fingerprint = offered
    if not known:
        return failed("ssh host key", host, f"unknown host: its {kind} key {fingerprint} is not in known_hosts")
    if known.get(kind) != b64:
        return failed("ssh host key", host, f"host key changed: it now offers {kind} {fingerprint}; refusing")
    return passed("ssh host key", host, f"{kind} {fingerprint} verified")


def judge_df(subject: str, free: int | None, need: int) -> Finding:
    """free: bytes free (None: df's output could not be read)."""
    if free is None:
        return failed("free disk", subject, "could not read df output")
    text = f"{_size(free)} free, {_size(need)} needed"
    return passed("free disk", subject, text) if free >= need else failed("free disk", subject, text)


def judge_host(name: str, state: dict, need: int) -> list[Finding]:
    """state: `facts.host.HostState`."""
    uid, become = state["uid"], state["become"]
    privileges = (passed("privileges", name, "sudo works" if become else f"uid {uid}") if become or uid == "0"
                  else warned("privileges", name, f"uid {uid} without become"))
    return [judge_skew(name, state["skew"]), privileges, judge_df(name, state["free_bytes"], need)]


def judge_versions(subject: str, source: int, target: int) -> Finding:
    if target // 10000 < source // 10000:
        return failed("postgres version", subject, f"target major {target // 10000} is older than source {source // 10000}")
    return passed("postgres version", subject, f"source {source // 10000}, target {target // 10000}")


def judge_extensions(dbname: str, used: set[str], available: set[str]) -> Finding:
    missing = sorted(used - available)
    if missing:
        return failed("extensions", dbname, f"not available on the target: {', '.join(missing)}")
    return passed("extensions", dbname, f"{len(used)} used, all available on the target")


def judge_encoding(dbname: str, source: tuple[str, str], target: tuple[str, str]) -> Finding:
    if source[0] != target[0]:
        return failed("encoding", dbname, f"source {source[0]}, target {target[0]}")
    if source[1] != target[1]:
        return warned("encoding", dbname, f"collation differs (source {source[1]}, target {target[1]}):"
                                          " text ordering and indexes may change")
    return passed("encoding", dbname, f"{source[0]}, collation {source[1]}")


def judge_database(name: str, d: Database, source: dict, target: dict, way_back: bool) -> list[Finding]:
    """source, target: `facts.server.SourceServer` and `TargetServer`."""
    found = [passed("postgres reachable", name, f"{d.source.server} and {d.target.server}"),
             judge_versions(name, source["version"], target["version"]),
             judge_extensions(name, source["extensions"], target["extensions"]),
             judge_encoding(name, source["encoding"], target["encoding"]),
             judge_privileges(name, source["unreadable"], target["may_create_databases"])]
    if way_back:
        found.append(judge_way_back(name, target["wal_level"], target["free_slots"], source["may_subscribe"]))
    return found


def judge_privileges(name: str, unreadable: int, may_create_databases: bool) -> Finding:
    if unreadable:
        return failed("privileges", name, f"{unreadable} source relation(s) not readable by the migration role")
    if not may_create_databases:
        return failed("privileges", name, "the target role may not create databases")
    return passed("privileges", name, "source readable, target databases creatable")


PUBLIC_ACCESS_FLAGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")


def judge_bucket(bucket: str, facts: dict, region: str) -> list[Finding]:
    """facts: `facts.bucket.BucketSettings`. A setting that could not be read fails as such."""
    judges = (("encryption", "bucket encryption", "default encryption", _encryption),
              ("public_access_block", "bucket public access", "public access block", _public_access),
              ("versioning", "bucket versioning", "versioning", _versioning),
              ("region", "bucket region", "region", lambda value: _region(value, region)))
    unreadable = facts.get("unreadable") or {}
    found = []
    for key, check, what, judge in judges:
        if key in unreadable:
            found.append(failed(check, bucket, f"could not read {what}: {unreadable[key]}"))
        else:
            status, reason = judge(facts.get(key))
            found.append(Finding(check, bucket, status, reason))
    return found


def _encryption(algorithm: str | None) -> tuple[str, str]:
    return ("pass", f"default {algorithm}") if algorithm else ("fail", "no default encryption")


def _public_access(block: dict | None) -> tuple[str, str]:
    off = [f for f in PUBLIC_ACCESS_FLAGS if not (block or {}).get(f)]
    return ("fail", f"not blocked: {', '.join(off)}") if off else ("pass", "blocked")


def _versioning(status: str | None) -> tuple[str, str]:
    return ("pass", "enabled") if status == "Enabled" else ("fail", f"versioning is {status or 'off'}")


def _region(actual: str | None, declared: str) -> tuple[str, str]:
    actual = actual or "us-east-1"  # S3 answers no LocationConstraint for us-east-1
    return ("pass", actual) if actual == declared else ("fail", f"bucket is in {actual}, the spec declares {declared}")


def judge_target_region(bucket: str, storage_region: str, target_region: str) -> list[Finding]:
    if storage_region == target_region:
        return []
    return [failed("target region", bucket,
                   f"storage region {storage_region} differs from the target's {target_region}")]


def judge_service_level(level: str, systems: dict[str, str]) -> list[Finding]:
    return [passed("service level", name, f"{cls} system on a {level} service")
            if LEVELS.index(level) >= LEVELS.index(cls)
            else failed("service level", name, f"{cls} system needs a {cls} service; the target is {level}")
            for name, cls in systems.items()]


def judge_skew(subject: str, skew: float) -> Finding:
    text = f"clock differs by {skew:+.1f}s"
    if abs(skew) > SKEW_FAIL_S:
        return failed("clock skew", subject, text)
    return warned("clock skew", subject, text) if abs(skew) > SKEW_WARN_S else passed("clock skew", subject, text)


def judge_window(wave: str, window: Window, now: datetime) -> Finding:
    local = now.astimezone(ZoneInfo(window.timezone))
    if local.date() in window.blackout:
        return failed("maintenance window", wave, f"{local.date()} is a blackout date")
    day = DAYS[local.weekday()]
    hhmm = local.strftime("%H:%M")
    for slot in window.slots:
        if day in slot.days and slot.start <= hhmm < slot.end:
            return passed("maintenance window", wave, f"{day} {hhmm} {window.timezone} is inside {slot.start}-{slot.end}")
    return failed("maintenance window", wave, f"{day} {hhmm} {window.timezone} is outside the wave's window")


@dataclass(frozen=True)
class Pace:
    """From the last completed run: bytes/s of the data steps, seconds of the rest."""

    throughput: float
    fixed_seconds: float


def judge_duration(wave: str, total_bytes: int, pace: Pace | None) -> Finding:
    measured = pace is not None
    pace = pace or Pace(DEFAULT_THROUGHPUT, 0.0)
    seconds = total_bytes / pace.throughput + pace.fixed_seconds
    basis = "measured by the last run" if measured else "assumed; no earlier run measured it"
    return passed("estimated duration", wave, f"about {timedelta(seconds=round(seconds))}: {_size(total_bytes)}"
                                              f" at {_size(pace.throughput)}/s plus {pace.fixed_seconds:.0f}s"
                                              f" of other steps ({basis})")


def judge_way_back(name: str, wal_level: str, free_slots: int, may_subscribe: bool) -> Finding:
    """The target publishes its writes back to the source after cutover (logical replication)."""
    if wal_level != "logical":
        return failed("way back", name, f"target wal_level is {wal_level}; the way back after cutover needs logical")
    if free_slots < 1:
        return failed("way back", name, "the target has no free replication slot")
    if not may_subscribe:
        return failed("way back", name, "the migration role may not create subscriptions on the source")
    return passed("way back", name, "target publishes logically, source may subscribe")


def judge_dns(name: str, current: str | None, source: str, target: str, own_switch: bool = False) -> Finding:
    """own_switch: the run being resumed has begun its switch, so the target is its own doing."""
    if current == source:
        return passed("dns", name, f"points to the source {source}")
    if current == target and own_switch:
        return passed("dns", name, f"points to the target {target}: this run's own switch")
    if current == target:
        return warned("dns", name, f"already points to the target {target}")
    return failed("dns", name, f"points to {current or 'nothing'}, not the declared source {source}")


def judge_rehearsal(wave: str, rehearsals: list[dict], max_age_days: int, now: float, where: str) -> Finding:
    """rehearsals: the rehearsal records of `wave` (data + `at`) in the journal the spec names."""
    good = [r for r in rehearsals if r.get("result") == "rolled_back"]
    if not good:
        return failed("rehearsal", wave, f"no rehearsal of {wave} (run + rollback) is recorded in {where}")
    age = (now - max(r["at"] for r in good)) / 86400
    if age > max_age_days:
        return failed("rehearsal", wave, f"the last rehearsal in {where} is {age:.0f} days old (limit {max_age_days})")
    return passed("rehearsal", wave, f"rehearsed {age:.1f} days ago in {where}")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def judge_slots(server: str, slots: list[dict], owned: set[str]) -> list[Finding]:
    """Replication slots of ours that no live wave owns: each keeps WAL on its server until
    dropped, and a full disk stops the database."""
    stray = [s for s in slots if s["slot"] not in owned]
    if not stray:
        return [passed("replication slots", server, "no slot of ours without a live wave")]
    return [failed("replication slots", f"{server}/{s['slot']}",
                   f"slot {s['slot']} (database {s['database']}, {'in use' if s['active'] else 'idle'}) belongs to"
                   f" no live wave and keeps {s['retained_wal_bytes'] or 0} bytes of WAL on {server}; roll back"
                   f" the wave that made it, or drop it: SELECT pg_drop_replication_slot('{s['slot']}')")
            for s in stray]


def judge_archive_owners(system: str, source: dict, target: dict, owners: dict[str, str]) -> Finding:
    """The target host's restoring user can give every document its (mapped) owner and group:
    root can give any; anyone else only itself and its own groups."""
    check, subject = "archive owners", system
    mapped = sorted({(owners.get(u, u), owners.get(g, g)) for u, g in source["owners"]})
    if target["root"]:
        return passed(check, subject, f"restored as root: {len(mapped)} owner:group pair(s) given as mapped")
    impossible = [f"{u}:{g}" for u, g in mapped if u != target["user"] or g not in target["groups"]]
    if impossible:
        return failed(check, subject, f"the target host's user {target['user']} (not root) cannot give owner"
                                      f" {impossible[0]} ({len(impossible)} pair(s)); map them in"
                                      f" systems.{system}.archive.owners or restore as root")
    return passed(check, subject, f"every document restored as {target['user']}")
