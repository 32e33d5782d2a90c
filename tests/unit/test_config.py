import ipaddress
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from migrate import config
from migrate.adapters import guard
from migrate.errors import ConfigError, UnsafeAddress

LAB = Path(__file__).resolve().parents[2] / "inventories" / "lab"


def inventory(tmp_path: Path, edit=None, hosts_edit=None) -> Path:
    inv = tmp_path / "inv"
    shutil.copytree(LAB, inv, ignore=shutil.ignore_patterns(".state"))
    for name, fn in (("migrate.yml", edit), ("hosts.yml", hosts_edit)):
        if fn:
            data = yaml.safe_load((inv / name).read_text())
            fn(data)
            (inv / name).write_text(yaml.safe_dump(data))
    return inv


def problems(tmp_path, edit=None, hosts_edit=None) -> list[str]:
    with pytest.raises(ConfigError) as err:
        config.load(inventory(tmp_path, edit, hosts_edit))
    return err.value.problems


def test_lab_inventory_loads():
    inv = config.load(LAB)
    assert set(inv.spec.systems) == {"personnel", "attendance"}
    assert inv.hosts["src-app"].port == 12201
    assert inv.hosts["src-app"].vars["host_root"].endswith(".lab/hosts/src-app/root")
    assert config.order_systems(inv.spec, ["attendance", "personnel"]) == ["personnel", "attendance"]


@pytest.mark.parametrize("edit, expected", [
    (lambda d: d["systems"]["personnel"].update(colour="blue"), "systems.personnel.colour: unknown key"),
    (lambda d: d["db_servers"]["onprem-pg"].update(port="many"), "db_servers.onprem-pg.port: Input should be a valid integer"),
    (lambda d: d["waves"]["wave-1"]["systems"].append("payroll"), "waves.wave-1.systems: unknown system 'payroll'"),
    (lambda d: d["systems"]["personnel"]["app"].update(target_host="cloud-9"),
     "systems.personnel.app.target_host: host 'cloud-9' is not in hosts.yml"),
    (lambda d: d["systems"]["personnel"]["databases"]["personale"]["target"].update(server="nowhere"),
     "systems.personnel.databases.personale.target.server: unknown db server 'nowhere'"),
    (lambda d: d["systems"]["personnel"].update(depends_on=["attendance"]), "dependency cycle among attendance, personnel"),
    (lambda d: d["waves"]["wave-1"].update(systems=["attendance"]),
     "waves.wave-1.systems: 'attendance' depends on 'personnel', which this wave does not migrate"),
    (lambda d: d["db_servers"]["cloud-pg"].update(host="10.0.0.5"), "db_servers.cloud-pg.host: address 10.0.0.5 (10.0.0.5) is outside the allowed networks 127.0.0.0/8"),
    (lambda d: d["storage"].update(endpoint_url="http://192.168.1.10:9000"), "storage.endpoint_url: address 192.168.1.10"),
    (lambda d: d.pop("waves"), "waves: required key is missing"),
    (lambda d: d["waves"]["wave-1"]["window"]["slots"][0].update(start="25:00"), "waves.wave-1.window.slots.0.start"),
    (lambda d: d["db_servers"]["cloud-pg"].update(password_env="X"), "db_servers.cloud-pg: give exactly one of passfile or password_env"),
    (lambda d: d["db_servers"]["onprem-pg"].pop("replication_passfile"),
     "db_servers.onprem-pg.replication_passfile: required: the way back after cutover replicates personnel/personale"),
    (lambda d: d["entry_point"].pop("dns_zone"), "systems.personnel.app.dns: needs entry_point.dns_zone"),
    (lambda d: d["entry_point"].update(proxy_host="gateway"), "entry_point.proxy_host: host 'gateway' is not in hosts.yml"),
    (lambda d: d["entry_point"].update(url="http://192.0.2.7/"), "entry_point.url: address 192.0.2.7"),
    (lambda d: d["waves"]["wave-1"].update(require_rehearsal={"max_age_days": 0}),
     "waves.wave-1.require_rehearsal.max_age_days: Input should be greater than or equal to 1"),
    (lambda d: d["waves"]["wave-1"]["window"]["slots"][0].update(start="22:00", end="06:00"),
     "waves.wave-1.window.slots.0: end 06:00 is not after start 22:00"),
    (lambda d: d["waves"]["wave-1"]["window"].update(timezone="Mars/Olympus"),
     "waves.wave-1.window.timezone: unknown time zone 'Mars/Olympus'"),
    (lambda d: d.update(allowed_networks=["not-a-network"]), "allowed_networks: 'not-a-network' is not a network"),
])
def test_bad_spec_names_file_and_field(tmp_path, edit, expected):
    found = problems(tmp_path, edit)
    assert any(expected in p for p in found), found
    assert all(p.startswith(str(tmp_path / "inv" / "migrate.yml")) for p in found)


def test_target_app_host_needs_an_app_url_for_health_checks(tmp_path):
    found = problems(tmp_path, hosts_edit=lambda d: d["all"]["children"]["target_app"]["hosts"]["tgt-app"]
                     .pop("app_url"))
    assert any("hosts.yml: hosts.tgt-app.app_url: required" in p for p in found), found


def test_host_outside_allowed_networks(tmp_path):
    found = problems(tmp_path, hosts_edit=lambda d: d["all"]["children"]["target_app"]["hosts"]["tgt-app"]
                     .update(ansible_host="172.16.0.9"))
    assert any("hosts.yml: hosts.tgt-app.ansible_host: address 172.16.0.9" in p for p in found)


LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]


@pytest.mark.parametrize("address, resolved, refusal", [
    ("127.0.0.9", None, None),
    ("10.0.0.5", None, "address 10.0.0.5 (10.0.0.5) is outside the allowed networks 127.0.0.0/8"),
    ("db.internal", {"127.0.0.9"}, None),
    ("db.internal", {"127.0.0.9", "10.0.0.5"}, "address db.internal (10.0.0.5) is outside the allowed networks"),
    ("db.internal", None, "'db.internal' does not resolve; refused"),
    ("db.internal", set(), "'db.internal' does not resolve; refused"),
])
def test_address_refusal(address, resolved, refusal):
    found = config.address_refusal(address, LOOPBACK, lambda name: resolved)
    assert found == refusal if refusal is None else refusal in found


def test_name_that_does_not_resolve_fails_closed():
    assert "does not resolve" in config.address_refusal("no-such-host.invalid", [], guard.resolve)


def host_name_for_cloud_pg(d):
    d["db_servers"]["cloud-pg"]["host"] = "db.internal"


def test_host_names_are_checked_at_load_with_a_resolver(tmp_path):
    inv = inventory(tmp_path, host_name_for_cloud_pg)
    assert config.load(inv, resolve=lambda name: {"127.0.0.9"}).spec.db_servers["cloud-pg"].host == "db.internal"
    with pytest.raises(ConfigError) as err:
        config.load(inv, resolve=lambda name: {"10.0.0.5"})
    assert err.value.problems == [f"{inv / 'migrate.yml'}: db_servers.cloud-pg.host: address db.internal (10.0.0.5)"
                                  " is outside the allowed networks 127.0.0.0/8"]


def test_without_a_resolver_names_wait_for_the_guard(tmp_path, monkeypatch):
    loaded = config.load(inventory(tmp_path, host_name_for_cloud_pg))
    monkeypatch.setattr(guard, "resolve", lambda name: {"10.0.0.5"} if name == "db.internal" else None)
    with pytest.raises(UnsafeAddress, match=r"^db server cloud-pg: address db.internal \(10.0.0.5\) is outside"):
        guard.check(loaded, loaded.spec.db_servers["cloud-pg"].host, "db server cloud-pg")
    assert guard.check(loaded, "127.0.0.1", "db server onprem-pg") == "127.0.0.1"


@pytest.mark.parametrize("text, expected", [
    ("version: 1\nversion: 1\n", r"migrate.yml: line 2 not valid YAML \(key 'version' given twice\)"),
    (b"version: 1\nname: caf\xe9\n", r"migrate.yml: not UTF-8 text \(byte 20\)"),
    ("# " + "x" * (1024 * 1024) + "\n", r"migrate.yml: \d+ bytes, more than the 1048576 a spec may have"),
])
def test_files_refused_before_they_are_parsed_as_a_spec(tmp_path, text, expected):
    inv = inventory(tmp_path)
    target = inv / "migrate.yml"
    target.write_bytes(text) if isinstance(text, bytes) else target.write_text(text)
    with pytest.raises(ConfigError, match=expected):
        config.load(inv)


def test_a_duplicate_key_deep_in_the_spec_is_refused(tmp_path):
    inv = inventory(tmp_path)
    text = (inv / "migrate.yml").read_text()
    (inv / "migrate.yml").write_text(text.replace("storage:\n", "storage:\n  bucket: another-bucket\n", 1))
    with pytest.raises(ConfigError, match="key 'bucket' given twice"):
        config.load(inv)


def test_invalid_yaml(tmp_path):
    inv = inventory(tmp_path)
    (inv / "migrate.yml").write_text("version: 1\nsystems: [unclosed\n")
    with pytest.raises(ConfigError, match=r"migrate.yml: line \d+ not valid YAML"):
        config.load(inv)


def test_cli_bad_spec_exits_2_with_one_line_and_no_traceback(tmp_path):
    inv = inventory(tmp_path, lambda d: d["waves"]["wave-1"]["systems"].append("payroll"))
    proc = subprocess.run([sys.executable, "-m", "migrate.cli", "-i", str(inv), "run", "wave-1", "--yes"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {inv / 'migrate.yml'}: waves.wave-1.systems: unknown system 'payroll'"]
    assert not (inv / ".state").exists(), "a bad spec must change nothing"


def test_cli_unknown_wave_exits_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "migrate.cli", "-i", str(inventory(tmp_path)), "plan", "wave-9"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "waves: no wave 'wave-9' (known: wave-1)" in proc.stderr


@pytest.mark.parametrize("name", ["staging", "production"])
def test_example_inventories_are_valid_and_hold_no_secret(name):
    inv = config.load(LAB.parent / name)
    assert all(s.password_env and not s.passfile for s in inv.spec.db_servers.values())
    text = (LAB.parent / name / "migrate.yml").read_text().lower()
    assert not re.search(r"^\s*(password|\w*secret\w*|token)\s*:", text, re.M)


def test_lab_inventory_for_another_lab_dir_and_ports(tmp_path):
    from migrate.lab.inventory import write_lab_inventory
    from migrate.lab.api import LabPorts
    ports = LabPorts(pg_source=20432, pg_target=20433, ssh_src_app=20201, ssh_tgt_app=20202, s3=20900)
    inv = config.load(write_lab_inventory(tmp_path / "lab", ports))
    assert inv.hosts["tgt-app"].port == 20202
    assert inv.hosts["src-app"].vars["host_root"] == f"{tmp_path}/lab/hosts/src-app/root"
    assert inv.spec.db_servers["cloud-pg"].port == 20433
    assert inv.spec.db_servers["onprem-pg"].passfile == f"{tmp_path}/lab/secrets/pgpass"
    assert inv.spec.storage.endpoint_url == "http://127.0.0.1:20900"


def test_a_passfile_that_is_a_directory_is_named_as_such(tmp_path):
    from migrate.adapters import db
    (tmp_path / "pgpass.d").mkdir()
    inv = config.load(inventory(tmp_path, lambda d: d["db_servers"]["cloud-pg"].update(passfile=str(tmp_path / "pgpass.d"))))
    with pytest.raises(ConfigError, match="db_servers.cloud-pg.passfile: .* is a directory, not a libpq passfile"):
        db.conninfo(inv, "cloud-pg", "postgres")


@pytest.mark.parametrize("variables, field", [
    ({"ansible_host_key_checking": False}, "hosts.src-app.ansible_host_key_checking"),
    ({"ansible_ssh_common_args": "-o StrictHostKeyChecking=no"}, "hosts.src-app.ansible_ssh_common_args"),
    ({"ansible_ssh_extra_args": "-o 'UserKnownHostsFile=/dev/null'"}, "hosts.src-app.ansible_ssh_extra_args"),
    ({"ansible_ssh_common_args": "-o StrictHostKeyChecking=accept-new"}, "hosts.src-app.ansible_ssh_common_args"),
])
def test_a_host_variable_that_would_switch_off_the_host_key_check_is_refused(tmp_path, variables, field):
    def weaken(d):
        group = next(g for g in d["all"]["children"].values() if "src-app" in (g.get("hosts") or {}))
        group["hosts"]["src-app"] = {**(group["hosts"]["src-app"] or {}), **variables}
    found = problems(tmp_path, hosts_edit=weaken)
    assert any(f"hosts.yml: {field}:" in p for p in found), found
