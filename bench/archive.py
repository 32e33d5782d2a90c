"""Benchmark: the packed document archive (issue #11) against `rclone copy`, side by side in one
run on one machine, for many small documents and for fewer, larger files.

    .venv/bin/python bench/archive.py [--documents 100000] [--big-gb 2] [--big-files 10000]
                                      [--skip-big] [--workers N] [--pack-mb 32] [--purge]

Brings up (or reuses) its own lab in .lab-bench-archive (40 employees x 2 years: the databases
are not measured here) and, for each file set, under the src-app host's archive path:
- stages it in packs (`packed.stage`) and restores it onto tgt-app (`packed.restore`), each in a
  child process that reports its seconds and its own peak RSS (VmHWM);
- copies the same files from local disk (the lab host's root is a local directory) to the same
  S3 endpoint with `rclone copy --transfers 8`, into a fresh prefix;
- re-syncs the unchanged archive (a delta staging from the first manifest), then changes one
  document and re-syncs and restores the delta.
The sets: `--documents` personnel files from the lab's bulk generator (mostly 1.6-10 KB PDFs,
a few scans of several MB, a few empty; 100,000 are about 300 MB), and the earlier benchmark's
`--big-gb` in `--big-files` files (bench/db_copy.py generate_files). The generated files are
deleted after each set, the staged objects go with moto's restart before the next set and at the
end, when the lab is stopped (`--purge` deletes it). Prints a
table and writes bench/results-archive.md. The machine is noisy: compare figures of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import db_copy  # bench/ is on sys.path: this file runs as a script
from db_copy import rclone_bin

from migrate import config
from migrate.lab import api as lab_api
from migrate.lab.api import LabPorts
from migrate.lab.inventory import ROOT, write_lab_inventory

LAB = ROOT / ".lab-bench-archive"
PORTS = LabPorts(pg_source=24432, pg_target=24433, ssh_src_app=24201, ssh_tgt_app=24202, s3=24900,
                 ssh_front=24203, http_src_app=24281, http_tgt_app=24282, http_front=24280)
ARCHIVE = "/srv/personale/documents"      # the lab spec's archive path, on src-app and tgt-app
RESULTS = ROOT / "bench" / "results-archive.md"
RCLONE_TRANSFERS = 8
MiB = 2**20

# db_copy's helpers (generate_files, rclone_config) read its module's lab and ports: this lab's.
db_copy.LAB, db_copy.PORTS = LAB, PORTS


def inventory_dir() -> Path:
    return write_lab_inventory(LAB, PORTS)


def on_host(host: str, sub: str) -> Path:
    return LAB / "hosts" / host / "root" / ARCHIVE.lstrip("/") / sub


# --- the file sets ---------------------------------------------------------------------------

def make_documents(count: int) -> str:
    """`count` personnel documents in the archive's bulk folder (the lab's own generator)."""
    try:
        from migrate.lab.data.bulk_archive import BULK_DIR, write_bulk_archive
    except ImportError:  # a checkout without the generator: the same mix, plainer bytes
        _plain_documents(on_host("src-app", "fascicoli-storici"), count)
        return "fascicoli-storici"
    write_bulk_archive(on_host("src-app", BULK_DIR), count=count, seed=1)
    return BULK_DIR


def _plain_documents(top: Path, count: int) -> None:
    rng, noise = random.Random(1), os.urandom(9 * MiB)
    shutil.rmtree(top, ignore_errors=True)
    scans = set(rng.sample(range(count), min(5, count // 250)))
    empties = set(rng.sample(range(count), 1 + count // 20_000)) - scans
    for i in range(count):
        size = (0 if i in empties else rng.randint(2 * 10**6, 8 * 10**6) if i in scans
                else max(1600, min(10_240, int(rng.lognormvariate(7.76, 0.45)))))
        folder = top / f"{1965 + i // 2000 % 50}" / f"{i // 40:06d} Rossi Maria"
        folder.mkdir(parents=True, exist_ok=True)
        start = i * 7919 % (len(noise) - size + 1)
        (folder / f"Cedolino n. {i}.pdf").write_bytes((b"%PDF-1.4 " + noise[start:start + size])[:size])


def make_big(gb: float, files: int) -> str:
    top, _, _ = db_copy.generate_files(gb, files)
    return top.name


def tree_facts(top: Path) -> dict[str, tuple[int, int, int]]:
    """path -> (size, mtime_ns, mode) of every file under top (trash and temporaries left out)."""
    found = {}
    for here, dirs, names in os.walk(top):
        dirs[:] = [d for d in dirs if not d.startswith(".migrate-")]
        for name in names:
            st = os.lstat(os.path.join(here, name))
            found[os.path.relpath(os.path.join(here, name), top)] = (st.st_size, st.st_mtime_ns, st.st_mode & 0o7777)
    return found


# --- one measured phase, in a child process --------------------------------------------------

def phase(args: dict) -> dict:
    """Run one phase in a child; its result, the seconds it measured and its own peak RSS."""
    load = os.getloadavg()[0]
    with tempfile.TemporaryFile(mode="w+") as err:
        done = subprocess.run([sys.executable, __file__, "_phase", json.dumps(args)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=err, text=True)
        if done.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{args['kind']} of {args['path']} failed:\n{err.read()[-3000:]}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "load_1min_before": load}


def peak_rss_mib() -> int:
    """This process's own peak RSS. Not the parent's wait4/RUSAGE_CHILDREN: Linux keeps the
    high-water mark of the memory a child had before exec, so a child's ru_maxrss is never
    below the RSS of the parent that started it (a 300 MiB parent: 311 MiB for a 14 MiB child)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) // 1024 for line in f if line.startswith("VmHWM:"))


def _phase_child(args: dict) -> None:
    from migrate.adapters import cloud
    from migrate.transfer import packed

    inv = config.load(inventory_dir())
    s3 = cloud.client(inv, pool=2 * args["workers"] + 4)
    started = time.monotonic()
    first: list[float] = []
    base = _read_manifest(packed, s3, inv, args["base"]) if args.get("base") else None
    previous = base["files"] if base and args["delta"] else []
    if args["kind"] == "stage":
        job = _pack_job(inv, s3, args, previous)
        job.progress = lambda kind, data: first or first.append(time.monotonic() - started)
        result = packed.stage(job)
    else:
        manifest = _read_manifest(packed, s3, inv, args["manifest"]) if args.get("manifest") else base
        job = _restore_job(inv, s3, args)
        packed.remove_leftovers(job)  # as the wave's step does first (ops/archive.py restore_packs)
        result = packed.restore(job, manifest, previous)
    seconds = time.monotonic() - started
    print(json.dumps({"seconds": round(seconds, 2), "first_pack_s": round(first[0], 2) if first else None,
                      "peak_rss_mib": peak_rss_mib(), "result": result}))


def _log(args: dict, step: str):
    from migrate.engine.journal import Journal
    from migrate.transfer.log import TransferLog
    return TransferLog(Journal(Path(args["journal"])), "bench-archive", "bench", step)


def _pack_job(inv, s3, args: dict, previous: list[dict]):
    from migrate.adapters import cloud
    from migrate.transfer import packed
    scope = "bench/delta" if args["delta"] else "bench"
    return packed.PackJob(inv=inv, s3=s3, log=_log(args, "bench/stage-archive"), scope=scope, host="src-app",
                          path=args["path"], prefix=args["prefix"] + "/docs",
                          progress_prefix=f"{args['prefix']}/progress/{scope}",
                          manifest="manifest-delta.json" if args["delta"] else "manifest.json",
                          workers=args["workers"], pack_bytes=args["pack_mb"] * MiB,
                          # as the wave's step sizes its parts (ops/archive.py pack_to_bucket)
                          part_bytes=max(cloud.MIN_PART, min(inv.spec.transfer.chunk_mb, 64) * MiB),
                          previous=previous)


def _restore_job(inv, s3, args: dict):
    from migrate.adapters import ssh
    from migrate.transfer import packed
    scope = "bench/delta" if args["delta"] else "bench"
    return packed.RestoreJob(inv=inv, s3=s3, log=_log(args, "bench/restore-archive"), scope=scope, host="tgt-app",
                             path=args["path"], top=ssh.host_path(ssh.host(inv, "tgt-app"), args["path"]),
                             progress_prefix=f"{args['prefix']}/restore/{scope}",
                             tag="bench" + ("delta" if args["delta"] else "base"), workers=args["workers"])


def _read_manifest(packed, s3, inv, where: dict) -> dict:
    return packed.read_manifest(s3, inv.spec.storage.bucket, where["manifest_key"], where["manifest_sha256"],
                                where["manifest_bytes"])


def where_manifest(staged: dict) -> dict:
    return {k: staged["result"][k] for k in ("manifest_key", "manifest_sha256", "manifest_bytes")}


# --- rclone ----------------------------------------------------------------------------------

def rclone_copy(top: Path, prefix: str, conf: Path, bucket: str, work: Path) -> dict:
    """`rclone copy` under GNU time, which reports rclone's own peak RSS (see peak_rss_mib)."""
    rss, load = work / "rclone.maxrss", os.getloadavg()[0]
    started = time.monotonic()
    done = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(rss), rclone_bin(), "--config", str(conf), "copy",
                           "--transfers", str(RCLONE_TRANSFERS), str(top), f"s3:{bucket}/{prefix}"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"rclone copy failed:\n{done.stderr[-3000:]}")
    return {"seconds": round(seconds, 2), "peak_rss_mib": int(rss.read_text().split()[-1]) // 1024,
            "load_1min_before": load}


# --- one file set, every phase ---------------------------------------------------------------

def restart_lab() -> None:
    """An empty S3 endpoint: moto keeps every object in memory, and a restart empties it."""
    lab_api.down(LAB)
    lab_api.up(LAB, ports=PORTS, employees=40, years=2, seed=1)


def bench_set(name: str, make, opts, conf: Path) -> dict:
    from migrate.adapters import cloud
    restart_lab()
    s3 = cloud.client(config.load(inventory_dir()))
    began = time.monotonic()
    sub = make()
    src, tgt = on_host("src-app", sub), on_host("tgt-app", sub)
    os.sync()  # the generator's dirty pages are not the restore's to flush
    facts = tree_facts(src)
    size = sum(f[0] for f in facts.values())
    print(f"{name}: {len(facts)} files, {size / MiB:.0f} MiB under {ARCHIVE}/{sub}"
          f" (made in {time.monotonic() - began:.0f} s)", flush=True)
    shutil.rmtree(tgt, ignore_errors=True)
    tgt.mkdir(parents=True)
    run = f"bench-archive/{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="bench-archive-", dir=LAB))
    common = {"path": f"{ARCHIVE}/{sub}", "prefix": f"{run}/{name}", "workers": opts.workers,
              "pack_mb": opts.pack_mb, "journal": str(work / "journal.sqlite"), "delta": False}
    out = {"files": len(facts), "bytes": size, "load_before": os.getloadavg()}
    try:
        out.update(measure(name, common, src, tgt, facts, conf, s3, work))
    finally:  # the staged objects go with moto's next restart (deleting 100,000 there takes minutes)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(src, ignore_errors=True)
        shutil.rmtree(tgt, ignore_errors=True)
    out["load_after"] = os.getloadavg()
    return out


def measure(name: str, common: dict, src: Path, tgt: Path, facts: dict, conf: Path, s3, work: Path) -> dict:
    from migrate.adapters import cloud
    bucket, out = config.load(inventory_dir()).spec.storage.bucket, {}
    # rclone goes last: moto answers a listing of a prefix by walking the whole bucket, and
    # rclone's one object per file would slow every listing the re-syncs make.
    out["stage"] = say(name, "packed stage", phase({**common, "kind": "stage"}))
    assert out["stage"]["result"]["packed"] == len(facts), out["stage"]["result"]
    base = where_manifest(out["stage"])
    out["restore"] = say(name, "packed restore", phase({**common, "kind": "restore", "base": base}))
    assert tree_facts(tgt) == facts, "the restored tree differs from the source (path, size, mtime, mode)"
    out["resync"] = say(name, "unchanged re-sync", phase({**common, "kind": "stage", "delta": True, "base": base}))
    assert out["resync"]["result"]["packed"] == 0, out["resync"]["result"]
    changed = change_one(src, facts)
    delta = {**common, "delta": True, "base": base, "journal": str(work / "delta.sqlite")}
    out["delta_stage"] = say(name, "one changed: re-sync", phase({**delta, "kind": "stage"}))
    assert out["delta_stage"]["result"]["packed"] == 1, out["delta_stage"]["result"]
    out["delta_restore"] = say(name, "one changed: restore",
                               phase({**delta, "kind": "restore", "manifest": where_manifest(out["delta_stage"])}))
    assert out["delta_restore"]["result"]["written"] == 1, out["delta_restore"]["result"]
    assert (tgt / changed).read_bytes() == (src / changed).read_bytes()
    out["rclone"] = say(name, f"rclone copy --transfers {RCLONE_TRANSFERS}",
                        rclone_copy(src, f"{common['prefix']}/rclone", conf, bucket, work))
    assert len(cloud.list_keys(s3, bucket, f"{common['prefix']}/rclone/")) == len(facts), "rclone left files out"
    return out


def change_one(src: Path, facts: dict) -> str:
    """Rewrite one small document with other bytes (a correction): size and mtime change."""
    rel = sorted(p for p, f in facts.items() if 0 < f[0] < 1_000_000)[len(facts) // 2]
    path = src / rel
    path.write_bytes(path.read_bytes() + b"\n% rettifica\n")
    return rel


def say(name: str, what: str, result: dict) -> dict:
    extra = {k: result["result"][k] for k in ("packed", "packs", "written", "skipped_present", "packs_read")
             if k in result.get("result", {})}
    print(f"{name}: {what}: {result['seconds']:.2f} s, peak RSS {result['peak_rss_mib']} MiB,"
          f" load {result['load_1min_before']:.1f} {extra or ''}", flush=True)
    return result


# --- report ----------------------------------------------------------------------------------

def versions() -> dict:
    def first_line(argv, stream="stdout"):
        try:
            done = subprocess.run(argv, capture_output=True, text=True)
            return getattr(done, stream).strip().splitlines()[0]
        except (OSError, IndexError):
            return "not installed"
    import paramiko
    found = db_copy.versions()
    return {"nproc": os.cpu_count(), **{k: found[k] for k in ("machine", "python", "rclone", "boto3", "moto")},
            "openssh": first_line(["ssh", "-V"], "stderr"), "paramiko": paramiko.__version__}


MEASURED_CODE = ("migrate/transfer/packed.py", "migrate/adapters/hostside.py", "migrate/adapters/ssh.py",
                 "migrate/adapters/cloud.py")


def code_state() -> dict:
    """The commit and the SHA-256 of the measured modules: others edit this checkout while it runs."""
    import hashlib
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {"head": head.stdout.strip(),
            **{p: hashlib.sha256((ROOT / p).read_bytes()).hexdigest()[:12] for p in MEASURED_CODE}}


def rate(nbytes: int, seconds: float) -> float:
    return nbytes / MiB / seconds


def rows(sets: dict) -> list[str]:
    lines = ["| set | files | MiB | packed stage s (MiB/s) | restore s (MiB/s) | stage + restore s |"
             " rclone copy s (MiB/s) | stage / rclone throughput | unchanged re-sync s |"
             " one changed: re-sync + restore s | peak RSS stage / restore MiB | rclone peak RSS MiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in sets.items():
        b = s["bytes"]
        st, re, rc = s["stage"]["seconds"], s["restore"]["seconds"], s["rclone"]["seconds"]
        ds, dr = s["delta_stage"]["seconds"], s["delta_restore"]["seconds"]
        lines.append(f"| {name} | {s['files']:,} | {b / MiB:.0f} | {st:.1f} ({rate(b, st):.1f}) |"
                     f" {re:.1f} ({rate(b, re):.1f}) | {st + re:.1f} | {rc:.1f} ({rate(b, rc):.1f}) |"
                     f" {rc / st:.2f} | {s['resync']['seconds']:.2f} | {ds:.2f} + {dr:.2f} = {ds + dr:.2f} |"
                     f" {s['stage']['peak_rss_mib']} / {s['restore']['peak_rss_mib']}"
                     f" (re-sync {s['resync']['peak_rss_mib']}, delta {s['delta_restore']['peak_rss_mib']}) |"
                     f" {s['rclone']['peak_rss_mib']} |")
    return lines


def targets(sets: dict) -> list[str]:
    def verdict(ok: bool) -> str:
        return "met" if ok else "missed"
    lines = []
    docs = sets.get("documents")
    if docs:
        total = docs["stage"]["seconds"] + docs["restore"]["seconds"]
        delta = docs["delta_stage"]["seconds"] + docs["delta_restore"]["seconds"]
        lines += [f"- stage + restore of {docs['files']:,} documents in at most 60 s: {total:.1f} s, {verdict(total <= 60)}",
                  f"- unchanged re-sync in at most 5 s: {docs['resync']['seconds']:.2f} s,"
                  f" {verdict(docs['resync']['seconds'] <= 5)}",
                  f"- one changed document found and moved in at most 5 s: {delta:.2f} s (re-sync"
                  f" {docs['delta_stage']['seconds']:.2f} + restore {docs['delta_restore']['seconds']:.2f}),"
                  f" {verdict(delta <= 5)}"]
    for name, s in sets.items():
        ratio = s["rclone"]["seconds"] / s["stage"]["seconds"]
        lines.append(f"- {name}: staging throughput at least 2x rclone's: {ratio:.2f}x, {verdict(ratio >= 2)}")
    return lines


def write_results(report: dict, command: str) -> None:
    v = report["versions"]
    text = "\n".join([
        "# Document archive, packed (`bench/archive.py`)", "",
        f"Command: `{command}`", "",
        f"Date: {report['date']}. Machine: {v['machine']}, nproc {v['nproc']}; Python {v['python']}; {v['openssh']};"
        f" paramiko {v['paramiko']}; {v['rclone']}; moto {v['moto']}; boto3 {v['boto3']}.", "",
        f"Code: HEAD {report['code_at_start']['head']} at the start, {report['code_at_end']['head']} at the end;"
        f" {', '.join(MEASURED_CODE)} {'unchanged' if report['measured_code_unchanged'] else 'CHANGED'}"
        " during the run.", "",
        f"Settings: workers {report['workers']}, pack_mb {report['pack_mb']}, rclone `--transfers {RCLONE_TRANSFERS}`"
        " from the same files on local disk, each into a fresh prefix of the same moto endpoint. Seconds are"
        " measured inside each phase's child process (from its first call to its result, reading the"
        " manifest(s) included); peak RSS is that child's own VmHWM (rclone's: GNU time's %M).", "",
        "Load average (1, 5, 15 min) before/after each set: " + "; ".join(
            f"{n} {tuple(round(x, 2) for x in s['load_before'])} / {tuple(round(x, 2) for x in s['load_after'])}"
            for n, s in report["sets"].items()), "",
        *rows(report["sets"]), "", "Targets (issue #11):", "", *targets(report["sets"]), "",
        "Raw:", "", "```json", json.dumps(report, indent=1, default=str), "```", ""])
    RESULTS.write_text(text)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_phase":
        return _phase_child(json.loads(sys.argv[2]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--big-gb", type=float, default=2.0)
    parser.add_argument("--big-files", type=int, default=10_000)
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--workers", type=int, default=None, help="default: the spec's transfer.workers, else 4")
    parser.add_argument("--pack-mb", type=int, default=32)
    parser.add_argument("--purge", action="store_true", help="delete the benchmark lab at the end")
    opts = parser.parse_args()
    report = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "versions": versions(), "sets": {},
              "code_at_start": code_state()}
    try:
        lab_api.up(LAB, ports=PORTS, employees=40, years=2, seed=1)
        inv = config.load(inventory_dir())
        opts.workers = opts.workers or inv.spec.transfer.workers or 4
        report.update(workers=opts.workers, pack_mb=opts.pack_mb)
        with tempfile.TemporaryDirectory(prefix="bench-rclone-", dir=LAB) as tmp:
            conf = db_copy.rclone_config(Path(tmp), inv)
            report["sets"]["documents"] = bench_set("documents", lambda: make_documents(opts.documents), opts, conf)
            if not opts.skip_big:
                report["sets"]["big files"] = bench_set("big files", lambda: make_big(opts.big_gb, opts.big_files),
                                                        opts, conf)
    finally:
        lab_api.down(LAB, purge=opts.purge)
    report["code_at_end"] = code_state()
    same = {k: v for k, v in report["code_at_end"].items() if k != "head"} == {
        k: v for k, v in report["code_at_start"].items() if k != "head"}
    report["measured_code_unchanged"] = same
    if not same:
        print("WARNING: the measured modules changed during the run (see code_at_start / code_at_end)")
    print("\n" + "\n".join(rows(report["sets"]) + [""] + targets(report["sets"])))
    write_results(report, ".venv/bin/python bench/archive.py " + " ".join(sys.argv[1:]))
    print(f"\nwritten: {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
