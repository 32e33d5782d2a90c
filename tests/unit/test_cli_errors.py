"""How the command line ends on an error: one line on stderr, the exit code, and with --json one
JSON object on stdout (#13 item 7). No lab: the verbs are swapped for ones that fail at once."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from migrate import cli, commands
from migrate.errors import LockHeld, PreflightFailed, StepFailed
from migrate.model.result import WaveOutcome

LAB = Path(__file__).resolve().parents[2] / "inventories" / "lab"


@pytest.fixture
def inv(tmp_path) -> Path:
    copy = tmp_path / "inv"
    shutil.copytree(LAB, copy, ignore=shutil.ignore_patterns(".state"))
    return copy


def migrate(inv: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "migrate.cli", "-i", str(inv), *args],
                          capture_output=True, text=True, timeout=120)


def last_object(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def main(monkeypatch, capsys, *args: str) -> tuple[int, dict | None, str]:
    """`migrate ARGS` in this process: (exit code, the last JSON object on stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["migrate", *args])
    with pytest.raises(SystemExit) as ended:
        cli.main()
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    return ended.value.code, json.loads(lines[-1]) if lines else None, captured.err


@pytest.mark.parametrize("args, code, says", [
    (("--json", "plan", "wave-9"), 2, "no wave 'wave-9'"),
    (("plan", "wave-9", "--json"), 2, "no wave 'wave-9'"),
    (("--json", "run", "wave-1", "--approve", " "), 2, "--approve needs the name"),
    (("--json", "rollback"), 2, "Missing argument 'WAVE'"),
])
def test_json_errors_are_one_object_on_stdout(inv, args, code, says):
    proc = migrate(inv, *args)
    assert proc.returncode == code, proc.stderr
    assert len(proc.stdout.strip().splitlines()) == 1, proc.stdout
    found = last_object(proc.stdout)
    assert found["exit"] == code and says in found["error"]
    assert says in proc.stderr and "Traceback" not in proc.stderr


def test_without_json_an_error_prints_nothing_on_stdout(inv):
    proc = migrate(inv, "plan", "wave-9")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [f"error: {inv / 'migrate.yml'}: waves: no wave 'wave-9' (known: wave-1)"]


def test_a_bad_spec_with_json_lists_its_problems(inv):
    (inv / "migrate.yml").write_text((inv / "migrate.yml").read_text().replace("timezone: Europe/Rome",
                                                                                  "timezone: Mars/Olympus"))
    proc = migrate(inv, "--json", "preflight", "wave-1")
    assert proc.returncode == 2
    found = last_object(proc.stdout)
    assert found["exit"] == 2 and "Mars/Olympus" in found["error"]


def test_a_failed_run_prints_its_outcome_and_the_error(inv, monkeypatch, capsys):
    outcome = WaveOutcome("wave-1", "failed", "run r1: failed", run_id="r1", succeeded=("personnel",),
                          failed=("attendance",))

    def failing(*args, **kwargs):
        exc = StepFailed("step attendance/copy failed: boom")
        exc.outcome = outcome
        raise exc
    monkeypatch.setattr(commands, "run", failing)
    code, found, stderr = main(monkeypatch, capsys, "-i", str(inv), "--json", "run", "wave-1", "--yes")
    assert code == 1
    assert found["result"] == "failed" and found["run_id"] == "r1" and found["exit"] == 1
    assert found["succeeded"] == ["personnel"] and found["failed"] == ["attendance"]
    assert found["error"] == "step attendance/copy failed: boom"
    assert stderr.strip().splitlines() == ["error: step attendance/copy failed: boom"]


@pytest.mark.parametrize("raised, code, says", [
    (PreflightFailed("preflight: ssh src-app: unreachable"), 1, "preflight: ssh src-app: unreachable"),
    (LockHeld("wave wave-1 is locked by pid 1"), 3, "locked by pid 1"),
    (RuntimeError("a bug"), 1, "internal error: RuntimeError: a bug"),
    (KeyboardInterrupt(), 1, "aborted"),  # click turns it into Abort
])
def test_every_kind_of_error_with_json_is_one_object(inv, monkeypatch, capsys, raised, code, says):
    def failing(*args, **kwargs):
        raise raised
    monkeypatch.setattr(commands, "run", failing)
    exit_code, found, stderr = main(monkeypatch, capsys, "-i", str(inv), "--json", "run", "wave-1", "--yes")
    assert exit_code == code and found["exit"] == code and says in found["error"]
    assert says in stderr and "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1


def test_a_failed_preflight_with_json_is_one_object_holding_the_findings(inv, monkeypatch, capsys):
    from migrate.preflight import Finding
    bad = Finding("ssh reachable", "src-app", "fail", "cannot connect: NoValidConnectionsError")
    monkeypatch.setattr(commands, "preflight", lambda *a, **k: [bad])
    code, found, _ = main(monkeypatch, capsys, "-i", str(inv), "--json", "preflight", "wave-1")
    out = capsys.readouterr().out
    assert code == 1 and out == ""
    assert found["exit"] == 1 and found["wave"] == "wave-1" and "1 check(s) failed" in found["error"]
    assert found["findings"] == [bad.to_json()]


def test_a_failed_verification_with_json_is_one_object_holding_the_report(inv, monkeypatch, capsys):
    report = {"status": "failed", "summary": {"differences": 2}, "differences": [{"table": "t"}] * 2}
    monkeypatch.setattr(commands, "verify", lambda *a, **k: report)
    code, found, _ = main(monkeypatch, capsys, "-i", str(inv), "--json", "verify", "wave-1")
    assert code == 1 and found["status"] == "failed" and found["differences"] == report["differences"]
    assert found["exit"] == 1 and found["error"].startswith("2 difference(s)")
