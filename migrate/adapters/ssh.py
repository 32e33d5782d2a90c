"""SSH and SFTP through paramiko, with host keys always verified against the inventory's
known_hosts and a fresh connection per use (a reused one would skip that check)."""

from __future__ import annotations

import logging
import posixpath
import shlex
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import paramiko

from migrate.adapters import guard
from migrate.config import Host, Inventory
from migrate.errors import ConfigError, StepFailed

# paramiko's transport thread logs a failure it hands to us as an exception (a host that stops
# mid-banner, say) a second time, with its traceback, and with no handler Python prints that on
# stderr. Ours is the exception: records still reach any handler the caller sets up.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


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
    except paramiko.SSHException as exc:  # no banner in time, negotiation or authentication failed
        raise StepFailed(f"host {name}: no SSH session at {h.address}:{h.port} ({type(exc).__name__}: {exc})") from None
    except OSError as exc:
        raise StepFailed(f"host {name}: unreachable at {h.address}:{h.port} ({exc.strerror or exc})") from None
    try:
        yield client
    finally:
        client.close()


def offered_host_key(inv: Inventory, name: str) -> tuple[str, str, str]:
    """(key type, base64, fingerprint) of the key the host offers now: a fresh transport, no
    authentication, no reuse. Unreachable: StepFailed."""
    h = host(inv, name)
    guard.check(inv, h.address, f"host {name}")
    try:
        transport = paramiko.Transport((h.address, h.port))
        try:
            transport.start_client(timeout=10)
            key = transport.get_remote_server_key()
        finally:
            transport.close()
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise StepFailed(f"unreachable at {h.address}:{h.port} ({type(exc).__name__}: {exc})") from None
    return key.get_name(), key.get_base64(), key.fingerprint


def known_host_keys(inv: Inventory, name: str) -> dict[str, str]:
    """Key type -> base64 of the host's entries in the inventory's known_hosts."""
    h = host(inv, name)
    entry = f"[{h.address}]:{h.port}" if h.port != 22 else h.address
    known = paramiko.HostKeys(h.vars.get("known_hosts_file")).lookup(entry) or {}
    return {kind: key.get_base64() for kind, key in known.items()}


@contextmanager
def conversation(name: str, doing: str):
    """A host that fails after the connection was made (its sshd stopped, the link cut, no
    answer in time): StepFailed naming the host and the kind of failure, for the calls that do
    not retry (facts and checks). Callers that retry catch ERRORS themselves."""
    try:
        yield
    except (*ERRORS, EOFError) as exc:
        raise StepFailed(f"host {name}: {doing}: the connection failed ({type(exc).__name__})") from None


def run_timed(inv: Inventory, name: str, command: str) -> tuple[str, float]:
    """A command's output, and the local time halfway through it (to compare clocks)."""
    with connect(inv, name) as client, conversation(name, f"`{command.split()[0]}`"):
        before = time.time()
        _, out, err = client.exec_command(command, timeout=20)
        text = out.read().decode(errors="replace")
        middle = (before + time.time()) / 2
        if out.channel.recv_exit_status() != 0:
            raise StepFailed(f"host {name}: `{command.split()[0]}` failed:"
                             f" {err.read().decode(errors='replace').strip()[:200]}")
        return text, middle


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
    with connect(inv, name) as client, conversation(name, "reading a file"), client.open_sftp() as sftp:
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


def exists(inv: Inventory, name: str, path: str) -> bool:
    """Whether a path of the spec exists on a host."""
    with connect(inv, name) as client, conversation(name, "looking for a path"), client.open_sftp() as sftp:
        return stat(sftp, host_path(host(inv, name), path)) is not None


def list_files(inv: Inventory, name: str, path: str) -> list[tuple[str, int, int, int]]:
    """(relative path, size, mtime, permission bits) of every regular file under a spec path,
    listed by our program on the host (one round trip, however many files)."""
    _, files, _ = scan_program(inv, name, host_path(host(inv, name), path))
    return [(f["path"], f["size"], f["mtime_ns"] // 1_000_000_000, f["mode"]) for f in files]


# --- remote files and commands, for the document archive's staging, restore and checks ------

ERRORS = (OSError, paramiko.SSHException)  # what SFTP and SSH calls raise when the host or the link fails
HASH_GROUP = 500  # files per remote sha256sum call (its output must fit the channel window)


@contextmanager
def sftp_session(inv: Inventory, name: str):
    """(client, sftp): a connection and an SFTP session on it, for a few calls."""
    with connect(inv, name) as client, client.open_sftp() as sftp:
        yield client, sftp


def stat(sftp: paramiko.SFTPClient, path: str) -> paramiko.SFTPAttributes | None:
    try:
        return sftp.stat(path)
    except FileNotFoundError:
        return None


def mkdir(sftp: paramiko.SFTPClient, path: str, mode: int) -> None:
    sftp.mkdir(path, mode)


def remove(sftp: paramiko.SFTPClient, path: str) -> bool:
    """Remove a file; False when it is not there, or when the connection broke (a later walk
    finds what is left)."""
    try:
        sftp.remove(path)
        return True
    except OSError:  # FileNotFoundError among them
        return False


def rmdir(sftp: paramiko.SFTPClient, path: str) -> bool:
    """Remove a directory; False when it is not empty (someone else's files) or gone already."""
    try:
        sftp.rmdir(path)
        return True
    except OSError:
        return False


def open_read(sftp: paramiko.SFTPClient, path: str, size: int):
    """A remote file open for reading, its `size` bytes requested ahead (pipelined reads)."""
    f = sftp.open(path, "rb")
    try:
        f.prefetch(size)
    except BaseException:
        f.close()
        raise
    return f


def write_private(sftp: paramiko.SFTPClient, path: str, blocks) -> None:
    """Write blocks into a new file that only its owner may read (nobody reads a document while it
    is incomplete), pipelined."""
    with sftp.open(path, "wb") as f:
        sftp.chmod(path, 0o600)
        f.set_pipelined(True)
        for block in blocks:
            f.write(block)


def publish(sftp: paramiko.SFTPClient, temp: str, final: str, *, mode: int, mtime: int) -> None:
    """Give a written file its mode and mtime, then its final name. SSH_FXP_RENAME fails when the
    name exists: nothing is ever replaced."""
    sftp.chmod(temp, mode)
    sftp.utime(temp, (mtime, mtime))
    sftp.rename(temp, final)


def remote_sha256(client: paramiko.SSHClient, path: str) -> str | None:
    """SHA-256 of one file, computed on the host; None when the host could not compute it."""
    _, out, _ = client.exec_command(f"sha256sum -- {shlex.quote(path)}", timeout=600)
    line = out.read().decode(errors="replace")
    if out.channel.recv_exit_status() != 0 or not line:
        return None
    return line.split()[0]


def remote_hashes(client: paramiko.SSHClient, top: str, rels: list[str]) -> dict[str, str] | None:
    """SHA-256 of files under top, computed on the host (nothing crosses the network but hashes);
    None when the host could not compute them. NUL-separated both ways: any file name survives."""
    found = {}
    for i in range(0, len(rels), HASH_GROUP):
        stdin, out, _ = client.exec_command(f"cd -- {shlex.quote(top)} && xargs -0 -r sha256sum -z --", timeout=600)
        stdin.write(b"\0".join(r.encode() for r in rels[i:i + HASH_GROUP]) + b"\0")
        stdin.channel.shutdown_write()
        body = out.read()
        if out.channel.recv_exit_status() != 0:
            return None
        for record in filter(None, body.split(b"\0")):
            found[record[66:].decode()] = record[:64].decode()
    return found


# --- the archive's program on the host (migrate/adapters/hostside.py) ------------------------

HOST_PROGRAM = Path(__file__).with_name("hostside.py")  # run on the hosts, never imported here
BLOCK_BUFFER = 1024 * 1024
PROGRAM_TIMEOUT = 600  # seconds without a byte either way


def program_command(inv: Inventory, name: str, mode: str, top: str, *args: str) -> str:
    """The shell command that runs our host-side program there with the host's python3; the
    program travels inside the command, so nothing is installed on the host."""
    python = str(host(inv, name).vars.get("ansible_python_interpreter") or "python3")
    source = HOST_PROGRAM.read_text()
    return " ".join(shlex.quote(part) for part in (python, "-c", source, mode, top, *args))


class Program:
    """One run of the host-side program on one exec channel: a wide window, bytes both ways."""

    def __init__(self, client: paramiko.SSHClient, command: str):
        self.channel = client.get_transport().open_session(window_size=SFTP_WINDOW, max_packet_size=32768)
        self.channel.settimeout(PROGRAM_TIMEOUT)  # a host that stops answering is a dropped channel
        self.channel.exec_command(command)
        self.stdin = self.channel.makefile_stdin("wb", 0)  # unbuffered: nothing left to flush at close
        self.stdout = self.channel.makefile("rb", BLOCK_BUFFER)

    def send(self, data: bytes) -> None:
        self.stdin.write(data)

    def send_frame(self, kind: bytes, body: bytes) -> None:
        header = b"%s %d\n" % (kind, len(body))
        if len(body) < 65536:
            self.stdin.write(header + body)
        else:
            self.stdin.write(header)
            self.stdin.write(body)

    def end_input(self) -> None:
        self.channel.shutdown_write()

    def read_frame(self) -> tuple[bytes | None, bytes]:
        """The next frame; a channel that ends inside one (a cut header, a short body) is a
        dropped channel, which the callers' retry handles, not a parse error."""
        line = self.stdout.readline()
        if not line:
            return None, b""
        parts = line.split()
        if not line.endswith(b"\n") or len(parts) != 2 or not parts[1].isdigit():
            raise paramiko.SSHException("the channel ended inside a frame header")
        body = self.stdout.read(int(parts[1]))
        if len(body) != int(parts[1]):
            raise paramiko.SSHException("the channel ended inside a frame")
        return parts[0], body

    def read_line(self) -> bytes:
        return self.stdout.readline()

    def finish(self) -> tuple[int, str]:
        """Exit status and the last of its standard error (never file contents)."""
        status = self.channel.recv_exit_status()
        err = self.channel.makefile_stderr("rb").read()[-2000:].decode(errors="replace").strip()
        self.channel.close()
        return status, err




def call_program(inv: Inventory, name: str, mode: str, top: str, *args: str, work=None, client=None):
    """One short run of the host-side program: JSON in, JSON out."""
    import json

    command = program_command(inv, name, mode, top, *args)
    with ExitStack() as stack:
        if client is None:  # a connection of its own: its failure is this call's
            client = stack.enter_context(connect(inv, name))
            stack.enter_context(conversation(name, f"the archive program ({mode})"))
        run = Program(client, command)
        run.send(json.dumps(work if work is not None else []).encode())
        run.end_input()
        body = run.stdout.read()
        status, err = run.finish()
    if status != 0:
        raise StepFailed(f"host {name}: the archive program ({mode}) failed: {last_error(err)}")
    return json.loads(body)


def scan_program(inv: Inventory, name: str, top: str, *, with_hash: bool = False, client=None):
    """(who runs it, files, directories) under top, as the host-side program lists them."""
    import json

    command = program_command(inv, name, "scan", top, *(["hash"] if with_hash else []))
    with ExitStack() as stack:
        if client is None:  # a connection of its own: its failure is this call's
            client = stack.enter_context(connect(inv, name))
            stack.enter_context(conversation(name, "listing files"))
        run = Program(client, command)
        run.end_input()
        lines = run.stdout.read().splitlines()
        status, err = run.finish()
    if status != 0 or not lines:
        raise StepFailed(f"host {name}: listing {top} failed: {last_error(err)}")
    found = [json.loads(line) for line in lines[1:]]
    return json.loads(lines[0]), [f for f in found if "path" in f], [d["dir"] for d in found if "dir" in d]


def last_error(err: str) -> str:
    """The kind of a failure from its last line (a Python error's class, never its message:
    that may name a file, and file names can name people)."""
    return (err.splitlines() or ["no message"])[-1].split(":")[0][:100]
