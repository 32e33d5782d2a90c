"""The document archive's program on the hosts: run there with the host's own python3 (the one
Ansible already needs), standard library only, over one SSH exec channel per worker.

It is sent whole as the command (`python3 -c <this file> MODE TOP ...`), so nothing is installed
and nothing stays behind on the host. It never opens a connection; it reads its work on stdin and
answers on stdout, in frames: one ASCII line `K LENGTH\\n`, then LENGTH bytes.

Modes:
- scan TOP [hash]: every regular file and directory under TOP, one JSON line each (path, size,
  mtime in ns, mode, owner and group names; the SHA-256 too with `hash`), after a first line
  saying who runs it.
- hash TOP: stdin a JSON list of relative paths; out a JSON object path -> SHA-256 (null: gone).
- pack TOP: stdin a JSON list of relative paths; out frames D (the bytes of one pack, a whole
  POSIX tar archive), X (a file that vanished or changed while read: left out of the index),
  E (the pack's index: per file its offset, size, mtime, mode, names and SHA-256, computed here
  while reading).
- restore TOP TAG: stdin frames P (a pack's wanted files), D (the pack's bytes), C (the SHA-256
  the pack must have); out one R line per pack. Each wanted file is written to a hidden
  temporary name (.migrate-TAG-...), 0600; only when the whole pack has the given SHA-256 and
  every file its own does each get its mode, owner, mtime and, by a hard link that never
  replaces anything, its final name.
- remove TOP: stdin JSON {files: [{path, size, mtime_ns}], dirs: [...]}: a file is removed only
  while it still has that size and mtime; a directory only when empty.
- exists TOP: stdin JSON list of relative paths; out those that exist.
- mkdirs TOP: stdin JSON list of relative directories, made (0750) in that order.
- clean TOP PREFIX: stdin JSON list of relative directories (empty: the whole tree); remove
  every file there whose name starts with PREFIX (a killed restore's temporaries).
- purge TOP TRASH: remove the trash directory and what it holds (finalize: no way back).
- trash TOP TRASH / untrash TOP TRASH: stdin JSON list of {path, sha256}: move each file with that
  SHA-256 into TRASH (a directory under TOP) and back.
"""

import errno
import grp
import hashlib
import json
import os
import pwd
import sys
import tarfile

BLOCK = 1024 * 1024
TRASH_PREFIX = ".migrate-trash-"


def under(top, rel):
    """top/rel, refusing a path that would leave top (absolute, or with a `..` part): the work
    comes from a manifest, and a manifest is never trusted to name a place."""
    parts = rel.split("/")
    if not rel or rel.startswith("/") or ".." in parts or "" in parts:
        raise ValueError("a path outside the archive was refused")
    return os.path.join(top, rel)


def frame(out, kind, body):
    out.write(b"%s %d\n" % (kind, len(body)))
    out.write(body)


def read_frame(stream):
    line = stream.readline()
    if not line:
        return None, b""
    kind, length = line.split()
    return kind, stream.read(int(length))


NAMES = {}  # (uid, gid) -> (owner name, group name), looked up once each


def names(st, cache=NAMES):
    key = (st.st_uid, st.st_gid)
    if key not in cache:
        try:
            user = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            user = str(st.st_uid)
        try:
            group = grp.getgrgid(st.st_gid).gr_name
        except KeyError:
            group = str(st.st_gid)
        cache[key] = (user, group)
    return cache[key]


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def whoami():
    user = pwd.getpwuid(os.geteuid()).pw_name
    groups = sorted({grp.getgrgid(g).gr_name for g in os.getgroups() + [os.getegid()]})
    return {"user": user, "groups": groups, "root": os.geteuid() == 0}


def entry(top, rel, st, with_hash):
    user, group = names(st)
    found = {"path": rel, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "mode": st.st_mode & 0o7777,
             "uname": user, "gname": group}
    if with_hash:
        try:
            found["sha256"] = sha256_of(under(top, rel))
        except OSError:
            found["sha256"] = None
    return found


def scan(top, with_hash, out):
    print(json.dumps(whoami()), file=out)
    if os.path.isdir(top):
        walk(top, "", with_hash, out)


def walk(top, rel_dir, with_hash, out):
    """Depth first, in name order, one stat per entry (scandir's own)."""
    try:
        entries = sorted(os.scandir(os.path.join(top, rel_dir) if rel_dir else top), key=lambda e: e.name)
    except OSError:
        return
    for e in entries:
        rel = rel_dir + "/" + e.name if rel_dir else e.name
        try:
            st = e.stat(follow_symlinks=False)
        except OSError:
            continue
        kind = st.st_mode & 0o170000
        if kind == 0o040000 and not (not rel_dir and e.name.startswith(TRASH_PREFIX)):
            out.write(json.dumps({"dir": rel}) + "\n")
            walk(top, rel, with_hash, out)
        elif kind == 0o100000:
            out.write(json.dumps(entry(top, rel, st, with_hash)) + "\n")


def exists(top, rels):
    """Which of these relative paths exist (as anything)."""
    return [rel for rel in rels if os.path.lexists(under(top, rel))]


def hashes(top, rels):
    found = {}
    for rel in rels:
        try:
            found[rel] = sha256_of(under(top, rel))
        except OSError:
            found[rel] = None
    return found


class Packer:
    """One tar pack written as frames; its index follows its bytes."""

    def __init__(self, out):
        self.out = out
        self.buffer, self.position, self.index = bytearray(), 0, []

    def write(self, data):
        self.buffer += data
        self.position += len(data)
        if len(self.buffer) >= BLOCK:
            self.flush()

    def flush(self):
        if self.buffer:
            frame(self.out, b"D", bytes(self.buffer))
            self.buffer = bytearray()

    def end_pack(self):
        self.write(b"\0" * (2 * tarfile.BLOCKSIZE))
        self.flush()
        frame(self.out, b"E", json.dumps({"size": self.position, "files": self.index}).encode())
        self.position, self.index = 0, []

    def add(self, top, rel):
        path = under(top, rel)
        try:
            f = open(path, "rb")
        except OSError as exc:
            return self.failed(rel, "unreadable" if os.path.exists(path) else "vanished", exc)
        with f:
            st = os.fstat(f.fileno())
            if (st.st_mode & 0o170000) != 0o100000:
                return self.failed(rel, "not a regular file", None)
            info = tarfile.TarInfo(rel)
            info.size, info.mtime, info.mode = st.st_size, st.st_mtime_ns / 1e9, st.st_mode & 0o7777
            info.uid, info.gid = st.st_uid, st.st_gid
            info.uname, info.gname = names(st)
            self.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
            offset, digest, left = self.position, hashlib.sha256(), st.st_size
            while left > 0:
                block = f.read(min(BLOCK, left))
                if not block:
                    break
                digest.update(block)
                self.write(block)
                left -= len(block)
            if left:
                self.write(b"\0" * left)  # the tar stays well formed; the file is reported, not indexed
            self.write(b"\0" * (-st.st_size % tarfile.BLOCKSIZE))
            after = os.fstat(f.fileno())
        if left or (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
            return self.failed(rel, "changed while read", None)
        self.index.append({"path": rel, "offset": offset, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                           "mode": st.st_mode & 0o7777, "uname": info.uname, "gname": info.gname,
                           "sha256": digest.hexdigest()})

    def failed(self, rel, reason, exc):
        self.flush()
        detail = {"path": rel, "reason": reason}
        if exc is not None:
            detail["errno"] = getattr(exc, "errno", None)
        frame(self.out, b"X", json.dumps(detail).encode())


def pack(top, rels, out):
    packer = Packer(out)
    for rel in rels:
        packer.add(top, rel)
    packer.end_pack()


class Restore:
    """One pack at a time: wanted files to temporaries while its bytes stream in; commit or not."""

    def __init__(self, top, tag):
        self.top, self.prefix = top, ".migrate-%s-" % tag
        self.me = whoami()

    def temporary(self, rel):
        digest = hashlib.sha256(rel.encode("utf-8", "surrogateescape")).hexdigest()[:16]
        return os.path.join(os.path.dirname(under(self.top, rel)), self.prefix + digest)

    def start(self, header):
        self.key, self.digest, self.position = header["key"], hashlib.sha256(), 0
        self.wanted = sorted(header["files"], key=lambda e: e["offset"])
        self.owners = {(e["uname"], e["gname"]): self.owner(e["uname"], e["gname"]) for e in self.wanted}
        self.next, self.current, self.temps, self.hashed = 0, None, [], {}

    def owner(self, user, group):
        """uid and gid to give, or None to leave the restoring user's own (not root: only that
        user and its groups are possible, anything else is refused)."""
        try:
            uid, gid = pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid
        except KeyError:
            raise ValueError("owner %s:%s does not exist on this host" % (user, group)) from None
        if self.me["root"]:
            return uid, gid
        if user != self.me["user"] or group not in self.me["groups"]:
            raise ValueError("owner %s:%s cannot be given by %s (not root)" % (user, group, self.me["user"]))
        return None if group == grp.getgrgid(os.getegid()).gr_name else (-1, gid)

    def feed(self, data):
        self.digest.update(data)
        start, end = self.position, self.position + len(data)
        while self.next < len(self.wanted) or self.current:
            if self.current is None:
                e = self.wanted[self.next]
                if e["offset"] >= end:
                    break
                self.current = self.open(e)
                self.next += 1
            e, f, hashing = self.current
            lo, hi = max(start, e["offset"]), min(end, e["offset"] + e["size"])
            if hi > lo:
                piece = data[lo - start:hi - start]
                f.write(piece)
                hashing.update(piece)
            if e["offset"] + e["size"] > end:
                break
            f.close()
            self.current = None
        self.position = end

    def open(self, e):
        temp = self.temporary(e["path"])
        self.temps.append((e, temp))
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        hashing = self.hashed[temp] = hashlib.sha256()
        return e, os.fdopen(fd, "wb"), hashing

    def commit(self, expected):
        if self.current:
            self.current[1].close()
            self.current = None
        if self.digest.hexdigest() != expected or self.next < len(self.wanted):
            return self.abort("pack SHA-256 %s differs from the staged %s" % (self.digest.hexdigest(), expected))
        bad = [e["path"] for e, t in self.temps if self.hashed[t].hexdigest() != e["sha256"]]
        if bad:
            return self.abort("%d file(s) differ from the manifest" % len(bad))
        os.sync()  # the bytes are on disk before any file takes its name
        written = 0
        for e, temp in self.temps:
            os.chmod(temp, e["mode"])
            owner = self.owners[(e["uname"], e["gname"])]
            if owner is not None:
                os.chown(temp, *owner)
            os.utime(temp, ns=(e["mtime_ns"], e["mtime_ns"]))
            if not publish(temp, under(self.top, e["path"])):
                return self.abort("a file appeared at the place of one being restored")
            written += 1
        self.temps = []
        return {"key": self.key, "ok": True, "written": written, "bytes": sum(e["size"] for e in self.wanted)}

    def abort(self, reason):
        if self.current:
            self.current[1].close()
            self.current = None
        for _, temp in self.temps:
            try:
                os.unlink(temp)
            except FileNotFoundError:
                pass
        self.temps = []
        return {"key": self.key, "ok": False, "error": reason}


def publish(temp, final):
    """Give a written file its name without ever replacing one: a hard link, then the temporary
    name removed (where the file system has no hard links: a rename after a check)."""
    try:
        os.link(temp, final)
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP) or os.path.lexists(final):
            raise
        os.rename(temp, final)
        return True
    os.unlink(temp)
    return True


def restore(top, tag, stream, out):
    job = None
    while True:
        kind, body = read_frame(stream)
        if kind is None:
            break
        try:
            if kind == b"P":
                job = Restore(top, tag) if job is None else job
                job.start(json.loads(body))
            elif kind == b"D":
                job.feed(body)
            elif kind == b"C":
                answer = job.commit(json.loads(body)["sha256"])
                print(json.dumps(answer), file=out, flush=True)
        except (OSError, ValueError) as exc:
            answer = job.abort("%s (errno %s)" % (type(exc).__name__, getattr(exc, "errno", None)) if isinstance(
                exc, OSError) else str(exc))
            print(json.dumps(answer), file=out, flush=True)
            return


def remove(top, work):
    removed = kept = 0
    for e in work.get("files", []):
        path = under(top, e["path"])
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if st.st_size == e["size"] and st.st_mtime_ns == e["mtime_ns"]:
            os.unlink(path)
            removed += 1
        else:
            kept += 1
    dirs = 0
    for d in sorted(work.get("dirs", []), key=lambda d: -d.count("/")):
        try:
            os.rmdir(under(top, d))
            dirs += 1
        except OSError:
            pass
    return {"removed": removed, "kept_changed": kept, "dirs_removed": dirs}


def mkdirs(top, dirs):
    for d in dirs:
        os.makedirs(under(top, d), mode=0o750, exist_ok=True)
    return {"made": len(dirs)}


def clean(top, prefix, dirs):
    """Remove our temporaries: in the given directories only, or in the whole tree (dirs empty)."""
    places = [under(top, d) if d else top for d in dirs] if dirs else [here for here, _, _ in os.walk(top)]
    removed = 0
    for here in places:
        try:
            names = os.listdir(here)
        except OSError:
            continue
        for name in names:
            if name.startswith(prefix) and os.path.isfile(os.path.join(here, name)):
                os.unlink(os.path.join(here, name))
                removed += 1
    return {"removed": removed}


def trash(top, bin_dir, items, back):
    moved = 0
    for item in items:
        inside, outside = under(top, bin_dir + "/" + item["path"]), under(top, item["path"])
        source, target = (inside, outside) if back else (outside, inside)
        if not os.path.exists(source) or os.path.exists(target) or sha256_of(source) != item["sha256"]:
            continue
        os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
        os.rename(source, target)
        moved += 1
    return {"moved": moved}


def purge(top, bin_dir):
    import shutil

    if not bin_dir.startswith(TRASH_PREFIX):
        raise ValueError("only a trash directory of ours is purged")
    path = under(top, bin_dir)
    files = sum(len(f) for _, _, f in os.walk(path)) if os.path.isdir(path) else 0
    if os.path.isdir(path):
        shutil.rmtree(path)
    return {"purged": files}


def main(argv):
    mode, top = argv[0], argv[1]
    out = sys.stdout
    if mode == "scan":
        scan(top, argv[2:] == ["hash"], out)
    elif mode == "pack":
        pack(top, json.load(sys.stdin), sys.stdout.buffer)
    elif mode == "restore":
        restore(top, argv[2], sys.stdin.buffer, out)
    else:
        work = json.load(sys.stdin)
        answer = {"hash": lambda: hashes(top, work), "remove": lambda: remove(top, work),
                  "clean": lambda: clean(top, argv[2], work), "mkdirs": lambda: mkdirs(top, work),
                  "exists": lambda: exists(top, work),
                  "trash": lambda: trash(top, argv[2], work, False), "purge": lambda: purge(top, argv[2]),
                  "untrash": lambda: trash(top, argv[2], work, True)}[mode]()
        print(json.dumps(answer), file=out)
    out.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
