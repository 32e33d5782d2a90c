"""The evidence pack of a real lab wave: written, checked offline by `migrate evidence verify`,
refused when any kind of file in it has one byte flipped, and free of personal values and of the
lab's secrets; the next pack names the previous one."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import psycopg
import pytest

from tests.integration import lab_support as lab

pytestmark = pytest.mark.integration

APPROVE = ("--approve", "tester")


@pytest.fixture(scope="module")
def pack(test_lab, tmp_path_factory):
    test_lab.reset()
    done = lab.migrate("run", "wave-1", "--yes", *APPROVE, timeout=900)
    assert done.returncode == 0, done.stderr
    built = lab.migrate("--json", "evidence", "wave-1")
    assert built.returncode == 0, built.stderr
    info = json.loads(built.stdout)
    yield info
    lab.migrate("rollback", "wave-1", "--yes", timeout=600)


def verify(path, *extra) -> tuple[int, str]:
    done = lab.migrate("evidence", "verify", str(path), *extra)
    return done.returncode, done.stdout + done.stderr


def test_the_pack_is_complete_and_verifies_offline(pack):
    top = Path(pack["path"])
    assert pack["signed"] and Path(pack["tar"]).is_file()
    for name in ("manifest.json", "journal.jsonl", "report.html", "SHA256SUMS", "keys/signing.pub.pem",
                 "results/reconciliation.json", "results/transfer.json", "results/legal_evidence.json",
                 "attestations/verification.dsse.json", "attestations/cutover.dsse.json"):
        assert (top / name).is_file(), name
    manifest = json.loads((top / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["gate"] == {**manifest["gate"], "decision": "go",
                                                                 "approver": "tester"}
    assert {s["service"] for s in manifest["services"]} == {"personnel", "attendance"}
    assert all(s["completeness"] == "complete" and s["go_live"] for s in manifest["services"])
    assert manifest["freeze"]["seconds"] > 0 and any(p["in_freeze"] for p in manifest["phases"])
    units = json.loads((top / "results/reconciliation.json").read_text())["units"]
    assert units and all(u["holds"] and u["source"] == u["target"] for u in units)
    packs = json.loads((top / "results/transfer.json").read_text())["document_packs"]
    assert packs and all(len(p["sha256"]) == 64 for p in packs)
    for where in (top, pack["tar"]):
        code, said = verify(where)
        assert code == 0 and "intact" in said and "signatures verified" in said, said


def test_the_lab_wave_page_renders_in_a_real_browser_and_prints_on_a4(pack):
    from tests.integration.test_evidence_browser import A4_POINTS, check_in_browser
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian's chromium is not installed (scripts/bootstrap.sh installs it)")
    manifest = json.loads((Path(pack["path"]) / "manifest.json").read_text())
    seen = check_in_browser(Path(pack["path"]) / "report.html", name="lab-wave")
    assert seen["console"] == [] and seen["scripts"] == 0
    assert seen["timeline_svgs"] == 1 and seen["freeze_bands"] == 1
    assert seen["bars"] == sum(1 for p in manifest["phases"] if p["started"] and p["ended"]) > 10
    assert seen["tables"] >= 10 and seen["screenshot_bytes"] > 10_000
    assert seen["page_size"] == A4_POINTS and seen["pages"] >= 2
    first_page = " ".join(seen["print_page_one_text"].split())
    assert "Riepilogo / Summary" in first_page and "NON FIRMATO" not in first_page, "the lab pack is signed"


KINDS = ["manifest.json", "journal.jsonl", "report.html", "SHA256SUMS", "keys/signing.pub.pem",
         "results/reconciliation.json", "results/verification.json", "attestations/transfer.dsse.json"]


@pytest.mark.parametrize("name", KINDS)
def test_one_flipped_byte_in_any_kind_of_file_is_caught_naming_it(pack, tmp_path, name):
    copy = tmp_path / "pack"
    shutil.copytree(pack["path"], copy)
    body = bytearray((copy / name).read_bytes())
    body[len(body) // 2] ^= 0x01
    (copy / name).write_bytes(bytes(body))
    code, said = verify(copy)
    assert code == 1, said
    first = said.strip().splitlines()[-1]
    # SHA256SUMS itself altered: the file whose line changed is named, against SHA256SUMS.
    assert name in first or (name == "SHA256SUMS" and "SHA256SUMS" in first), first


def test_a_file_rewritten_with_its_sum_updated_is_caught_by_the_signature(pack, tmp_path):
    import hashlib
    copy = tmp_path / "pack"
    shutil.copytree(pack["path"], copy)
    target = copy / "results/reconciliation.json"
    data = json.loads(target.read_text())
    data["units"][0]["source"] += 1
    target.write_text(json.dumps(data))
    sums = [line for line in (copy / "SHA256SUMS").read_text().splitlines()]
    sums = [f"{hashlib.sha256(target.read_bytes()).hexdigest()}  results/reconciliation.json"
            if line.endswith("  results/reconciliation.json") else line for line in sums]
    (copy / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    code, said = verify(copy)
    assert code == 1 and "results/reconciliation.json" in said, said


def test_no_personal_value_and_no_secret_anywhere_in_the_pack(pack):
    with psycopg.connect(lab.dsn("source", "personale")) as conn:
        people = conn.execute("SELECT surname, given_name, tax_code, coalesce(iban, '') FROM employee").fetchall()
    values = {v for person in people for v in person if len(v) >= 6} | {f"{s} {g}" for s, g, _, _ in people}
    secrets = [line.rsplit(":", 1)[1] for line in (lab.LAB_DIR / "secrets" / "pgpass").read_text().splitlines() if line]
    ini = (lab.LAB_DIR / "secrets" / "s3.ini").read_text()
    secrets += [line.split("=", 1)[1].strip() for line in ini.splitlines() if line.startswith("aws_secret_access_key")]
    private_key = (lab.LAB_DIR / "secrets" / "evidence-signing.pem").read_text().splitlines()[1]
    with tarfile.open(pack["tar"]) as tar:
        text = "".join(tar.extractfile(m).read().decode("utf-8", "replace") for m in tar.getmembers() if m.isfile())
    leaked = sorted(v for v in values if v in text)
    assert not leaked, f"{len(leaked)} personal value(s) in the pack"
    assert not [s for s in secrets if s in text] and private_key not in text
    assert any(len(t) == 16 for _, _, t, _ in people), "the seeded tax codes were looked for"


def test_the_next_pack_names_the_previous_one(pack, tmp_path):
    again = lab.migrate("--json", "evidence", "wave-1", "--out", str(tmp_path / "second"))
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)
    manifest = json.loads((Path(second["path"]) / "manifest.json").read_text())
    assert manifest["previous_pack"]["sha256"] == pack["sha256"]
    assert verify(second["path"], "--previous", pack["tar"])[0] == 0
    code, said = verify(second["path"], "--previous", second["tar"])
    assert code == 1 and "previous_pack" in said


def test_finalize_ends_the_way_back_deletes_the_staging_and_forbids_rollback(pack):
    done = lab.migrate("--json", "finalize", "wave-1", "--yes")
    assert done.returncode == 0, done.stderr
    assert "IMPOSSIBLE" in done.stderr, "the operator is told loudly before anything happens"
    for db in lab.DATABASES:
        with psycopg.connect(lab.dsn("source", db)) as conn:
            assert conn.execute("SELECT count(*) FROM pg_subscription").fetchone()[0] == 0
        with psycopg.connect(lab.dsn("target", db)) as conn:
            assert conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone()[0] == 0
            assert conn.execute("SHOW default_transaction_read_only").fetchone()[0] == "off", "the target stays live"
    assert [k for k, _ in lab.bucket_versions() if k.startswith("waves/")] == []
    status = json.loads(lab.migrate("--json", "status", "wave-1").stdout)["waves"]["wave-1"]
    assert status["status"] == "final"
    back = lab.migrate("rollback", "wave-1", "--yes")
    assert back.returncode == 1 and "impossible" in back.stderr
    last = json.loads(done.stdout.strip().splitlines()[-1])["message"].rsplit(" ", 1)[1]  # after the events
    code, said = verify(last)
    assert code == 0, said
    with tarfile.open(last) as tar:
        manifest = json.loads(tar.extractfile(next(m for m in tar.getmembers()
                                                   if m.name.endswith("/manifest.json"))).read())
    assert manifest["status"] == "final"
