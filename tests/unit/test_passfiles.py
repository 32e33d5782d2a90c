"""A missing passfile, or one that is a directory, is bad configuration the verbs that connect
refuse before any connection: exit 2, one line naming the spec file and the field (#13 item 4).
Loading the spec does not look for them: the lab's spec names files `migrate lab up` creates."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from migrate import config
from migrate.adapters import db
from migrate.engine.journal import Journal
from migrate.errors import ConfigError
from migrate.model.layout import journal_path
from migrate.model.plan import WavePlan
from tests.unit.lab_copy import lab_inventory

LAB = Path(__file__).resolve().parents[2] / "inventories" / "lab"


def inventory(tmp_path: Path, server: str, field: str, value: Path | None = None) -> Path:
    """The lab inventory with every passfile a real file, but `server`'s `field` set to `value`."""
    return lab_inventory(tmp_path, lambda spec: spec["db_servers"][server].update({field: str(value)}))


def broken(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / "secrets" / "pgpass"
    if kind == "directory":
        path.mkdir(parents=True)
    return path


def test_the_lab_spec_loads_before_the_lab_exists():
    inv = config.load(LAB)
    assert inv.spec.db_servers["cloud-pg"].passfile


@pytest.mark.parametrize("field", ["passfile", "replication_passfile"])
@pytest.mark.parametrize("kind, says", [("missing", "not found"), ("directory", "is a directory, not a libpq passfile")])
def test_the_wave_verbs_refuse_before_any_connection(tmp_path, field, kind, says):
    path = broken(tmp_path, kind)
    inv = inventory(tmp_path, "onprem-pg", field, path)
    loaded = config.load(inv)  # loading does not look
    with pytest.raises(ConfigError) as refused:
        db.check_passfiles(loaded, "wave-1")
    line = f"{inv / 'migrate.yml'}: db_servers.onprem-pg.{field}: {path} {says}"
    assert str(refused.value) == line and refused.value.exit_code == 2
    verbs = [["run", "wave-1", "--yes"], ["sync", "wave-1", "--yes"], ["plan", "wave-1"],
             ["run", "wave-1", "--dry-run"], ["preflight", "wave-1"]]
    for verb in verbs if (field, kind) == ("passfile", "directory") else verbs[-1:]:  # each verb once is enough
        proc = subprocess.run([sys.executable, "-m", "migrate.cli", "-i", str(inv), *verb],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, (verb, proc.stderr)
        assert proc.stderr.strip().splitlines() == [f"error: {line}"], verb
    journal = journal_path(inv / ".state")
    assert not journal.exists() or [r.kind for r in Journal(journal).records()] == [], "nothing was looked at"


def test_rollback_refuses_before_any_connection(tmp_path):
    path = broken(tmp_path, "directory")
    inv = inventory(tmp_path, "cloud-pg", "passfile", path)
    j = Journal(journal_path(inv / ".state"))
    j.append("wave-1-x", "wave-1", "run_started", {"operator": "t", "plan": WavePlan("wave-1", "wave-1-x", ()).to_json()})
    proc = subprocess.run([sys.executable, "-m", "migrate.cli", "-i", str(inv), "rollback", "wave-1", "--yes"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: {inv / 'migrate.yml'}: db_servers.cloud-pg.passfile: {path} is a directory, not a libpq passfile"]
    assert [r.kind for r in j.records()] == ["run_started"], "no rollback began"


def test_a_replication_passfile_on_a_remote_servers_host_is_not_looked_for_here(tmp_path):
    inv = inventory(tmp_path, "onprem-pg", "replication_passfile", Path("/etc/postgresql/replication.pgpass"))
    spec = yaml.safe_load((inv / "migrate.yml").read_text())
    spec["db_servers"]["onprem-pg"]["host"] = "10.1.2.3"
    spec["allowed_networks"] = [*spec.get("allowed_networks", []), "10.1.2.0/24"]
    (inv / "migrate.yml").write_text(yaml.safe_dump(spec))
    db.check_passfiles(config.load(inv), "wave-1")


def test_two_problems_are_still_one_line(tmp_path):
    inv = inventory(tmp_path, "onprem-pg", "passfile", tmp_path / "nope")
    spec = yaml.safe_load((inv / "migrate.yml").read_text())
    spec["db_servers"]["cloud-pg"]["passfile"] = str(tmp_path / "nope")
    (inv / "migrate.yml").write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError) as refused:
        db.check_passfiles(config.load(inv), "wave-1")
    assert str(refused.value).endswith("not found (and 1 more)") and refused.value.problems == [str(refused.value)]
