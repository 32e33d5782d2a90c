"""The evidence pack's offline checks on their own: the journal export's chain (the run's records
in full, the others by their hashes) and the DSSE signatures."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from migrate.engine.journal import Journal
from migrate.evidence import collect, sign
from migrate.evidence.verify import PackInvalid, _journal


@pytest.fixture
def exported(tmp_path):
    j = Journal(tmp_path / "journal.sqlite")
    for n in range(3):
        j.append("run-a", "wave-1", "step_started", {"n": n}, step="s")
        j.append("run-b", "wave-2", "step_started", {"n": n}, step="t")
    j.append("run-b", "wave-2", "step_done", {}, step="t")
    lines, facts = collect._journal_lines(j, "run-a")
    return tmp_path, lines, facts


def write(top, lines):
    (top / "journal.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_the_run_in_full_the_others_by_hash_and_the_chain_checks(exported):
    top, lines, facts = exported
    assert [bool(line.get("elided")) for line in lines] == [False, True, False, True, False], "ends at the run's last"
    assert facts["records"] == 3 and facts["last_seq"] == 5
    write(top, lines)
    _journal(top, {"run_id": "run-a", "journal": facts})


@pytest.mark.parametrize("tamper", ["body", "cut", "swap", "other run"])
def test_an_altered_cut_or_reordered_journal_is_refused(exported, tamper):
    top, lines, facts = exported
    if tamper == "body":
        lines[2]["body"] = lines[2]["body"].replace("1", "7")
    elif tamper == "cut":
        lines = lines[:-1]
    elif tamper == "swap":
        lines[1], lines[2] = lines[2], lines[1]
    else:
        facts = {**facts}
    write(top, lines)
    manifest = {"run_id": "run-a" if tamper != "other run" else "run-b", "journal": facts}
    with pytest.raises(PackInvalid, match="journal.jsonl"):
        _journal(top, manifest)


def test_an_envelope_opens_only_with_its_key_and_untouched():
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    body = sign.statement({"results/x.json": "0" * 64}, "verification", {"wave": "w", "run_id": "r"})
    envelope = sign.envelope(key, body)
    statement = sign.open_envelope(envelope, sign.public_pem(key))
    assert statement["_type"] == "https://in-toto.io/Statement/v1" and statement["predicate"]["phase"] == "verification"
    with pytest.raises(ValueError, match="another key"):
        sign.open_envelope(envelope, sign.public_pem(other))
    forged = {**envelope, "payload": sign.base64.b64encode(body.replace(b"verification", b"transfer_____")).decode()}
    with pytest.raises(ValueError, match="does not verify"):
        sign.open_envelope(forged, sign.public_pem(key))
