"""SSH and SFTP through paramiko, with host keys always verified against the inventory's
known_hosts and a fresh connection per use (a reused one would skip that check)."""

from __future__ import annotations

import posixpath
from contextlib import ExitStack, contextmanager
from pathlib import Path

import paramiko

from migrate.adapters import guard
from migrate.config import Host, Inventory
from migrate.errors import ConfigError, StepFailed


def host(inv: Inventory, name: str) -> Host:
    try:
        return inv.hosts[name]
    except KeyError:
        raise ConfigError(f"host '{name}' is not in the inventory") from None


def host_path(h: Host, path: str) -> str:
    """Where an absolute path of the spec lives on the host (the lab's hosts have a root)."""
    root = str(h.vars.get("host_root", "")).rstrip("/")
    return posixpath.normpath(root + "/" + path.lstrip("/")) if root else path


@contextmanager
def connect(inv: Inventory, name: str):
    h = host(inv, name)
    guard.check(inv, h.address, f"host {name}")
    known_hosts = h.vars.get("known_hosts_file")
    key_file = h.vars.get("ansible_ssh_private_key_file")
    if not known_hosts or not Path(known_hosts).is_file():
        raise ConfigError(f"hosts.{name}.known_hosts_file: {known_hosts} not found (is the lab up?)")
    client = paramiko.SSHClient()
    client.load_host_keys(known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(h.address, port=h.port, username=h.user, key_filename=key_file,
                       look_for_keys=False, allow_agent=False, timeout=10, banner_timeout=10, auth_timeout=10)
    except paramiko.BadHostKeyException as exc:
        raise StepFailed(f"host {name}: host key changed (got {exc.key.get_name()} "
                         f"{exc.key.fingerprint}); refusing to connect") from None
    except paramiko.SSHException as exc:
        raise StepFailed(f"host {name}: SSH refused ({exc})") from None
    except OSError as exc:
        raise StepFailed(f"host {name}: unreachable at {h.address}:{h.port} ({exc.strerror or exc})") from None
    try:
        yield client
    finally:
        client.close()


def walk(sftp: paramiko.SFTPClient, top: str):
    """(relative path, attributes) of every regular file under top, sorted."""
    stack = [""]
    while stack:
        rel = stack.pop()
        for entry in sorted(sftp.listdir_attr(posixpath.join(top, rel)), key=lambda e: e.filename):
            child = posixpath.join(rel, entry.filename)
            if entry.st_mode is not None and (entry.st_mode & 0o170000) == 0o040000:
                stack.append(child)
            elif entry.st_mode is not None and (entry.st_mode & 0o170000) == 0o100000:
                yield child, entry


def read_text(inv: Inventory, name: str, path: str) -> str | None:
    """A small text file on a host (None when it does not exist)."""
    with connect(inv, name) as client, client.open_sftp() as sftp:
        try:
            with sftp.open(host_path(host(inv, name), path)) as f:
                return f.read().decode("utf-8")
        except FileNotFoundError:
            return None


SFTP_WINDOW = 16 * 1024 * 1024


class BulkSession:
    """One SSH connection and a wide-window SFTP session on it, for one thread moving many files
    (the default window stalls a fast link waiting for window adjustments)."""

    def __init__(self, inv: Inventory, name: str):
        self._stack = ExitStack()
        self.client = self._stack.enter_context(connect(inv, name))
        self.sftp = paramiko.SFTPClient.from_transport(self.client.get_transport(), window_size=SFTP_WINDOW,
                                                       max_packet_size=32768)
        self._stack.callback(self.sftp.close)

    def close(self) -> None:
        self._stack.close()
