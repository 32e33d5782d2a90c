"""`migrate lab ...`: the local lab the embedded default inventory points at."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import click

from migrate.adapters.ansible import ROOT
from migrate.errors import MigrateError

DEFAULT_LAB = ROOT / ".lab"
SMALL = {"employees": 40, "years": 2, "seed": 1}


def _lab_api():
    from migrate.lab import api  # imported late: only `lab` needs it
    return api


def _call(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except _lab_api().LabError as exc:
        raise MigrateError(f"lab: {exc}") from None


def _ports(overrides: tuple[str, ...]):
    """None without overrides: a new lab takes the defaults, an existing one keeps its own."""
    if not overrides:
        return None
    lab_api = _lab_api()
    names = {f.name for f in fields(lab_api.LabPorts)}
    values = {}
    for item in overrides:
        name, _, value = item.partition("=")
        if name not in names or not value.isdigit():
            raise click.BadParameter(f"'{item}': expected NAME=PORT with NAME one of {', '.join(sorted(names))}")
        values[name] = int(value)
    return lab_api.LabPorts(**values)


lab_dir_option = click.option("--lab-dir", type=click.Path(path_type=Path), default=DEFAULT_LAB,
                              envvar="MIGRATE_LAB_DIR", show_default=True, help="Where the lab lives.")
scale_options = [
    click.option("--employees", type=click.IntRange(1, 100000), default=SMALL["employees"], show_default=True),
    click.option("--years", type=click.IntRange(1, 30), default=SMALL["years"], show_default=True),
    click.option("--seed", type=int, default=SMALL["seed"], show_default=True),
]


documents_option = click.option(
    "--documents", type=click.IntRange(0, 1_000_000), default=0, show_default=True, metavar="N",
    help="Also write N historical personnel files (small PDFs, no index rows) into the archive's"
         " fascicoli-storici/; `lab reset` restores them.")


def scale(fn):
    for option in reversed(scale_options):
        fn = option(fn)
    return fn


@click.group()
def lab() -> None:
    """The local lab: source and target PostgreSQL, three SSH hosts, S3 and DNS, web stand-ins (127.0.0.1 only)."""


@lab.command()
@lab_dir_option
@scale
@documents_option
@click.option("--port", "ports", multiple=True, metavar="NAME=PORT", help="Override a default port.")
def up(lab_dir: Path, employees: int, years: int, seed: int, documents: int, ports: tuple[str, ...]) -> None:
    """Build and start the lab (idempotent); seed it when it is new."""
    _call(_lab_api().up, lab_dir, ports=_ports(ports), employees=employees, years=years, seed=seed,
          documents=documents)
    click.echo(f"lab up in {lab_dir}")


@lab.command()
@lab_dir_option
@click.option("--purge", is_flag=True, help="Also delete the lab directory and its data.")
def down(lab_dir: Path, purge: bool) -> None:
    """Stop every process the lab started; keep the data unless --purge."""
    _call(_lab_api().down, lab_dir, purge=purge)
    click.echo(f"lab down{' and purged' if purge else ''}")


@lab.command()
@lab_dir_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@click.pass_context
def status(ctx: click.Context, lab_dir: Path, as_json: bool) -> None:
    """Services, addresses and DSNs (no secrets)."""
    result = _call(_lab_api().status, lab_dir)
    if as_json or (ctx.find_root().obj and ctx.find_root().obj.json):
        click.echo(json.dumps(result, indent=2))
        return
    for name, pg in result.get("postgres", {}).items():
        click.echo(f"postgres {name:8} port {pg['port']}  {'up' if pg['up'] else 'DOWN'}")
    for name, host in result.get("ssh", {}).items():
        click.echo(f"ssh      {name:8} port {host['port']}  {'up' if host['up'] else 'DOWN'}")
    for name, web in result.get("http", {}).items():
        click.echo(f"http     {name:8} port {web['port']}  {'up' if web['up'] else 'DOWN'}")
    s3 = result.get("s3", {})
    click.echo(f"s3       {s3.get('endpoint_url')}  {'up' if s3.get('up') else 'DOWN'}  buckets: {', '.join(s3.get('buckets', []))}")
    dns = result.get("dns")
    if dns:
        records = ", ".join(f"{name} -> {value}" for name, value in sorted(dns["records"].items()))
        click.echo(f"dns      {dns['zone']}  {'zone ' + dns['zone_id'] if dns['zone_id'] else 'NO ZONE'}  {records}")


@lab.command()
@lab_dir_option
@scale
@documents_option
def seed(lab_dir: Path, employees: int, years: int, seed: int, documents: int) -> None:
    """Reseed the source with synthetic data and empty the target: the lab's initial state."""
    counts = _call(_lab_api().reseed, lab_dir, employees=employees, years=years, seed=seed,
                   documents=documents)
    counts = counts if isinstance(counts, dict) else {}
    punches, bulk = counts.get("presenze.punch"), counts.get("bulk_archive")
    click.echo(f"seeded {employees} employees x {years} years (seed {seed})"
               + (f": {punches:,} punches" if punches else "")
               + (f" + {bulk['files']:,} archive documents ({_megabytes(bulk['bytes'])}, written in"
                  f" {bulk['seconds']} s)" if bulk else ""))


def _megabytes(count: int) -> str:
    return f"{count / 1e6:,.0f} MB" if count >= 10e6 else f"{count / 1e6:.1f} MB"


@lab.command()
@lab_dir_option
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), help="Writes per second, evenly paced.")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), help="How long (default: until Ctrl-C or SIGTERM).")
@click.option("--edit-every", type=click.IntRange(min=0), default=5, show_default=True,
              help="Every K-th write is an HR edit, the rest punches (0: punches only).")
@click.option("--fresh", is_flag=True, help="Start a new acked file (the old one is kept beside it).")
@click.option("--check", "checking", is_flag=True, help="Check the acknowledged writes instead of writing.")
@click.option("--side", type=click.Choice(["live", "source", "target"]), default="live", show_default=True,
              help="With --check: where to look (live: where the front door sends each service now).")
@click.pass_context
def load(ctx: click.Context, lab_dir: Path, rate: float | None, seconds: float | None, edit_every: int,
         fresh: bool, checking: bool, side: str) -> None:
    """Post punches and HR edits through the front door, recording every acknowledged write
    in LAB/load/acked.jsonl; with --check, find each one exactly once (exit 1 if not)."""
    as_json = bool(ctx.find_root().obj and ctx.find_root().obj.json)
    if checking:
        if rate is not None or seconds is not None or fresh:
            raise click.UsageError("--check takes no --rate, --seconds or --fresh")
        return _load_check(lab_dir, side, as_json)
    if rate is None:
        raise click.UsageError("--rate is required (or --check)")
    summary = _call(_run_load, lab_dir, rate, seconds, edit_every, fresh)
    if as_json:
        click.echo(json.dumps(summary))
        return
    by_kind = ", ".join(f"{kind} {n}" for kind, n in sorted(summary["acked_by_kind"].items()))
    reasons = ", ".join(f"{why}: {n}" for why, n in sorted(summary["failures"].items()))
    click.echo(f"load: acked {summary['acked']}{f' ({by_kind})' if by_kind else ''}, failed {summary['failed']}"
               f"{f' ({reasons})' if reasons else ''}, skipped {summary['skipped']} in {summary['seconds']} s;"
               f" recorded in {summary['acked_file']}")


def _run_load(lab_dir: Path, rate: float, seconds: float | None, edit_every: int, fresh: bool) -> dict:
    import signal

    writer = _lab_api().Load(lab_dir, edit_every=edit_every, fresh=fresh)
    writer.start(rate, seconds)
    previous = {sig: signal.signal(sig, lambda *_: writer.stop_soon()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        writer.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return writer.summary()


def _load_check(lab_dir: Path, side: str, as_json: bool) -> None:
    result = _call(_lab_api().check_load, lab_dir, side)
    if as_json and not result.ok:  # one object: the check's result inside the error
        failed = MigrateError(result.problem())
        failed.data = result.to_json()
        raise failed
    click.echo(json.dumps(result.to_json()) if as_json else result.summary())
    if not result.ok:
        raise MigrateError(result.problem())
