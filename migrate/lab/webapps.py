"""The lab's web stand-ins: the HR applications of src-app and tgt-app, and the front door.

One process (started, recorded and stopped by PID by `migrate.lab.supervisor`) with three
listeners on 127.0.0.1:

- an application stand-in per application host (src-app, tgt-app). It knows nothing of its
  own: on every request it looks at the host's tree, as a real service would after a restart.
  A service S (personale, presenze) is "running" iff `etc/hr/S.conf` and `run/hr/S.running`
  exist, "in maintenance" iff `var/lib/hr/S.maintenance` exists, and it talks to the database
  named by `[database] dsn` in its config (read fresh each time, so a re-rendered config takes
  effect at once). presenze takes web punches and drains the collector's buffer; personale
  takes one HR edit, `POST /personale/notes {"employee_id", "notes"}` (200 once committed);
- the front door, which forwards `/S/...` to the upstream named for S in the front host's
  `etc/front/upstreams.conf` (read fresh each time): switching that file is the cutover of
  the users' entry point.

Answers never echo a DSN or a database error message: they may hold names and addresses that
do not belong in a client's hands or in logs.
"""

from __future__ import annotations

import argparse
import configparser
import http.client
import ipaddress
import json
import signal
import sys
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

HOST = "127.0.0.1"
SERVICES = ("personale", "presenze")
MAX_BODY = 64 * 1024
UPSTREAM_TIMEOUT = 10
DB_TIMEOUT = 2
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
DIRECTIONS = ("IN", "OUT")
MAX_NOTES = 500
# The service each action belongs to (health belongs to every service).
ENDPOINT_SERVICE = {"punches": "presenze", "drain": "presenze", "notes": "personale"}

# An HR edit of a non-key field; the table's trigger sets updated_at.
UPDATE_NOTES = """
    UPDATE employee SET notes = %s WHERE employee_id = %s RETURNING updated_at"""

INSERT_WEB_PUNCH = """
    INSERT INTO punch (employee_id, badge_id, terminal_id, punched_at, direction, origin,
                       recorded_at)
    VALUES (%s, NULL, NULL, now(), %s, 'WEB', now())
    RETURNING punch_id"""

# A spooled punch already in the table (a drain that committed but crashed before deleting
# its files) is not loaded twice: the buffer is legal evidence and must land exactly once.
INSERT_SPOOLED_PUNCH = """
    INSERT INTO punch (employee_id, badge_id, terminal_id, punched_at, direction, origin,
                       recorded_at)
    SELECT %(employee_id)s, %(badge_id)s, %(terminal_id)s, %(punched_at)s, %(direction)s,
           'TERM', now()
    WHERE NOT EXISTS (
        SELECT 1 FROM punch
        WHERE employee_id = %(employee_id)s AND punched_at = %(punched_at)s
          AND direction = %(direction)s AND origin = 'TERM'
          AND badge_id IS NOT DISTINCT FROM %(badge_id)s
          AND terminal_id IS NOT DISTINCT FROM %(terminal_id)s)"""


class BadInput(ValueError):
    """A request or spool file that does not hold what it must."""


# --- one application host ------------------------------------------------------------------

class AppHost:
    """What the application host `name` shows through its tree under `root`."""

    def __init__(self, name: str, root: Path, passfile: Path) -> None:
        self.name = name
        self.root = root
        self.passfile = passfile
        # One drain at a time per host: two concurrent drains would read the same files.
        self.drain_lock = threading.Lock()

    def config_file(self, service: str) -> Path:
        return self.root / "etc/hr" / f"{service}.conf"

    def spool_dir(self) -> Path:
        return self.root / "var/spool/hr/presenze"

    def state(self, service: str) -> str:
        """"running", "stopped" or "maintenance", from the files a playbook manages."""
        running = (self.config_file(service).is_file()
                   and (self.root / "run/hr" / f"{service}.running").exists())
        if not running:
            return "stopped"
        if (self.root / "var/lib/hr" / f"{service}.maintenance").exists():
            return "maintenance"
        return "running"

    def conninfo(self, service: str) -> str | None:
        """The service's database from its config, with the lab passfile; None if unusable."""
        import psycopg
        from psycopg.conninfo import make_conninfo

        config = configparser.ConfigParser(interpolation=None)
        try:
            config.read(self.config_file(service))
            dsn = config.get("database", "dsn")
            return make_conninfo(dsn, passfile=str(self.passfile), connect_timeout=DB_TIMEOUT)
        except (OSError, ValueError, configparser.Error, psycopg.Error):  # psycopg: bad dsn
            return None


def connect(conninfo: str):
    import psycopg

    return psycopg.connect(conninfo)


# --- the application stand-in ----------------------------------------------------------------

class Reply(Exception):
    """An answer decided somewhere down the call chain."""

    def __init__(self, status: int, body: dict) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


class JsonHandler(BaseHTTPRequestHandler):
    server_version = "migrate-lab"
    role = "web"

    def send_json(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        if not length.isdigit() or int(length) > MAX_BODY:
            raise Reply(413, {"error": "body too large"})
        return self.rfile.read(int(length))

    def log_message(self, format: str, *args) -> None:
        # Request lines and status codes only: bodies (punches) never reach the log.
        sys.stderr.write(f"{self.role} {self.address_string()} {format % args}\n")


class AppHandler(JsonHandler):
    app: AppHost  # set on the subclass made per host

    def do_GET(self) -> None:
        self.dispatch()

    def do_POST(self) -> None:
        self.dispatch()

    def dispatch(self) -> None:
        try:
            status, body = self.route()
        except Reply as reply:
            status, body = reply.status, reply.body
        self.send_json(status, body)

    def route(self) -> tuple[int, dict]:
        path = urlsplit(self.path).path.rstrip("/")
        parts = path.split("/")
        if len(parts) != 3 or parts[1] not in SERVICES:
            return 404, {"error": "not found"}
        service, action = parts[1], parts[2]
        endpoints = {("GET", "health"): self.health,
                     ("POST", "punches"): self.punch,
                     ("POST", "drain"): self.drain,
                     ("POST", "notes"): self.notes}
        if ENDPOINT_SERVICE.get(action, service) != service:
            return 404, {"error": "not found"}
        handler = endpoints.get((self.command, action))
        if handler is None:
            return 404, {"error": "not found"}
        return handler(service)

    def unavailable(self, service: str, status: str) -> tuple[int, dict]:
        return 503, {"service": service, "host": self.app.name, "status": status}

    def require(self, service: str, *, maintenance_ok: bool = False) -> str:
        """The service's conninfo, or a 503 if it may not serve this request."""
        state = self.app.state(service)
        if state == "stopped" or (state == "maintenance" and not maintenance_ok):
            raise Reply(*self.unavailable(service, state))
        conninfo = self.app.conninfo(service)
        if conninfo is None:
            raise Reply(*self.unavailable(service, "database unreachable"))
        return conninfo

    def health(self, service: str) -> tuple[int, dict]:
        import psycopg

        conninfo = self.require(service)
        try:
            with connect(conninfo) as conn:
                database, address, port = conn.execute(
                    "SELECT current_database(), coalesce(host(inet_server_addr()), %s), "
                    "current_setting('port')", (HOST,)).fetchone()
        except psycopg.Error:
            return self.unavailable(service, "database unreachable")
        return 200, {"service": service, "host": self.app.name, "status": "ok",
                     "database": database, "server": f"{address}:{port}"}

    def punch(self, service: str) -> tuple[int, dict]:
        import psycopg

        employee_id, direction = parse_web_punch(self.read_body())
        conninfo = self.require(service)
        try:
            with connect(conninfo) as conn:
                (punch_id,) = conn.execute(INSERT_WEB_PUNCH, (employee_id, direction)).fetchone()
        except (psycopg.errors.ForeignKeyViolation, psycopg.errors.CheckViolation):
            return 400, {"error": "unknown employee or invalid punch"}
        except psycopg.OperationalError:
            return self.unavailable(service, "database unreachable")
        except psycopg.Error:
            return 500, {"error": "database error"}
        return 201, {"punch_id": punch_id}

    def drain(self, service: str) -> tuple[int, dict]:
        import psycopg

        # Allowed in maintenance: the freeze drains the collector's buffer into the database.
        conninfo = self.require(service, maintenance_ok=True)
        with self.app.drain_lock:
            files = sorted(self.app.spool_dir().glob("*.json"))
            punches = [read_spooled(path) for path in files]
            try:
                # One transaction: all of the buffer or none of it.
                with connect(conninfo) as conn:
                    loaded = sum(conn.execute(INSERT_SPOOLED_PUNCH, p).rowcount for p in punches)
            except psycopg.OperationalError:
                return self.unavailable(service, "database unreachable")
            except psycopg.Error:
                return 500, {"error": "database error"}
            for path in files:  # exactly the files just loaded, not any that arrived since
                path.unlink(missing_ok=True)
        return 200, {"drained": loaded}

    def notes(self, service: str) -> tuple[int, dict]:
        """An HR edit: set the notes of one employee; 200 only once it is committed."""
        import psycopg

        employee_id, notes = parse_notes_edit(self.read_body())
        conninfo = self.require(service)
        try:
            with connect(conninfo) as conn:
                row = conn.execute(UPDATE_NOTES, (notes, employee_id)).fetchone()
        except psycopg.OperationalError:
            return self.unavailable(service, "database unreachable")
        except psycopg.Error:
            return 500, {"error": "database error"}
        if row is None:
            return 404, {"error": "unknown employee"}
        return 200, {"employee_id": employee_id, "updated_at": row[0].isoformat()}


def json_object(body: bytes) -> dict:
    try:
        data = json.loads(body)
    except ValueError:
        raise Reply(400, {"error": "body must be JSON"}) from None
    if not isinstance(data, dict):
        raise Reply(400, {"error": "body must be a JSON object"})
    return data


def parse_notes_edit(body: bytes) -> tuple[int, str]:
    data = json_object(body)
    employee_id, notes = data.get("employee_id"), data.get("notes")
    if not is_int(employee_id) or not isinstance(notes, str) or len(notes) > MAX_NOTES:
        raise Reply(400, {"error": f"expected employee_id (integer) and notes (text, at most "
                                   f"{MAX_NOTES} characters)"})
    return employee_id, notes


def parse_web_punch(body: bytes) -> tuple[int, str]:
    data = json_object(body)
    employee_id, direction = data.get("employee_id"), data.get("direction")
    if not is_int(employee_id) or direction not in DIRECTIONS:
        raise Reply(400, {"error": "expected employee_id (integer) and direction (IN or OUT)"})
    return employee_id, direction


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_spooled(path: Path) -> dict:
    """One spooled punch; a bad file stops the drain before anything is loaded."""
    try:
        data = json.loads(path.read_text())
        punched_at = datetime.fromisoformat(data["punched_at"])
        punch = {key: data[key] for key in ("employee_id", "badge_id", "terminal_id",
                                            "direction")}
        punch["punched_at"] = punched_at
        valid = (is_int(punch["employee_id"]) and punch["direction"] in DIRECTIONS
                 and punched_at.tzinfo is not None
                 and all(punch[k] is None or is_int(punch[k]) for k in ("badge_id", "terminal_id")))
    except (OSError, ValueError, KeyError, TypeError):
        valid = False
    if not valid:
        raise Reply(422, {"error": "bad spool file", "file": path.name})
    return punch


# --- the front door ----------------------------------------------------------------------------

class FrontHandler(JsonHandler):
    role = "front"
    upstreams_file: Path  # set on the subclass

    def do_GET(self) -> None:
        self.forward()

    def do_POST(self) -> None:
        self.forward()

    def do_PUT(self) -> None:
        self.forward()

    def do_DELETE(self) -> None:
        self.forward()

    def forward(self) -> None:
        try:
            self.relay(*self.upstream())
        except Reply as reply:
            self.send_json(reply.status, reply.body)

    def upstream(self) -> tuple[str, str]:
        """(base URL, service) for this request, from the upstreams file as it is now."""
        service = urlsplit(self.path).path.split("/")[1]
        config = configparser.ConfigParser(interpolation=None)
        config.optionxform = str  # service names are case-sensitive path segments
        try:
            config.read(self.upstreams_file)
            base = config.get("upstreams", service, fallback="").strip().rstrip("/")
        except (OSError, ValueError, configparser.Error):
            base = ""
        if not service or not base:
            raise Reply(502, {"error": "no upstream", "service": service})
        if not is_loopback_http(base):
            raise Reply(502, {"error": "upstream not allowed", "service": service})
        return base, service

    def relay(self, base: str, service: str) -> None:
        body = self.read_body()
        url = urlsplit(base)
        headers = {"Content-Length": str(len(body))}
        if self.headers.get("Content-Type"):
            headers["Content-Type"] = self.headers["Content-Type"]
        conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=UPSTREAM_TIMEOUT)
        try:
            conn.request(self.command, url.path + self.path, body=body, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
        except (OSError, http.client.HTTPException):
            raise Reply(502, {"error": "upstream not answering", "service": service}) from None
        finally:
            conn.close()
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.getheader("Content-Type", "application/octet-stream"))
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Upstream", base)
        self.end_headers()
        self.wfile.write(data)


def is_loopback_http(base: str) -> bool:
    """Only plain http to a literal 127.0.0.0/8 address: the lab never leaves this machine."""
    try:
        url = urlsplit(base)
        address = ipaddress.ip_address(url.hostname or "")
        url.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        return False
    return url.scheme == "http" and address in LOOPBACK


# --- the process -------------------------------------------------------------------------------

def servers(lab_dir: Path, ports: dict[str, int]) -> list[ThreadingHTTPServer]:
    hosts = lab_dir / "hosts"
    passfile = lab_dir / "secrets/pgpass"
    made = []
    for name in ("src-app", "tgt-app"):
        handler = type(f"AppHandler_{name}", (AppHandler,),
                       {"app": AppHost(name, hosts / name / "root", passfile), "role": name})
        made.append(ThreadingHTTPServer((HOST, ports[name]), handler))
    front = type("FrontHandler_front", (FrontHandler,),
                 {"upstreams_file": hosts / "front/root/etc/front/upstreams.conf"})
    made.append(ThreadingHTTPServer((HOST, ports["front"]), front))
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m migrate.lab.webapps", description=__doc__)
    parser.add_argument("--lab-dir", type=Path, required=True)
    parser.add_argument("--src-app", type=int, required=True, help="port of src-app's apps")
    parser.add_argument("--tgt-app", type=int, required=True, help="port of tgt-app's apps")
    parser.add_argument("--front", type=int, required=True, help="port of the front door")
    args = parser.parse_args(argv)
    # Blocked before any thread starts, so that only the main thread receives them.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    ports = {"src-app": args.src_app, "tgt-app": args.tgt_app, "front": args.front}
    try:
        running = servers(args.lab_dir.absolute(), ports)
    except OSError as exc:
        print(f"cannot listen: {exc}", file=sys.stderr)
        return 1
    for server in running:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"serving on {HOST}: {ports}", file=sys.stderr, flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    for server in running:
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
