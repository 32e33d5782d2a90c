"""A host that fails after its connection was made is a failed check naming the host and the
kind of failure, never an internal error (#13 item 7). No lab: the SSH client is a fake."""

import io
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import paramiko
import pytest

from migrate import config
from migrate.adapters import ssh
from migrate.errors import StepFailed
from migrate.preflight import run as preflight_run

LAB = Path(__file__).resolve().parents[2] / "inventories" / "lab"


class DeadClient:
    """What paramiko does once the host went away after the handshake."""

    def __init__(self, error: Exception):
        self.error = error

    def exec_command(self, *args, **kwargs):
        raise self.error

    def open_sftp(self):
        raise self.error

    def get_transport(self):
        raise self.error


@pytest.fixture
def inv():
    return config.load(LAB)


def dead_host(monkeypatch, error: Exception) -> None:
    @contextmanager
    def connect(inv, name):
        yield DeadClient(error)
    monkeypatch.setattr(ssh, "connect", connect)


@pytest.mark.parametrize("error", [paramiko.SSHException("SSH session not active"),
                                   paramiko.ChannelException(2, "Connect failed"), EOFError(),
                                   socket.timeout("timed out"), ConnectionResetError(104, "reset")])
def test_every_kind_of_host_failure_is_a_step_failure_naming_host_and_kind(inv, monkeypatch, error):
    dead_host(monkeypatch, error)
    for call in (lambda: ssh.run_timed(inv, "src-app", "date +%s"), lambda: ssh.read_text(inv, "src-app", "/etc/x"),
                 lambda: ssh.exists(inv, "src-app", "/etc/x"), lambda: ssh.scan_program(inv, "src-app", "/srv"),
                 lambda: ssh.call_program(inv, "src-app", "restore", "/srv")):
        with pytest.raises(StepFailed, match=rf"^host src-app: .*\({type(error).__name__}\)$"):
            call()


def test_a_host_gone_after_its_key_was_checked_is_a_failed_finding(inv, monkeypatch):
    monkeypatch.setattr(preflight_run, "probe_host_key",
                        lambda inv, name: preflight_run.judge_host_key(name, ("ssh-ed25519", "AAA", "fp"),
                                                                      {"ssh-ed25519": "AAA"}))
    dead_host(monkeypatch, paramiko.SSHException("SSH session not active"))
    found = preflight_run._guarded("ssh", "src-app", lambda: preflight_run.probe_host(inv, "src-app", 1))
    failed = [f for f in found if f.status == "fail"]
    assert [(f.check, f.subject) for f in failed] == [("ssh", "src-app")]
    assert failed[0].reason == "host src-app: `date`: the connection failed (SSHException)"


def test_a_caller_that_retries_still_sees_the_raw_error(inv, monkeypatch):
    """The archive's packers reconnect on ssh.ERRORS: with their own client, nothing is converted."""
    with pytest.raises(paramiko.SSHException):
        ssh.scan_program(inv, "src-app", "/srv", client=DeadClient(paramiko.SSHException("gone")))


@pytest.mark.parametrize("imported, printed", [("", True), ("import migrate.adapters.ssh", False)])
def test_paramikos_own_traceback_of_a_failure_it_raises_stays_off_stderr(imported, printed):
    """A process of its own: pytest's log capture would hide what Python prints with no handler."""
    code = f"{imported}\nimport logging; logging.getLogger('paramiko.transport').error('Traceback (most recent call last):')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and ("Traceback" in proc.stderr) == printed, proc.stderr


@pytest.mark.parametrize("stream", [b"D 10\nabc", b"D 1", b"\x89PNG garbage\n"])
def test_a_channel_that_ends_inside_a_frame_is_a_dropped_channel(stream):
    """Not a ValueError from parsing: the packers retry what ssh.ERRORS names."""
    run = object.__new__(ssh.Program)
    run.stdout = io.BytesIO(stream)
    with pytest.raises(ssh.ERRORS):
        run.read_frame()


def test_whole_frames_are_read_and_the_end_is_none():
    run = object.__new__(ssh.Program)
    run.stdout = io.BytesIO(b"D 3\nabcE 2\n{}")
    assert [run.read_frame() for _ in range(3)] == [(b"D", b"abc"), (b"E", b"{}"), (None, b"")]
