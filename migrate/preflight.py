"""Preflight: read-only checks before a wave, each a probe plus a pure judgement.

Every check gathers a fact through an adapter (SSH, PostgreSQL, S3, the clock) and hands it to
a small function that says pass / warn / fail with one line of reason. The judgements are pure,
so unit tests feed them canned facts; the integration suite runs the probes on the real lab.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import paramiko

from migrate.adapters import cloud, db, ssh
from migrate.config import Inventory, Window
from migrate.errors import MigrateError

LEVELS = ("ordinary", "critical", "strategic")
SKEW_WARN_S, SKEW_FAIL_S = 2.0, 30.0
MIN_FREE_BYTES = 256 * 1024 * 1024
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


# ---- judgements (pure) -------------------------------------------------------------------

def judge_host_key(host: str, offered: tuple[str, str, str], known: dict[str, str]) -> Finding:
    """offered: (key type, base64, fingerprint); known: key type -> base64 from known_hosts."""
    kind, b64, fingerprint = offered
    if not known:
        return failed("ssh host key", host, f"unknown host: its {kind} key {fingerprint} is not in known_hosts")
    if known.get(kind) != b64:
        return failed("ssh host key", host, f"host key changed: it now offers {kind} {fingerprint}; refusing")
    return passed("ssh host key", host, f"{kind} {fingerprint} verified")


def judge_df(subject: str, df_output: str, need: int) -> Finding:
    """`df -Pk PATH` output: the fourth column of the last line is free KiB."""
    try:
        free = int(df_output.strip().splitlines()[-1].split()[3]) * 1024
    except (IndexError, ValueError):
        return failed("free disk", subject, "could not read df output")
    text = f"{_size(free)} free, {_size(need)} needed"
    return passed("free disk", subject, text) if free >= need else failed("free disk", subject, text)


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


def judge_bucket(bucket: str, facts: dict, region: str) -> list[Finding]:
    found = []
    enc = facts.get("encryption")
    found.append(passed("bucket encryption", bucket, f"default {enc}") if enc
                 else failed("bucket encryption", bucket, "no default encryption"))
    pab = facts.get("public_access_block") or {}
    flags = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
    off = [f for f in flags if not pab.get(f)]
    found.append(failed("bucket public access", bucket, f"not blocked: {', '.join(off)}") if off
                 else passed("bucket public access", bucket, "blocked"))
    found.append(passed("bucket versioning", bucket, "enabled") if facts.get("versioning") == "Enabled"
                 else failed("bucket versioning", bucket, f"versioning is {facts.get('versioning') or 'off'}"))
    actual = facts.get("region") or "us-east-1"
    found.append(passed("bucket region", bucket, actual) if actual == region
                 else failed("bucket region", bucket, f"bucket is in {actual}, the spec declares {region}"))
    return found


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
    day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[local.weekday()]
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


def judge_dns(name: str, current: str | None, source: str, target: str) -> Finding:
    if current == source:
        return passed("dns", name, f"points to the source {source}")
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


# ---- probes (I/O through adapters) ---------------------------------------------------------

def _guarded(check: str, subject: str, fn) -> list[Finding]:
    try:
        result = fn()
    except MigrateError as exc:
        return [failed(check, subject, str(exc))]
    return result if isinstance(result, list) else [result]


def probe_host_key(inv: Inventory, name: str) -> Finding:
    """A fresh transport, no authentication, no reuse: what key does the host offer now?"""
    h = ssh.host(inv, name)
    from migrate.adapters import guard
    guard.check(inv, h.address, f"host {name}")
    transport = paramiko.Transport((h.address, h.port))
    try:
        transport.start_client(timeout=10)
        key = transport.get_remote_server_key()
    except (paramiko.SSHException, OSError) as exc:
        return failed("ssh host key", name, f"unreachable at {h.address}:{h.port} ({exc})")
    finally:
        transport.close()
    entry = f"[{h.address}]:{h.port}" if h.port != 22 else h.address
    known = paramiko.HostKeys(h.vars.get("known_hosts_file")).lookup(entry) or {}
    return judge_host_key(name, (key.get_name(), key.get_base64(), key.fingerprint),
                          {k: v.get_base64() for k, v in known.items()})


def _remote(inv: Inventory, name: str, command: str) -> tuple[str, float]:
    """Output of a command, and the local time halfway through it (for clock skew)."""
    with ssh.connect(inv, name) as client:
        before = time.time()
        _, out, err = client.exec_command(command, timeout=20)
        text = out.read().decode(errors="replace")
        middle = (before + time.time()) / 2
        if out.channel.recv_exit_status() != 0:
            raise MigrateError(f"host {name}: `{command.split()[0]}` failed: {err.read().decode(errors='replace').strip()[:200]}")
        return text, middle


def probe_host(inv: Inventory, name: str, need: int) -> list[Finding]:
    h = ssh.host(inv, name)
    found = []
    key = probe_host_key(inv, name)
    found.append(key)
    if key.status == "fail":
        return found
    become = "sudo -n true && " if h.vars.get("ansible_become") else ""
    out, middle = _remote(inv, name, f"{become}date +%s.%N && id -u && df -Pk {ssh.host_path(h, '/')}")
    clock, uid, *df = out.strip().splitlines()
    found.append(judge_skew(name, float(clock) - middle))
    found.append(passed("privileges", name, "sudo works" if become else f"uid {uid}")
                 if become or uid == "0" else warned("privileges", name, f"uid {uid} without become"))
    found.append(judge_df(name, "\n".join(df), need))
    return found


def probe_databases(inv: Inventory, wave: str) -> list[Finding]:
    found = []
    for sname in inv.spec.waves[wave].systems:
        back = inv.spec.systems[sname].app is not None
        for name, d in inv.spec.systems[sname].databases.items():
            found += _guarded("postgres", name, lambda d=d, name=name: _database_findings(inv, name, d, back))
    return found


def probe_dns(inv: Inventory, wave: str) -> list[Finding]:
    from migrate.adapters import dns
    found = []
    for sname in inv.spec.waves[wave].systems:
        app = inv.spec.systems[sname].app
        if app and app.dns:
            r = app.dns
            found += _guarded("dns", r.name, lambda r=r: [
                judge_dns(r.name, dns.cname(inv, r.name), dns.fqdn(r.source), dns.fqdn(r.target))])
    return found


def probe_rehearsal(inv: Inventory, wave: str) -> list[Finding]:
    from migrate.engine.journal import Journal
    rule = inv.spec.waves[wave].require_rehearsal
    if rule is None:
        return []
    where = inv.resolve(rule.inventory) / ".state" / "journal.sqlite"
    if not where.is_file():
        return [failed("rehearsal", wave, f"no journal at {where}")]
    journal = Journal(where)
    try:
        records = [{**r.data, "at": r.at} for r in journal.records(wave=wave) if r.kind == "rehearsal"]
    finally:
        journal.close()
    return [judge_rehearsal(wave, records, rule.max_age_days, time.time(), str(where))]


def _database_findings(inv: Inventory, name: str, d, way_back: bool) -> list[Finding]:
    with db.connect(inv, d.source.server, d.source.dbname) as src, \
            db.connect(inv, d.target.server, "postgres") as tgt:
        found = [passed("postgres reachable", name, f"{d.source.server} and {d.target.server}")]
        found.append(judge_versions(name, src.info.server_version, tgt.info.server_version))
        used = {r[0] for r in src.execute("SELECT extname FROM pg_extension WHERE extname <> 'plpgsql'")}
        available = {r[0] for r in tgt.execute("SELECT name FROM pg_available_extensions")}
        found.append(judge_extensions(name, used, available))
        s_enc = src.execute("SELECT pg_encoding_to_char(encoding), datcollate FROM pg_database"
                            " WHERE datname = current_database()").fetchone()
        t_enc = tgt.execute("SELECT pg_encoding_to_char(encoding), datcollate FROM pg_database"
                            " WHERE datname = 'template1'").fetchone()
        found.append(judge_encoding(name, tuple(s_enc), tuple(t_enc)))
        found.append(_privileges(name, src, tgt))
        if way_back:
            wal, free = tgt.execute("SELECT current_setting('wal_level'), current_setting('max_replication_slots')::int"
                                    " - (SELECT count(*) FROM pg_replication_slots)").fetchone()
            may = src.execute("SELECT rolsuper OR pg_has_role(oid, 'pg_create_subscription', 'USAGE')"
                              " FROM pg_roles WHERE rolname = current_user").fetchone()[0] \
                if src.info.server_version >= 160000 else \
                src.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]
            found.append(judge_way_back(name, wal, free, bool(may)))
        return found


def _privileges(name: str, src, tgt) -> Finding:
    unreadable = src.execute(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p', 'S') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        " AND NOT has_table_privilege(c.oid, 'SELECT')").fetchone()[0]
    can_create = tgt.execute("SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user").fetchone()[0]
    if unreadable:
        return failed("privileges", name, f"{unreadable} source relation(s) not readable by the migration role")
    if not can_create:
        return failed("privileges", name, "the target role may not create databases")
    return passed("privileges", name, "source readable, target databases creatable")


def probe_bucket(inv: Inventory) -> list[Finding]:
    st = inv.spec.storage
    s3 = cloud.client(inv)
    cloud.head_bucket(inv, s3)
    return judge_bucket(st.bucket, _bucket_facts(s3, st.bucket), st.region)


def _bucket_facts(s3, bucket: str) -> dict:
    from botocore.exceptions import ClientError

    def ask(call, pick):
        try:
            return pick(call(Bucket=bucket))
        except ClientError:
            return None  # not configured: the judgement says what that means
    return {
        "region": ask(s3.get_bucket_location, lambda r: r.get("LocationConstraint")),
        "encryption": ask(s3.get_bucket_encryption, lambda r: r["ServerSideEncryptionConfiguration"]["Rules"][0]
                          ["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"]),
        "public_access_block": ask(s3.get_public_access_block, lambda r: r["PublicAccessBlockConfiguration"]),
        "versioning": ask(s3.get_bucket_versioning, lambda r: r.get("Status")),
    }


def _need(inv: Inventory, host: str) -> int:
    """Free space a host must keep: its `min_free_mb` inventory variable, else a small floor."""
    mb = inv.hosts[host].vars.get("min_free_mb")
    return int(mb) * 1024 * 1024 if mb is not None else MIN_FREE_BYTES


def wave_hosts(inv: Inventory, wave: str) -> list[str]:
    hosts = set()
    for name in inv.spec.waves[wave].systems:
        s = inv.spec.systems[name]
        if s.app:
            hosts |= {s.app.source_host, s.app.target_host}
        if s.archive:
            hosts.add(s.archive.host)
    entry = inv.spec.entry_point
    if entry and entry.proxy_host and hosts:
        hosts.add(entry.proxy_host)
    return sorted(hosts)


def run_checks(inv: Inventory, wave: str, *, now: datetime | None = None, pace: Pace | None = None,
               total_bytes: int = 0) -> list[Finding]:
    spec = inv.spec
    found = [f for h in wave_hosts(inv, wave) for f in _guarded("ssh", h, lambda h=h: probe_host(inv, h, _need(inv, h)))]
    found += probe_databases(inv, wave)
    found += _guarded("bucket", spec.storage.bucket, lambda: probe_bucket(inv))
    if spec.entry_point and spec.entry_point.dns_zone:
        found += probe_dns(inv, wave)
    found += probe_rehearsal(inv, wave)
    if spec.storage.region != spec.target.region:
        found.append(failed("target region", spec.storage.bucket,
                            f"storage region {spec.storage.region} differs from the target's {spec.target.region}"))
    found += judge_service_level(spec.target.service_level,
                                 {n: spec.systems[n].classification for n in spec.waves[wave].systems})
    found.append(judge_window(wave, spec.waves[wave].window, now or datetime.now().astimezone()))
    found.append(judge_duration(wave, total_bytes, pace))
    return found
