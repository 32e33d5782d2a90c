"""The lab load's pure parts (pacing, what it writes, what it records, how the check judges) and
its driver against a stand-in front door on loopback (no lab, no database)."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from migrate.lab.errors import LabError
from migrate.lab.layout import LabPorts, lab_paths
from migrate.lab.load import (TOKEN, AckLog, Load, Pace, Write, ack_record, edit_token,
                              judge_edits, judge_punches, latest_edits, live_side, plan_write,
                              read_acked, run_stamp, unique_punches)
from migrate.lab.state import new_state, write_state

RUN = "20250101T120000.000000Z"


def punch_record(punch_id, employee=3, direction="IN"):
    return {"kind": "punch", "key": {"punch_id": punch_id},
            "values": {"employee_id": employee, "direction": direction}}


def edit_record(employee, slot, run=RUN):
    return {"kind": "edit", "key": {"employee_id": employee}, "values": {"notes": edit_token(run, slot)}}


def test_pace_spreads_slots_evenly_and_counts_them():
    pace = Pace(20, 3)
    assert pace.slots == 60 and pace.due(0) == 0 and pace.due(10) == 0.5
    assert list(pace.each())[-1] == 59
    assert Pace(0.5, 1).slots == 1 and Pace(5).slots is None
    with pytest.raises(LabError):
        Pace(0)


def test_every_fifth_write_is_an_edit_unless_one_is_in_flight():
    writes = [plan_write(slot, [7, 8, 9], run=RUN, edit_every=5) for slot in range(10)]
    assert [w.kind for w in writes] == ["punch"] * 4 + ["edit"] + ["punch"] * 4 + ["edit"]
    assert writes[0].path == "/presenze/punches" and writes[4].path == "/personale/notes"
    assert [w.body["employee_id"] for w in writes[:3]] == [7, 8, 9]
    assert writes[0].body["direction"] == "IN" and writes[3].body["direction"] == "OUT"
    assert writes[4].body == {"employee_id": 7, "notes": edit_token(RUN, 4)}
    assert writes[9].body["employee_id"] == 8
    assert plan_write(4, [7], run=RUN, edit_every=5, edit_free=False).kind == "punch"
    assert {plan_write(s, [7], run=RUN, edit_every=0).kind for s in range(10)} == {"punch"}


def test_edit_versions_grow_with_time_and_slot():
    early = run_stamp()
    time.sleep(0.001)
    late = run_stamp()
    assert edit_token(early, 99) < edit_token(late, 1) < edit_token(late, 2)
    assert len(early) == len(late)


def test_only_answers_that_name_the_row_are_recorded():
    punch = Write("punch", "presenze", "punches", {"employee_id": 3, "direction": "IN"}, 0)
    edit = Write("edit", "personale", "notes", {"employee_id": 3, "notes": edit_token(RUN, 4)}, 4)
    record = ack_record(punch, {"punch_id": 41}, upstream="u", run=RUN, at="t")
    assert record["key"] == {"punch_id": 41} and record["values"] == punch.body
    assert ack_record(punch, {}, upstream="u", run=RUN, at="t") is None
    assert ack_record(punch, {"punch_id": True}, upstream="u", run=RUN, at="t") is None
    assert ack_record(edit, {"employee_id": 3}, upstream="u", run=RUN, at="t")["values"] == {
        "notes": edit_token(RUN, 4)}
    assert ack_record(edit, {"employee_id": 4}, upstream="u", run=RUN, at="t") is None


def test_punches_are_found_once_missing_or_duplicated():
    acked = [punch_record(1), punch_record(2), punch_record(3), punch_record(4, direction="OUT"),
             punch_record(5)]
    rows = [(1, 3, "IN", "WEB", 1), (2, 3, "IN", "WEB", 2),  # 2: a second row, another id
            (4, 3, "IN", "WEB", 1),                           # 4: the id now holds another punch
            (5, 3, "IN", "WEB", 1), (5, 3, "IN", "WEB", 1)]   # 5: the same id twice (no PK)
    verdict = judge_punches(acked, rows)
    assert verdict.found == 1
    assert verdict.missing == ["punch_id=3", "punch_id=4"]
    assert verdict.duplicated == ["punch_id=2", "punch_id=5"]


def test_an_edit_counts_if_it_or_a_later_one_of_this_load_is_there():
    latest = latest_edits([edit_record(1, 4), edit_record(1, 9), edit_record(2, 14),
                           edit_record(3, 19), edit_record(4, 24), edit_record(5, 29)])
    assert latest[1]["values"]["notes"] == edit_token(RUN, 9)
    rows = [(1, edit_token(RUN, 9)), (2, edit_token(RUN, 34)),  # 2: overwritten by a later edit
            (3, edit_token(RUN, 4)),                              # 3: an older value: lost
            (4, "seeded notes"),                                   # 4: never written
            (6, None)]                                             # 5: row gone
    verdict = judge_edits(latest, rows)
    assert (verdict.found, verdict.superseded) == (2, 1)
    assert verdict.missing == ["employee_id=3", "employee_id=4", "employee_id=5"]
    assert judge_edits({7: edit_record(7, 4)}, [(7, edit_token(RUN, 4))] * 2).duplicated == [
        "employee_id=7"]


def test_a_punch_id_acked_twice_means_a_stale_file():
    with pytest.raises(LabError, match="--fresh"):
        unique_punches([punch_record(1), punch_record(1, employee=4)])


def test_acked_file_is_appended_and_a_torn_last_line_is_ignored(tmp_path):
    path = tmp_path / "load" / "acked.jsonl"
    log = AckLog(path)
    log.append(punch_record(1))
    log.close()
    log = AckLog(path)
    log.append(punch_record(2))
    log.close()
    assert [r["key"]["punch_id"] for r in read_acked(path)] == [1, 2]
    with open(path, "a") as handle:
        handle.write('{"kind": "pun')
    assert len(read_acked(path)) == 2
    path.write_text('{"kind"\n' + json.dumps(punch_record(1)) + "\n")
    with pytest.raises(LabError, match="line 1 is not JSON"):
        read_acked(path)
    path.write_text(json.dumps(punch_record(1)) + "\n" + json.dumps({"kind": "punch", "key": {}}) + "\n")
    with pytest.raises(LabError, match="line 2 is not an acknowledged write"):
        read_acked(path)
    AckLog(path, fresh=True).close()
    assert path.read_text() == "" and len(list(path.parent.glob("acked-*.jsonl"))) == 1
    with pytest.raises(LabError, match="run `migrate lab load"):
        read_acked(tmp_path / "none.jsonl")


def make_lab(root: Path, ports: LabPorts) -> Path:
    paths = lab_paths(root)
    root.mkdir(parents=True, exist_ok=True)
    write_state(paths, new_state(ports))
    return root


def write_front(root: Path, upstream: str) -> None:
    front = root / "hosts/front/root/etc/front"
    front.mkdir(parents=True, exist_ok=True)
    (front / "upstreams.conf").write_text(f"[upstreams]\npresenze = {upstream}\npersonale = {upstream}\n")


def write_app_config(root: Path, host: str, service: str, port: int) -> None:
    etc = root / "hosts" / host / "root/etc/hr"
    etc.mkdir(parents=True, exist_ok=True)
    (etc / f"{service}.conf").write_text(
        f"[database]\ndsn = host=127.0.0.1 port={port} dbname={service} user=migrate\n")


def test_live_side_follows_the_front_door_to_the_apps_database(tmp_path):
    ports = LabPorts()
    root = make_lab(tmp_path / "lab", ports)
    paths = lab_paths(root)
    write_front(root, f"http://127.0.0.1:{ports.http_tgt_app}")
    with pytest.raises(LabError, match="no usable database config"):
        live_side(paths, ports, "presenze")
    write_app_config(root, "tgt-app", "presenze", ports.pg_target)
    assert live_side(paths, ports, "presenze") == ("target", "presenze")
    write_app_config(root, "tgt-app", "presenze", ports.pg_source)  # misrendered: source DB
    assert live_side(paths, ports, "presenze") == ("source", "presenze")
    write_app_config(root, "tgt-app", "presenze", 5432)
    with pytest.raises(LabError, match="outside this lab"):
        live_side(paths, ports, "presenze")
    write_front(root, "http://127.0.0.1:9")
    with pytest.raises(LabError, match="not to an application host"):
        live_side(paths, ports, "presenze")


class FakeFront(BaseHTTPRequestHandler):
    """201 with a new punch_id, 200 for an edit; every third request 503 (maintenance)."""

    lock = threading.Lock()
    seen: ClassVar[list] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.lock:
            self.seen.append((time.monotonic(), self.path, body))
            n = len(self.seen)
        status, answer = (503, {"status": "maintenance"}) if n % 3 == 0 else (
            (201, {"punch_id": n}) if self.path.endswith("/punches") else (200, {"employee_id": body["employee_id"]}))
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Upstream", "http://127.0.0.1:1")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def front():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeFront)
    FakeFront.seen = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_load_paces_records_acks_and_counts_failures(tmp_path, front, monkeypatch):
    root = make_lab(tmp_path / "lab", LabPorts(http_front=front))
    monkeypatch.setattr(Load, "_employees", lambda self: [1, 2, 3])
    load = Load(root)
    began = time.monotonic()
    load.start(40, 0.5)
    load.wait()
    assert 0.45 < time.monotonic() - began < 2
    assert len(FakeFront.seen) == 20 and load.skipped == 0
    assert (load.acked, load.failed) == (14, 6) and load.failures == {"503": 6}
    gaps = [b[0] - a[0] for a, b in zip(FakeFront.seen, FakeFront.seen[1:])]
    assert max(gaps) < 0.1  # evenly paced at 25 ms, no burst-and-wait
    records = read_acked(root / "load" / "acked.jsonl")
    assert len(records) == load.acked == load.counts["punch"] + load.counts["edit"]
    assert all(r["upstream"] == "http://127.0.0.1:1" for r in records)
    assert all(r["values"]["notes"].startswith(TOKEN) for r in records if r["kind"] == "edit")


def test_load_stops_cleanly_when_asked(tmp_path, front, monkeypatch):
    root = make_lab(tmp_path / "lab", LabPorts(http_front=front))
    monkeypatch.setattr(Load, "_employees", lambda self: [1])
    load = Load(root, edit_every=0)
    load.start(50)
    time.sleep(0.3)
    load.stop()
    sent = len(FakeFront.seen)
    assert 5 <= sent <= 25 and load.acked + load.failed == sent
    time.sleep(0.1)
    assert len(FakeFront.seen) == sent


def test_refused_connections_are_failures_not_acks(tmp_path, monkeypatch):
    root = make_lab(tmp_path / "lab", LabPorts(http_front=9))
    monkeypatch.setattr(Load, "_employees", lambda self: [1])
    load = Load(root)
    load.start(20, 0.2)
    load.wait()
    assert load.acked == 0 and load.failures == {"refused": 4}
    assert read_acked(root / "load" / "acked.jsonl") == []
