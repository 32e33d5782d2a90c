"""The lab against the real thing: PostgreSQL clusters, sshd hosts and moto S3 on loopback.

One lab is built for the module in a private /tmp directory on non-default ports, so it never
collides with a developer's `.lab/`. Seeding is replaced by a tiny stub (the real generator in
`migrate.lab.data` is tested on its own); the stub still talks to the source cluster through the
admin DSN that `up` hands it, so that hand-over is tested too.
"""

from __future__ import annotations

import configparser
import contextlib
import dataclasses
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import boto3
import paramiko
import psycopg
import pytest

from migrate.lab import api as lab_api
from migrate.lab.api import LabError, LabPorts
from tests.integration import lab_support

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/usr/lib/postgresql/15/bin/initdb").exists()
    or not Path("/usr/sbin/sshd").exists(),
    reason="the lab needs root, PostgreSQL 15 and openssh-server")

# The session lab's ports + 100 (and + 110 for the lab that must fail to start), so test
# sessions with distinct MIGRATE_TEST_PORT_OFFSET values never share a port.
PORTS = LabPorts(**{k: v + 100 for k, v in lab_support.PORTS.items()})
OTHER_PORTS = LabPorts(**{k: v + 110 for k, v in lab_support.PORTS.items()})


# --- helpers -------------------------------------------------------------------------------

class SeedStub:
    """Stands in for migrate.lab.data.seed: creates the two databases and one document."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def seed(self, *, admin_dsn, archive_dir, employees, years, seed, owner="hr_owner"):
        self.calls.append({"employees": employees, "years": years, "seed": seed})
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            for db in ("personale", "presenze"):
                conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
                conn.execute(f"CREATE DATABASE {db} OWNER {owner}")
        archive = Path(archive_dir)
        shutil.rmtree(archive, ignore_errors=True)
        archive.mkdir(parents=True)
        (archive / f"doc-{seed}.pdf").write_bytes(b"%PDF-1.4 stub")
        return {"personale.dipendenti": employees, "archive.files": 1}


def traversable_tmpdir() -> Path:
    # Under /tmp itself, not pytest's tmp_path: /tmp/pytest-of-root is 0700 and the postgres
    # OS user could not reach its data directory through it.
    path = Path(tempfile.mkdtemp(prefix="migrate-lab-test-", dir="/tmp"))
    path.chmod(0o755)
    return path


def recorded_pids(lab_dir: Path) -> dict[str, int]:
    return json.loads((lab_dir / "lab.json").read_text())["pids"]


def is_gone(pid: int) -> bool:
    """Not running: no /proc entry, or a zombie that its parent has not reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def wait_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not is_gone(pid):
        time.sleep(0.05)
    return is_gone(pid)


def port_is_listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
        return True
    return False


def all_ports(ports: LabPorts) -> list[int]:
    return list(dataclasses.asdict(ports).values())


def with_dbname(dsn: str, dbname: str) -> str:
    return " ".join(f"dbname={dbname}" if part.startswith("dbname=") else part
                    for part in dsn.split())


def ssh_client(lab_dir: Path, port: int, known_hosts: Path | None = None) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts or lab_dir / "ssh/known_hosts"))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect("127.0.0.1", port=port, username="root",
                   key_filename=str(lab_dir / "ssh/id_ed25519"), look_for_keys=False,
                   allow_agent=False, timeout=5, banner_timeout=5, auth_timeout=5)
    return client


def run_remote(client: paramiko.SSHClient, command: str) -> str:
    _, stdout, stderr = client.exec_command(command, timeout=10)
    assert stdout.channel.recv_exit_status() == 0, stderr.read().decode()
    return stdout.read().decode()


def s3_client(lab_dir: Path, endpoint_url: str):
    config = configparser.ConfigParser()
    config.read(lab_dir / "secrets/s3.ini")
    return boto3.client("s3", endpoint_url=endpoint_url, region_name="eu-south-1",
                        aws_access_key_id=config["lab"]["aws_access_key_id"],
                        aws_secret_access_key=config["lab"]["aws_secret_access_key"])


def force_cleanup(lab_dir: Path) -> None:
    """Last resort if `down` failed: kill the recorded PIDs that are still this lab's."""
    try:
        pids = recorded_pids(lab_dir)
    except (OSError, ValueError):
        return
    for pid in filter(None, pids.values()):
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            if str(lab_dir) in cmdline or "moto_server" in cmdline:
                os.kill(pid, signal.SIGKILL)


# --- fixtures ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def seed_stub():
    stub = SeedStub()
    module = types.ModuleType("migrate.lab.data")
    module.seed = stub.seed
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "migrate.lab.data", module)
        yield stub


@pytest.fixture(scope="module")
def lab_dir(seed_stub):
    parent = traversable_tmpdir()
    lab = parent / "lab"
    try:
        yield lab
    finally:
        try:
            if lab.exists():
                lab_api.down(lab, purge=True)
        finally:
            force_cleanup(lab)
            shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="module")
def lab(lab_dir, seed_stub):
    started = time.monotonic()
    result = lab_api.up(lab_dir, ports=PORTS, employees=3, years=1, seed=7)
    print(f"fresh up took {time.monotonic() - started:.1f}s")
    return result


# --- tests that build nothing --------------------------------------------------------------

def test_a_held_port_fails_up_before_anything_starts(seed_stub):
    parent = traversable_tmpdir()
    calls_before = len(seed_stub.calls)
    try:
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", OTHER_PORTS.pg_target))
            squatter.listen()
            with pytest.raises(LabError, match=rf"port {OTHER_PORTS.pg_target}.*pg-target"):
                lab_api.up(parent / "lab", ports=OTHER_PORTS)
        assert not (parent / "lab").exists(), "nothing may be built before the port check"
        assert not any(port_is_listening(p) for p in all_ports(OTHER_PORTS))
        assert len(seed_stub.calls) == calls_before
    finally:
        force_cleanup(parent / "lab")
        shutil.rmtree(parent, ignore_errors=True)


def test_a_lab_the_postgres_user_cannot_reach_is_refused():
    private = Path(tempfile.mkdtemp(prefix="migrate-lab-private-", dir="/tmp"))  # mode 0700
    try:
        with pytest.raises(LabError, match="not searchable"):
            lab_api.up(private / "lab", ports=OTHER_PORTS)
        assert not (private / "lab").exists()
    finally:
        shutil.rmtree(private, ignore_errors=True)


def test_status_of_a_missing_lab_is_an_operator_error(tmp_path):
    with pytest.raises(LabError, match="no lab"):
        lab_api.status(tmp_path / "nothing-here")


# --- the running lab -----------------------------------------------------------------------

def test_up_reports_every_service_up_with_passfile_dsns(lab, lab_dir):
    assert lab == lab_api.status(lab_dir)
    assert lab["lab_dir"] == str(lab_dir)
    assert lab["postgres"] == {"source": {"port": PORTS.pg_source, "up": True},
                               "target": {"port": PORTS.pg_target, "up": True}}
    assert lab["ssh"] == {"src-app": {"host": "127.0.0.1", "port": PORTS.ssh_src_app, "up": True},
                          "tgt-app": {"host": "127.0.0.1", "port": PORTS.ssh_tgt_app, "up": True},
                          "front": {"host": "127.0.0.1", "port": PORTS.ssh_front, "up": True}}
    assert lab["http"] == {"src-app": {"port": PORTS.http_src_app, "up": True},
                           "tgt-app": {"port": PORTS.http_tgt_app, "up": True},
                           "front": {"port": PORTS.http_front, "up": True}}
    assert lab["s3"] == {"endpoint_url": f"http://127.0.0.1:{PORTS.s3}",
                         "buckets": ["comune-migration-staging"], "up": True}
    assert lab["dns"]["zone"] == "comune.lab." and lab["dns"]["zone_id"]
    assert lab["dns"]["records"] == {"personale.comune.lab.": "src-app.comune.lab.",
                                     "presenze.comune.lab.": "src-app.comune.lab."}
    assert set(lab["databases"]) == {"personale", "presenze"}
    passfile = lab_dir / "secrets/pgpass"
    for dsns in lab["databases"].values():
        for dsn in dsns.values():
            assert f"passfile={passfile}" in dsn and "password" not in dsn


def test_both_clusters_accept_migrate_through_the_passfile(lab, lab_dir):
    assert (lab_dir / "secrets/pgpass").stat().st_mode & 0o777 == 0o600
    with psycopg.connect(lab["databases"]["personale"]["source"]) as conn:
        row = conn.execute(
            "SELECT current_user, pg_get_userbyid(d.datdba), r.rolcanlogin "
            "FROM pg_database d, pg_roles r "
            "WHERE d.datname = current_database() AND r.rolname = 'hr_owner'").fetchone()
        assert row == ("migrate", "hr_owner", False)
    target = with_dbname(lab["databases"]["personale"]["target"], "postgres")
    with psycopg.connect(target) as conn:
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
                            ).fetchone() == (True,)
        assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = 'hr_owner'"
                            ).fetchone() == (0,)


@pytest.mark.parametrize("password", [None, "wrong"])
def test_postgres_refuses_a_missing_or_wrong_password(lab, password, tmp_path):
    # A passfile that does not exist, so that no ~/.pgpass can make this pass by accident.
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host="127.0.0.1", port=PORTS.pg_source, dbname="postgres",
                        user="migrate", password=password, passfile=str(tmp_path / "none"),
                        connect_timeout=5)


def test_ssh_hosts_run_commands_after_verifying_their_host_keys(lab, lab_dir):
    hosts = (("src-app", PORTS.ssh_src_app, "etc/hr"), ("tgt-app", PORTS.ssh_tgt_app, "etc/hr"),
             ("front", PORTS.ssh_front, "etc/front/upstreams.conf"))
    for host, port, expected in hosts:
        host_root = lab_dir / "hosts" / host / "root"
        client = ssh_client(lab_dir, port)
        try:
            out = run_remote(client, f"test -e {host_root}/{expected} && "
                                     "/usr/bin/python3 -c 'print(\"ok\")'")
            assert out == "ok\n"
            if host == "src-app":
                with client.open_sftp() as sftp:  # the sftp subsystem works too
                    assert sftp.listdir(f"{host_root}/srv/personale/documents") == ["doc-7.pdf"]
        finally:
            client.close()


def test_ssh_rejects_a_wrong_or_unknown_host_key_and_passwords(lab, lab_dir, tmp_path):
    # known_hosts that pins tgt-app's key on src-app's address: an impostor.
    entries = (lab_dir / "ssh/known_hosts").read_text().splitlines()
    tgt_key = next(line for line in entries if f":{PORTS.ssh_tgt_app} " in line).split(" ", 1)[1]
    wrong = tmp_path / "known_hosts.wrong"
    wrong.write_text(f"[127.0.0.1]:{PORTS.ssh_src_app} {tgt_key}\n")
    with pytest.raises(paramiko.BadHostKeyException):
        ssh_client(lab_dir, PORTS.ssh_src_app, known_hosts=wrong)

    empty = tmp_path / "known_hosts.empty"
    empty.write_text("")
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        ssh_client(lab_dir, PORTS.ssh_src_app, known_hosts=empty)

    client = paramiko.SSHClient()
    client.load_host_keys(str(lab_dir / "ssh/known_hosts"))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    with pytest.raises(paramiko.AuthenticationException):
        client.connect("127.0.0.1", port=PORTS.ssh_tgt_app, username="root", password="x",
                       look_for_keys=False, allow_agent=False, timeout=5)
    client.close()


def test_the_bucket_is_versioned_encrypted_private_and_in_region(lab, lab_dir):
    s3 = s3_client(lab_dir, lab["s3"]["endpoint_url"])
    bucket = "comune-migration-staging"
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] == "eu-south-1"
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    s3.put_object(Bucket=bucket, Key="probe", Body=b"one")
    s3.put_object(Bucket=bucket, Key="probe", Body=b"two")
    assert len(s3.list_object_versions(Bucket=bucket, Prefix="probe")["Versions"]) == 2
    assert s3.head_object(Bucket=bucket, Key="probe")["ServerSideEncryption"] == "AES256"


def test_no_secret_reaches_lab_json_status_or_logs(lab, lab_dir):
    secrets = [line.rsplit(":", 1)[1]
               for line in (lab_dir / "secrets/pgpass").read_text().splitlines()]
    ini = configparser.ConfigParser()
    ini.read(lab_dir / "secrets/s3.ini")
    secrets.append(ini["lab"]["aws_secret_access_key"])
    assert len(secrets) == 3 and all(len(s) >= 32 for s in secrets)
    client_key = (lab_dir / "ssh/id_ed25519").read_text()
    assert (lab_dir / "ssh/id_ed25519").stat().st_mode & 0o777 == 0o600

    exposed = [lab_dir / "lab.json", lab_dir / "pg/source.log", lab_dir / "pg/target.log",
               lab_dir / "s3/moto.log", lab_dir / "web/web.log", *lab_dir.glob("hosts/*/sshd*"),
               *[p for p in lab_dir.glob("hosts/*/root/**/*") if p.is_file()]]
    texts = [json.dumps(lab_api.status(lab_dir))] + [p.read_text() for p in exposed]
    for text in texts:
        assert not any(secret in text for secret in secrets)
        assert client_key not in text


def test_up_again_changes_nothing(lab, lab_dir, seed_stub):
    state_file = lab_dir / "lab.json"
    before = (state_file.read_text(), state_file.stat().st_mtime_ns)
    calls = len(seed_stub.calls)

    again = lab_api.up(lab_dir)  # no ports: the recorded ones are used

    assert again == lab
    assert (state_file.read_text(), state_file.stat().st_mtime_ns) == before
    assert len(seed_stub.calls) == calls
    with pytest.raises(LabError, match="built with ports"):
        lab_api.up(lab_dir, ports=OTHER_PORTS)


def test_up_restarts_only_what_is_down_and_ignores_stale_pids(lab, lab_dir, seed_stub):
    pids = recorded_pids(lab_dir)
    os.kill(pids["tgt-app"], signal.SIGTERM)
    assert wait_gone(pids["tgt-app"])
    # A stale record pointing at a live, unrelated process (this test runner) must not count
    # as the lab's sshd, and must never be signalled.
    state = json.loads((lab_dir / "lab.json").read_text())
    state["pids"]["tgt-app"] = os.getpid()
    (lab_dir / "lab.json").write_text(json.dumps(state))
    assert lab_api.status(lab_dir)["ssh"]["tgt-app"]["up"] is False

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", PORTS.ssh_tgt_app))
        squatter.listen()
        with pytest.raises(LabError, match=rf"port {PORTS.ssh_tgt_app}.*tgt-app"):
            lab_api.up(lab_dir)
    assert recorded_pids(lab_dir)["tgt-app"] == os.getpid()  # nothing was started

    calls = len(seed_stub.calls)
    result = lab_api.up(lab_dir)
    now = recorded_pids(lab_dir)
    assert now["tgt-app"] not in (pids["tgt-app"], os.getpid())
    assert {k: v for k, v in now.items() if k != "tgt-app"} == \
           {k: v for k, v in pids.items() if k != "tgt-app"}
    assert result["ssh"]["tgt-app"]["up"] is True
    assert len(seed_stub.calls) == calls
    ssh_client(lab_dir, PORTS.ssh_tgt_app).close()  # same host key after the restart


def test_up_recovers_a_crashed_cluster_despite_its_stale_lock_files(lab, lab_dir, seed_stub):
    pids = recorded_pids(lab_dir)
    os.kill(pids["pg-source"], signal.SIGKILL)  # a crash: no clean shutdown, locks left behind
    assert wait_gone(pids["pg-source"])
    assert (lab_dir / "pg/source/postmaster.pid").exists()
    assert (lab_dir / f"run/pg/.s.PGSQL.{PORTS.pg_source}.lock").exists()
    calls = len(seed_stub.calls)

    result = lab_api.up(lab_dir)

    assert result["postgres"]["source"]["up"] is True
    now = recorded_pids(lab_dir)
    assert now["pg-source"] != pids["pg-source"]
    assert {k: v for k, v in now.items() if k != "pg-source"} == \
           {k: v for k, v in pids.items() if k != "pg-source"}
    assert len(seed_stub.calls) == calls
    with psycopg.connect(result["databases"]["personale"]["source"]) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("personale",)


def test_reseed_returns_the_target_side_to_its_initial_state(lab, lab_dir, seed_stub):
    target = with_dbname(lab["databases"]["personale"]["target"], "postgres")
    with psycopg.connect(target, autocommit=True) as conn:  # leftovers of a migration
        conn.execute("CREATE ROLE hr_owner NOLOGIN")
        conn.execute("CREATE DATABASE personale OWNER hr_owner")
    leftover = lab_dir / "hosts/tgt-app/root/srv/personale/documents/migrated.pdf"
    leftover.write_bytes(b"%PDF")
    s3 = s3_client(lab_dir, lab["s3"]["endpoint_url"])
    s3.put_object(Bucket="comune-migration-staging", Key="staged/dump", Body=b"x")

    result = lab_api.reseed(lab_dir, employees=2, years=1, seed=9)

    assert result == {"personale.dipendenti": 2, "archive.files": 1}  # what seed returned
    assert seed_stub.calls[-1] == {"employees": 2, "years": 1, "seed": 9}
    with psycopg.connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname IN "
                            "('personale', 'presenze')").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = 'hr_owner'"
                            ).fetchone() == (0,)
    assert not leftover.exists() and leftover.parent.is_dir()
    versions = s3.list_object_versions(Bucket="comune-migration-staging")
    assert not versions.get("Versions") and not versions.get("DeleteMarkers")
    with psycopg.connect(lab["databases"]["presenze"]["source"]) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert json.loads((lab_dir / "lab.json").read_text())["seeded"]["seed"] == 9


# --- what a cutover works with: apps, front door, collector, DNS, replication, reset ---------
#
# These use the session lab (real seeded data, see conftest.py), put back to its post-seed
# state before each test by `clean_lab` (lab_api.reset).

def session_port(name: str) -> int:
    return lab_support.PORTS[name]


def call(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, dict, dict]:
    """(status, headers, JSON body) of one HTTP request to the lab on 127.0.0.1."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, path, body=data, headers=headers)
        answer = conn.getresponse()
        return answer.status, dict(answer.getheaders()), json.loads(answer.read() or b"null")
    finally:
        conn.close()


def front(method: str, path: str, body: dict | None = None) -> tuple[int, dict, dict]:
    return call(session_port("http_front"), method, path, body)


def front_answer(method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    status, _, data = front(method, path, body)
    return status, data


def url_of(name: str) -> str:
    return f"http://127.0.0.1:{session_port(name)}"


def source_rows(query: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(lab_support.dsn("source", "presenze")) as conn:
        return conn.execute(query, params).fetchall()


def spool_dir() -> Path:
    return lab_support.host_root("src-app") / "var/spool/hr/presenze"


def set_upstream(service: str, url: str) -> None:
    conf = lab_support.host_root("front") / "etc/front/upstreams.conf"
    ini = configparser.ConfigParser()
    ini.read(conf)
    ini["upstreams"][service] = url
    with open(conf, "w") as handle:
        ini.write(handle)


def test_both_source_apps_are_healthy_through_the_front_door(clean_lab):
    for service in ("personale", "presenze"):
        status, headers, body = front("GET", f"/{service}/health")
        assert status == 200, body
        assert headers["X-Upstream"] == url_of("http_src_app")
        assert body == {"service": service, "host": "src-app", "status": "ok", "database": service,
                        "server": f"127.0.0.1:{session_port('pg_source')}"}


def test_the_target_apps_are_installed_but_stopped(clean_lab):
    for service in ("personale", "presenze"):
        status, _, body = call(session_port("http_tgt_app"), "GET", f"/{service}/health")
        assert (status, body) == (503, {"service": service, "host": "tgt-app", "status": "stopped"})
    assert not any(p.is_file() for p in lab_support.host_root("tgt-app").rglob("*"))


def test_a_web_punch_through_the_front_door_lands_in_the_source(clean_lab):
    employee = source_rows("SELECT min(employee_id) FROM staff WHERE active")[0][0]
    status, headers, body = front("POST", "/presenze/punches", {"employee_id": employee, "direction": "IN"})
    assert status == 201 and headers["X-Upstream"] == url_of("http_src_app")
    row = source_rows("SELECT employee_id, direction, origin, badge_id, terminal_id, punched_at = recorded_at, "
                      "now() - recorded_at < interval '1 minute' FROM punch WHERE punch_id = %s", (body["punch_id"],))
    assert row == [(employee, "IN", "WEB", None, None, True, True)]
    for bad in ({"employee_id": employee, "direction": "UP"}, {"employee_id": str(employee), "direction": "IN"},
                {"employee_id": True, "direction": "IN"}, {"employee_id": 999999, "direction": "OUT"}):
        assert front("POST", "/presenze/punches", bad)[0] == 400, bad


def test_maintenance_stop_and_a_dead_database_make_the_apps_refuse(clean_lab):
    root = lab_support.host_root("src-app")
    (root / "var/lib/hr/presenze.maintenance").write_text("wave-1\n")
    assert front_answer("GET", "/presenze/health") == (503, {"service": "presenze", "host": "src-app",
                                                              "status": "maintenance"})
    assert front("POST", "/presenze/punches", {"employee_id": 1, "direction": "IN"})[0] == 503
    assert front("GET", "/personale/health")[0] == 200, "maintenance is per service"

    (root / "run/hr/personale.running").unlink()  # the service manager stopped it
    assert front("GET", "/personale/health")[2]["status"] == "stopped"

    # A config that points at a port where no database listens: re-read on every request.
    conf = root / "etc/hr/presenze.conf"
    (root / "var/lib/hr/presenze.maintenance").unlink()
    closed = OTHER_PORTS.pg_source + 5
    conf.write_text(conf.read_text().replace(f"port={session_port('pg_source')}", f"port={closed}"))
    status, _, body = front("GET", "/presenze/health")
    assert (status, body["status"]) == (503, "database unreachable")
    assert "port" not in json.dumps(body) and str(closed) not in json.dumps(body)


def test_drain_loads_the_spooled_punches_exactly_once_even_in_maintenance(clean_lab):
    files = sorted(spool_dir().glob("*.json"))
    spooled = [json.loads(p.read_text()) for p in files]
    assert len(spooled) == 3
    employees = [p["employee_id"] for p in spooled]
    assert source_rows("SELECT count(*) FROM staff WHERE employee_id = ANY(%s)", (employees,)) == [(3,)]
    before = source_rows("SELECT count(*) FROM punch")[0][0]
    (lab_support.host_root("src-app") / "var/lib/hr/presenze.maintenance").write_text("freeze\n")

    status, _, body = front("POST", "/presenze/drain")

    assert (status, body) == (200, {"drained": 3})
    assert not list(spool_dir().iterdir())
    loaded = source_rows("SELECT employee_id, badge_id, terminal_id, direction, punched_at FROM punch "
                         "WHERE origin = 'TERM' AND recorded_at > now() - interval '1 minute' ORDER BY employee_id")
    from datetime import datetime
    assert loaded == sorted((p["employee_id"], p["badge_id"], p["terminal_id"], p["direction"],
                             datetime.fromisoformat(p["punched_at"])) for p in spooled)
    assert front("POST", "/presenze/drain")[2] == {"drained": 0}
    # A drain that committed but died before deleting its files must not load them twice.
    files[0].write_text(json.dumps(spooled[0]))
    assert front("POST", "/presenze/drain")[2] == {"drained": 0}
    assert source_rows("SELECT count(*) FROM punch")[0][0] == before + 3

    (lab_support.host_root("src-app") / "run/hr/presenze.running").unlink()
    assert front_answer("POST", "/presenze/drain") == (503, {"service": "presenze", "host": "src-app",
                                                              "status": "stopped"})


def test_the_front_door_follows_its_upstreams_file(clean_lab):
    set_upstream("presenze", url_of("http_tgt_app"))
    status, headers, body = front("GET", "/presenze/health")
    assert (status, headers["X-Upstream"], body["host"]) == (503, url_of("http_tgt_app"), "tgt-app")
    assert front("GET", "/personale/health")[0] == 200

    set_upstream("presenze", f"http://127.0.0.1:{OTHER_PORTS.http_front + 7}")  # nothing listens
    assert front_answer("GET", "/presenze/health") == (502, {"error": "upstream not answering",
                                                              "service": "presenze"})
    for refused in ("http://10.0.0.1:80", "http://localhost:80", "https://127.0.0.1:443"):
        set_upstream("presenze", refused)
        assert front("GET", "/presenze/health")[2]["error"] == "upstream not allowed"
    assert front_answer("GET", "/archivio/health") == (502, {"error": "no upstream", "service": "archivio"})


def test_dns_names_point_at_the_source_and_up_does_not_duplicate_the_zone(clean_lab):
    expected = {"personale.comune.lab.": "src-app.comune.lab.", "presenze.comune.lab.": "src-app.comune.lab."}
    assert lab_support.dns_records() == expected
    assert {(rs["Type"], rs["TTL"]) for rs in lab_support.dns_record_sets()} == {("CNAME", 60)}
    lab_api.up(lab_support.LAB_DIR)
    assert lab_support.dns_records() == expected  # still exactly one zone (checked inside)


def test_both_clusters_run_with_logical_wal(clean_lab):
    for side in ("source", "target"):
        with psycopg.connect(lab_support.dsn(side, "postgres")) as conn:
            assert conn.execute("SHOW wal_level").fetchone() == ("logical",)


def test_a_source_subscription_replicates_from_the_target_through_the_replication_passfile(clean_lab):
    passfile = lab_support.LAB_DIR / "pg/replication.pgpass"
    info = passfile.stat()
    assert (info.st_mode & 0o777, info.st_uid) == (0o600, __import__("pwd").getpwnam("postgres").pw_uid)
    assert passfile.read_text().startswith(f"127.0.0.1:{session_port('pg_target')}:")
    # What a cutover's fallback path does: target presenze publishes, source presenze subscribes.
    with psycopg.connect(lab_support.dsn("target", "postgres"), autocommit=True) as conn:
        conn.execute("CREATE DATABASE presenze")
    with psycopg.connect(lab_support.dsn("target", "presenze"), autocommit=True) as conn:
        conn.execute("CREATE TABLE repl_probe (id int PRIMARY KEY, note text)")
        conn.execute("CREATE PUBLICATION fallback FOR TABLE repl_probe")
    conninfo = (f"host=127.0.0.1 port={session_port('pg_target')} dbname=presenze user=migrate "
                f"passfile={passfile}")
    with psycopg.connect(lab_support.dsn("source", "presenze"), autocommit=True) as conn:
        conn.execute("CREATE TABLE repl_probe (id int PRIMARY KEY, note text)")
        conn.execute(f"CREATE SUBSCRIPTION fallback CONNECTION '{conninfo}' PUBLICATION fallback")
    with psycopg.connect(lab_support.dsn("target", "presenze"), autocommit=True) as conn:
        conn.execute("INSERT INTO repl_probe VALUES (1, 'written on the target')")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not source_rows("SELECT * FROM repl_probe"):
        time.sleep(0.2)
    assert source_rows("SELECT * FROM repl_probe") == [(1, "written on the target")]

    lab_support.reset()  # DROP DATABASE would fail while the subscription and its slot exist

    for side in ("source", "target"):
        with psycopg.connect(lab_support.dsn(side, "postgres")) as conn:
            assert conn.execute("SELECT count(*) FROM pg_subscription").fetchone() == (0,)
            assert conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone() == (0,)
    assert lab_support.databases("target") == set()
    assert source_rows("SELECT to_regclass('repl_probe') IS NULL") == [(True,)]


def test_reset_brings_back_the_initial_state_fast(clean_lab):
    before = lab_support.snapshot()
    src, tgt = lab_support.host_root("src-app"), lab_support.host_root("tgt-app")
    # What a cutover (and a clumsy one) changes everywhere:
    with psycopg.connect(lab_support.dsn("source", "presenze"), autocommit=True) as conn:
        conn.execute("DELETE FROM punch WHERE punch_id IN (SELECT punch_id FROM punch LIMIT 5)")
        conn.execute("ALTER DATABASE presenze SET timezone TO 'UTC'")
    with psycopg.connect(lab_support.dsn("source", "personale"), autocommit=True) as conn:
        conn.execute("UPDATE employee SET surname = upper(surname)")
    with psycopg.connect(lab_support.dsn("target", "postgres"), autocommit=True) as conn:
        conn.execute("CREATE ROLE hr_owner NOLOGIN")
        conn.execute("CREATE DATABASE personale OWNER hr_owner")
    (src / "var/lib/hr/presenze.maintenance").write_text("freeze\n")
    (src / "run/hr/personale.running").unlink()
    next(spool_dir().glob("*.json")).unlink()
    (src / "etc/hr/presenze.conf").chmod(0o644)
    archived = next(p for p in (src / "srv/personale/documents").rglob("*") if p.is_file())
    archived.write_bytes(b"tampered")
    (src / "srv/personale/documents/extra").mkdir()
    (src / "srv/personale/documents/extra/new.pdf").write_bytes(b"%PDF")
    (tgt / "etc/hr/presenze.conf").write_text("[database]\ndsn = host=127.0.0.1\n")
    (tgt / "run/hr/presenze.running").write_text("")
    set_upstream("presenze", url_of("http_tgt_app"))
    set_upstream("personale", url_of("http_tgt_app"))
    zone = next(z["Id"] for z in lab_support.aws_client("route53").list_hosted_zones()["HostedZones"]
                if z["Name"] == "comune.lab.")
    lab_support.aws_client("route53").change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [
        {"Action": "UPSERT", "ResourceRecordSet": {"Name": "presenze.comune.lab.", "Type": "CNAME", "TTL": 60,
                                                   "ResourceRecords": [{"Value": "tgt-app.comune.lab."}]}},
        {"Action": "CREATE", "ResourceRecordSet": {"Name": "new.comune.lab.", "Type": "A", "TTL": 300,
                                                   "ResourceRecords": [{"Value": "127.0.0.9"}]}}]})
    lab_support.s3_client().put_object(Bucket=lab_support.BUCKET, Key="staged/x", Body=b"x")
    changed = lab_support.snapshot()
    assert all(changed[k] != before[k] for k in ("source", "target_databases", "bucket", "src-app",
                                                 "tgt-app", "front", "dns"))
    assert changed["source_objects"] != before["source_objects"]

    result = lab_api.reset(lab_support.LAB_DIR)

    print(f"reset took {result['seconds']:.2f}s")
    assert lab_support.snapshot() == before
    assert result["seconds"] < 15
    with psycopg.connect(lab_support.dsn("target", "postgres")) as conn:
        assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = 'hr_owner'").fetchone() == (0,)
    assert front("GET", "/presenze/health")[0] == 200


# Last: takes the module's lab down.
def test_down_stops_exactly_the_lab_processes_and_purge_removes_it(lab, lab_dir, seed_stub):
    pids = recorded_pids(lab_dir)
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        lab_api.down(lab_dir)
        assert all(wait_gone(pid) for pid in pids.values()), pids
        assert bystander.poll() is None, "down must stop only the lab's own processes"
    finally:
        bystander.kill()
        bystander.wait()
    assert not any(port_is_listening(p) for p in all_ports(PORTS))
    assert not any(lab_api.status(lab_dir)["postgres"][c]["up"] for c in ("source", "target"))
    assert (lab_dir / "pg/source/PG_VERSION").exists(), "down keeps the data"

    # Back up from the kept data: no reseed, and the in-memory bucket is recreated.
    calls = len(seed_stub.calls)
    again = lab_api.up(lab_dir)
    assert len(seed_stub.calls) == calls
    assert again["s3"]["up"] and again["postgres"]["source"]["up"]
    with psycopg.connect(again["databases"]["personale"]["source"]) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("personale",)
    s3 = s3_client(lab_dir, again["s3"]["endpoint_url"])
    assert s3.get_bucket_versioning(Bucket="comune-migration-staging")["Status"] == "Enabled"

    pids = recorded_pids(lab_dir)
    lab_api.down(lab_dir, purge=True)
    assert not lab_dir.exists()
    assert all(wait_gone(pid) for pid in pids.values()), pids
