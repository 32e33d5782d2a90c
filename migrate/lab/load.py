"""Load on the lab's front door, and the check after it that no acknowledged write was lost.

`Load` posts writes through the front door as the users' clients do, evenly paced at `rate`
per second: web punches (`POST /presenze/punches`) and, every `edit_every`-th write, an HR
edit (`POST /personale/notes`, which sets an employee's notes). Each write the front door
answered with a 2xx is appended, as one JSON line, to `<lab>/load/acked.jsonl` before it is
counted; a write that failed (non-2xx, refused, timed out) is only counted, by reason.

`check(lab_dir, side)` reads that file and looks for each acknowledged write in the databases
of `side`: "source", "target" or "live" (per service: the database of the application the
front door's upstreams file sends that service to). A punch must be there exactly once (its
punch_id, with its employee and direction, and no second row with the same employee,
instant, direction and origin); an edit must be there or superseded by a later edit of this
load (an edit overwrites: its notes carry a version that only grows).

Nothing here prints or logs a row's values; the acked file (lab-internal) holds ids, the
direction and the edit's token only.
"""

from __future__ import annotations

import configparser
import http.client
import itertools
import json
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from migrate.lab.errors import LabError
from migrate.lab.layout import APP_SERVICES, HOST, LabPaths, LabPorts, dsn, lab_paths, web_ports
from migrate.lab.state import ports_of, read_state

EDIT_EVERY = 5
TIMEOUT = 15.0  # above the front door's own 10 s upstream timeout: it answers first
MAX_WORKERS = 64
TOKEN = "lab-load "
SIDES = ("source", "target", "live")
DIRECTIONS = ("IN", "OUT")
SHOWN_KEYS = 5

ACTIVE_STAFF = "SELECT employee_id FROM staff WHERE active ORDER BY employee_id"
PUNCH_ROWS = """
    SELECT p.punch_id, p.employee_id, p.direction, p.origin,
           (SELECT count(*) FROM punch q
            WHERE q.employee_id = p.employee_id AND q.punched_at = p.punched_at
              AND q.direction = p.direction AND q.origin = p.origin) AS copies
    FROM punch p WHERE p.punch_id = ANY(%s::bigint[])"""
EDIT_ROWS = "SELECT employee_id, notes FROM employee WHERE employee_id = ANY(%s::int[])"


# --- pure parts: pacing, what to write, what to record, how to judge ----------------------------

@dataclass(frozen=True)
class Pace:
    """Slot i is due i/rate seconds after the start; `seconds` None: until stopped."""

    rate: float
    seconds: float | None = None

    def __post_init__(self) -> None:
        if not self.rate > 0 or (self.seconds is not None and not self.seconds > 0):
            raise LabError("load: --rate and --seconds must be positive")

    @property
    def slots(self) -> int | None:
        return None if self.seconds is None else max(1, round(self.rate * self.seconds))

    def due(self, slot: int) -> float:
        return slot / self.rate

    def each(self):
        return itertools.count() if self.slots is None else range(self.slots)


@dataclass(frozen=True)
class Write:
    kind: str  # "punch" or "edit"
    service: str
    action: str
    body: dict
    slot: int

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.action}"


def run_stamp(now: datetime | None = None) -> str:
    """A fixed-width UTC stamp: versions of edits compare as strings."""
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S.%fZ")


def edit_token(run: str, slot: int) -> str:
    return f"{TOKEN}{run}.{slot:09d}"


def token_version(notes: str | None) -> str | None:
    return notes[len(TOKEN):] if isinstance(notes, str) and notes.startswith(TOKEN) else None


def plan_write(slot: int, employees: list[int], *, run: str, edit_every: int,
               edit_free: bool = True) -> Write:
    """Slot `slot`'s write: every edit_every-th an edit (if no other edit is in flight, so
    that edits of one employee commit in the order they were sent), else a punch."""
    count = len(employees)
    if edit_every and slot % edit_every == edit_every - 1 and edit_free:
        employee = employees[(slot // edit_every) % count]
        return Write("edit", "personale", "notes",
                     {"employee_id": employee, "notes": edit_token(run, slot)}, slot)
    direction = DIRECTIONS[(slot // count) % 2]
    return Write("punch", "presenze", "punches",
                 {"employee_id": employees[slot % count], "direction": direction}, slot)


def ack_record(write: Write, answer: dict, *, upstream: str, run: str, at: str) -> dict | None:
    """The acked file's line for a 2xx answer; None if the answer does not say what it did."""
    employee = write.body["employee_id"]
    if write.kind == "punch":
        punch_id = answer.get("punch_id")
        if not isinstance(punch_id, int) or isinstance(punch_id, bool):
            return None
        key, values = {"punch_id": punch_id}, dict(write.body)
    else:
        if answer.get("employee_id") != employee:
            return None
        key, values = {"employee_id": employee}, {"notes": write.body["notes"]}
    return {"kind": write.kind, "service": write.service, "key": key, "values": values,
            "upstream": upstream, "run": run, "slot": write.slot, "at": at}


def key_text(record: dict) -> str:
    return ",".join(f"{name}={value}" for name, value in sorted(record["key"].items()))


@dataclass
class Judgement:
    found: int = 0
    superseded: int = 0
    missing: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)


def judge_punches(acked: list[dict], rows: list[tuple]) -> Judgement:
    """rows: (punch_id, employee_id, direction, origin, copies) of the acked punch ids."""
    by_id: dict[int, list[tuple]] = {}
    for row in rows:
        by_id.setdefault(row[0], []).append(row)
    verdict = Judgement()
    for record in acked:
        values, key = record["values"], key_text(record)
        same = [r for r in by_id.get(record["key"]["punch_id"], [])
                if (r[1], r[2], r[3]) == (values["employee_id"], values["direction"], "WEB")]
        if not same:
            verdict.missing.append(key)
        elif len(same) > 1 or same[0][4] > 1:
            verdict.duplicated.append(key)
        else:
            verdict.found += 1
    return verdict


def judge_edits(latest: dict[int, dict], rows: list[tuple]) -> Judgement:
    """latest: employee_id -> the newest acked edit; rows: (employee_id, notes)."""
    by_id: dict[int, list] = {}
    for employee, notes in rows:
        by_id.setdefault(employee, []).append(token_version(notes))
    verdict = Judgement()
    for employee, record in latest.items():
        acked = token_version(record["values"]["notes"])
        versions = by_id.get(employee, [])
        if len(versions) > 1:
            verdict.duplicated.append(key_text(record))
        elif not versions or versions[0] is None or versions[0] < acked:
            verdict.missing.append(key_text(record))
        else:
            verdict.found += 1
            verdict.superseded += versions[0] > acked
    return verdict


def latest_edits(edits: list[dict]) -> dict[int, dict]:
    latest: dict[int, dict] = {}
    for record in edits:
        employee = record["key"]["employee_id"]
        if employee not in latest or (token_version(record["values"]["notes"])
                                      > token_version(latest[employee]["values"]["notes"])):
            latest[employee] = record
    return latest


def unique_punches(punches: list[dict]) -> list[dict]:
    """The acked punches; one id acked twice means the file spans a reset of the lab."""
    seen = Counter(record["key"]["punch_id"] for record in punches)
    twice = [punch_id for punch_id, n in seen.items() if n > 1]
    if twice:
        raise LabError(f"load: {len(twice)} punch ids acknowledged more than once (e.g. "
                       f"{twice[0]}): the acked file spans a lab reset; start a new one "
                       f"with --fresh")
    return punches


@dataclass
class CheckResult:
    sides: dict[str, str]  # service -> "source" or "target"
    acked: dict[str, int]  # kind -> acknowledged writes
    edited: int            # employees edited: the newest acked edit of each is checked
    found: dict[str, int]  # punches found exactly once, employees holding their edit
    superseded: int        # of those, employees holding a newer edit of the load
    missing: list[str]
    duplicated: list[str]

    @property
    def ok(self) -> bool:
        return not self.missing and not self.duplicated

    def summary(self) -> str:
        where = ", ".join(f"{service} on {side}" for service, side in sorted(self.sides.items()))
        return (f"load check ({where}): acknowledged {self.acked.get('punch', 0)} punches, "
                f"{self.acked.get('edit', 0)} edits of {self.edited} employees; found "
                f"{self.found.get('punch', 0)} punches exactly once, the latest edit of "
                f"{self.found.get('edit', 0)} employees ({self.superseded} superseded by a "
                f"later one); missing {len(self.missing)}, duplicated {len(self.duplicated)}")

    def problem(self) -> str:
        keys = (self.missing + self.duplicated)[:SHOWN_KEYS]
        return (f"load check: {len(self.missing)} acknowledged writes missing and "
                f"{len(self.duplicated)} duplicated; first: {'; '.join(keys)}")

    def to_json(self) -> dict:
        return {"ok": self.ok, "sides": self.sides, "acked": self.acked, "edited": self.edited,
                "found": self.found, "superseded": self.superseded, "missing": self.missing,
                "duplicated": self.duplicated}


# --- the acked file ------------------------------------------------------------------------------

def acked_file(paths: LabPaths) -> Path:
    return paths.root / "load" / "acked.jsonl"


class AckLog:
    """Append-only: one JSON line per acknowledged write, flushed before it is counted."""

    def __init__(self, path: Path, *, fresh: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if fresh and path.exists():  # kept beside the new one, never overwritten
            path.rename(path.with_name(f"acked-{run_stamp()}.jsonl"))
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (open until close())
        self._lock = threading.Lock()

    def append(self, record: dict) -> None:
        line = json.dumps(record, sort_keys=True) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


def read_acked(path: Path) -> list[dict]:
    """Every record; a torn last line (a crash while writing it) was never acknowledged."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise LabError(f"load: no acknowledged writes recorded at {path} "
                       f"(run `migrate lab load --rate N` first)") from None
    records = []
    for number, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except ValueError:
            if number < len(lines):
                raise LabError(f"load: {path} line {number} is not JSON") from None
            continue
        if not is_record(records[-1]):
            raise LabError(f"load: {path} line {number} is not an acknowledged write")
    return records


def is_record(record) -> bool:
    shapes = {"punch": ({"punch_id"}, {"employee_id", "direction"}),
              "edit": ({"employee_id"}, {"notes"})}
    if not isinstance(record, dict) or record.get("kind") not in shapes:
        return False
    key, values = shapes[record["kind"]]
    return (isinstance(record.get("key"), dict) and set(record["key"]) == key
            and isinstance(record.get("values"), dict) and set(record["values"]) >= values)


# --- where the writes go and where they land -------------------------------------------------

def lab_ports(paths: LabPaths) -> LabPorts:
    state = read_state(paths)
    if state is None:
        raise LabError(f"no lab at {paths.root} (run `up` first)")
    return ports_of(state)


def read_ini(path: Path, section: str) -> dict[str, str]:
    config = configparser.ConfigParser(interpolation=None)
    config.optionxform = str
    try:
        config.read(path)
        return dict(config[section]) if config.has_section(section) else {}
    except (OSError, configparser.Error):
        return {}


def live_side(paths: LabPaths, ports: LabPorts, service: str) -> tuple[str, str]:
    """(side, database) of `service` as users reach it now: front door -> app -> its dsn."""
    upstream = read_ini(paths.host_root("front") / "etc/front/upstreams.conf",
                        "upstreams").get(service, "")
    apps = {port: host for host, port in web_ports(ports).items() if host != "front"}
    host = apps.get(_port_of(upstream))
    if host is None:
        raise LabError(f"load: the front door sends {service} to {upstream or 'nothing'}, "
                       f"not to an application host of this lab")
    conninfo = _app_database(paths, host, service)
    clusters = {str(ports.pg_source): "source", str(ports.pg_target): "target"}
    side = clusters.get(conninfo.get("port", ""))
    if side is None or conninfo.get("host") not in (HOST, None):
        raise LabError(f"load: {service} on {host} uses a database outside this lab")
    return side, conninfo.get("dbname", service)


def _app_database(paths: LabPaths, host: str, service: str) -> dict:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    config = read_ini(paths.host_root(host) / "etc/hr" / f"{service}.conf", "database")
    try:
        return conninfo_to_dict(config["dsn"])
    except (KeyError, psycopg.ProgrammingError):
        raise LabError(f"load: {service} on {host} has no usable database config") from None


def _port_of(url: str) -> int | None:
    try:
        return urlsplit(url).port
    except ValueError:
        return None


def resolve(paths: LabPaths, ports: LabPorts, side: str, service: str) -> tuple[str, str]:
    if side not in SIDES:
        raise LabError(f"load: side must be one of {', '.join(SIDES)}, not {side!r}")
    return live_side(paths, ports, service) if side == "live" else (side, service)


def query(paths: LabPaths, ports: LabPorts, where: tuple[str, str], sql: str,
          params: tuple = ()) -> list[tuple]:
    import psycopg

    side, dbname = where
    port = ports.pg_source if side == "source" else ports.pg_target
    try:
        with psycopg.connect(dsn(paths, port, dbname), connect_timeout=5) as conn:
            return conn.execute(sql, params).fetchall()
    except psycopg.Error as exc:
        raise LabError(f"load: cannot read {dbname} on the {side} cluster "
                       f"({type(exc).__name__})") from None


# --- the check ---------------------------------------------------------------------------------

def check(lab_dir: Path | str, side: str = "live") -> CheckResult:
    """Each acknowledged write in the databases of `side`, exactly once."""
    paths = lab_paths(lab_dir)
    ports = lab_ports(paths)
    records = read_acked(acked_file(paths))
    punches = unique_punches([r for r in records if r["kind"] == "punch"])
    edits = [r for r in records if r["kind"] == "edit"]
    latest = latest_edits(edits)
    sides = {service: resolve(paths, ports, side, service) for service in APP_SERVICES}
    punch = _check_punches(paths, ports, sides["presenze"], punches)
    edit = _check_edits(paths, ports, sides["personale"], latest)
    return CheckResult(
        sides={service: where[0] for service, where in sides.items()},
        acked={"punch": len(punches), "edit": len(edits)},
        edited=len(latest), found={"punch": punch.found, "edit": edit.found},
        superseded=edit.superseded, missing=punch.missing + edit.missing,
        duplicated=punch.duplicated + edit.duplicated)


def _check_punches(paths, ports, where, punches: list[dict]) -> Judgement:
    if not punches:
        return Judgement()
    ids = [record["key"]["punch_id"] for record in punches]
    return judge_punches(punches, query(paths, ports, where, PUNCH_ROWS, (ids,)))


def _check_edits(paths, ports, where, latest: dict[int, dict]) -> Judgement:
    if not latest:
        return Judgement()
    return judge_edits(latest, query(paths, ports, where, EDIT_ROWS, (list(latest),)))


# --- the load ----------------------------------------------------------------------------------

def post(port: int, path: str, body: dict, timeout: float) -> tuple[int, dict, str]:
    """(status, JSON body, X-Upstream) of one POST; OSError if it got no answer."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("POST", path, body=json.dumps(body).encode(),
                     headers={"Content-Type": "application/json"})
        reply = conn.getresponse()
        data = reply.read()
    except http.client.HTTPException as exc:
        raise ConnectionError(type(exc).__name__) from None
    finally:
        conn.close()
    try:
        answer = json.loads(data or b"{}")
    except ValueError:
        answer = {}
    return reply.status, answer if isinstance(answer, dict) else {}, reply.getheader(
        "X-Upstream", "")


def failure_reason(exc: OSError) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timeout"  # the outcome is unknown: not acknowledged, so not checked
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    return "connection"


class Load:
    """Writes through the lab's front door at an even pace, in a background thread.

    `start(rate, seconds=None)`, then `stop()` (or `wait()` when `seconds` is given);
    `.acked`, `.failed`, `.skipped` (slots with every worker busy), `.counts` (acked per
    kind), `.failures` (per reason: HTTP status, refused, timeout, connection);
    `check(side)` -> CheckResult.
    """

    def __init__(self, lab_dir: Path | str, *, edit_every: int = EDIT_EVERY,
                 fresh: bool = False, timeout: float = TIMEOUT) -> None:
        self.paths = lab_paths(lab_dir)
        self.ports = lab_ports(self.paths)
        self.acked_file = acked_file(self.paths)
        self.edit_every, self.fresh, self.timeout = edit_every, fresh, timeout
        self.counts: Counter = Counter()
        self.failures: Counter = Counter()
        self.skipped = 0
        self.seconds = 0.0
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._edit_in_flight = False

    @property
    def acked(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    @property
    def failed(self) -> int:
        with self._lock:
            return sum(self.failures.values())

    def start(self, rate: float, seconds: float | None = None) -> None:
        if self._thread is not None:
            raise LabError("load: this Load was started already")
        pace = Pace(rate, seconds)
        employees = self._employees()
        log = AckLog(self.acked_file, fresh=self.fresh)
        self._thread = threading.Thread(target=self._drive, args=(pace, employees, log),
                                        name="lab-load", daemon=True)
        self._thread.start()

    def stop_soon(self) -> None:
        """Schedule nothing more (safe from a signal handler); in-flight writes finish."""
        self._stopping.set()

    def stop(self) -> None:
        self.stop_soon()
        self.wait()

    def wait(self) -> None:
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.2)  # short joins: the main thread still handles signals
        if self.error is not None:
            raise LabError(f"load stopped: {type(self.error).__name__}: {self.error}")

    def check(self, side: str = "live") -> CheckResult:
        return check(self.paths.root, side)

    def summary(self) -> dict:
        """Counts only (never a row's values), safe to call while the load runs."""
        with self._lock:
            counts, failures, skipped = dict(self.counts), dict(self.failures), self.skipped
        return {"acked": sum(counts.values()), "acked_by_kind": counts,
                "failed": sum(failures.values()), "failures": failures, "skipped": skipped,
                "seconds": round(self.seconds, 2), "acked_file": str(self.acked_file)}

    def _employees(self) -> list[int]:
        where = live_side(self.paths, self.ports, "presenze")
        employees = [row[0] for row in query(self.paths, self.ports, where, ACTIVE_STAFF)]
        if not employees:
            raise LabError("load: the live attendance database has no active staff")
        return employees

    def _drive(self, pace: Pace, employees: list[int], log: AckLog) -> None:
        run, began = run_stamp(), time.monotonic()
        workers = min(MAX_WORKERS, max(8, int(2 * pace.rate)))
        free = threading.BoundedSemaphore(workers)
        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lab-load") as pool:
                for slot in pace.each():
                    delay = began + pace.due(slot) - time.monotonic()
                    if self._stopping.wait(max(0.0, delay)):
                        break
                    self._dispatch(pool, free, self._next(slot, employees, run), log, run)
        except BaseException as exc:  # noqa: BLE001 (reported by wait(), never silent)
            self.error = exc
        finally:
            log.close()
            self.seconds = time.monotonic() - began

    def _next(self, slot: int, employees: list[int], run: str) -> Write:
        with self._lock:
            write = plan_write(slot, employees, run=run, edit_every=self.edit_every,
                               edit_free=not self._edit_in_flight)
            self._edit_in_flight |= write.kind == "edit"
        return write

    def _dispatch(self, pool, free, write: Write, log: AckLog, run: str) -> None:
        if not free.acquire(blocking=False):
            with self._lock:
                self.skipped += 1
                self._edit_in_flight &= write.kind != "edit"
            return
        pool.submit(self._send, free, write, log, run)

    def _send(self, free, write: Write, log: AckLog, run: str) -> None:
        try:
            self._outcome(write, log, run)
        except Exception as exc:  # noqa: BLE001 (a bug or a full disk: counted, never silent)
            self._failed(f"internal {type(exc).__name__}")
        finally:
            with self._lock:
                self._edit_in_flight &= write.kind != "edit"
            free.release()

    def _outcome(self, write: Write, log: AckLog, run: str) -> None:
        try:
            status, answer, upstream = post(self.ports.http_front, write.path, write.body,
                                            self.timeout)
        except OSError as exc:
            return self._failed(failure_reason(exc))
        if not 200 <= status < 300:
            return self._failed(str(status))
        at = datetime.now(UTC).isoformat()
        record = ack_record(write, answer, upstream=upstream, run=run, at=at)
        if record is None:
            return self._failed(f"{status} without its key")
        log.append(record)
        with self._lock:
            self.counts[write.kind] += 1

    def _failed(self, reason: str) -> None:
        with self._lock:
            self.failures[reason] += 1
