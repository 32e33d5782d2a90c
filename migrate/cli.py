"""The `migrate` command line: parsing and printing only; the work is in `commands`.

Exit codes: 0 success; 1 the operation failed (a step, a check, a verification);
2 bad usage or bad configuration; 3 the wave is locked by another run.
"""

from __future__ import annotations

import functools
import json
import sys
import time
import traceback
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from migrate import commands, config
from migrate.adapters import environ, guard
from migrate.engine.events import Bus, json_lines
from migrate.errors import ConfigError, MigrateError, PreflightFailed
from migrate.model.result import WaveOutcome

EXIT_CODES = """Exit codes: 0 success; 1 the operation failed (a step, a check, a verification);
2 bad usage or bad configuration; 3 the wave is locked by another run; 4 the run stopped at the
go/no-go gate (resume with --approve NAME, or roll back)."""

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class Options:
    def __init__(self, inventory: str, debug: bool, as_json: bool):
        self.inventory_dir, self.debug, self.json = inventory, debug, as_json

    def inventory(self) -> config.Inventory:
        # With the guard's resolver a host name outside the allowed networks fails here, before anything runs.
        return config.load(self.inventory_dir, resolve=guard.resolve)

    def bus(self) -> Bus:
        return Bus(json_lines(sys.stdout)) if self.json else Bus(console_listener)


class ChunkProgress:
    """One status line per database while its chunks load: counts and an ETA from the pace so
    far. Only on a terminal: a log file gets the step lines, not hundreds of updates."""

    def __init__(self):
        self.started: dict[str, float] = {}

    def __call__(self, data: dict) -> None:
        if not out.is_terminal or data["what"] != "chunk_loaded":
            return
        first = self.started.setdefault(data["database"], time.monotonic())
        done, total = data["done"], data["total"]
        pace = (time.monotonic() - first) / max(done, 1)
        eta = f", about {pace * (total - done):.0f}s left" if done < total else ""
        end = "\n" if done >= total else "\r"
        out.file.write(f"    {data['database']}: {done}/{total} chunks loaded{eta}\033[K{end}")
        out.file.flush()


chunk_progress = ChunkProgress()


def console_listener(kind: str, data: dict) -> None:
    if kind == "chunk":
        chunk_progress(data)
    elif kind == "step_started":
        vol = ", ".join(f"{k} {v:,}" for k, v in data.get("volume", {}).items())
        out.print(f"[bold]▶ {data['step']}[/] {data['title']}" + (f" [dim]({vol})[/]" if vol else ""))
    elif kind == "action":
        out.print(f"    {'would ' if data['dry'] else ''}{data['summary']}")
    elif kind == "action_done" and data["dry"] and data["result"].get("changed_tasks"):
        out.print(f"      [yellow]would change[/]: {', '.join(data['result']['changed_tasks'])}")
    elif kind == "step_noop":
        out.print(f"    nothing to do: {data['reason']}")
    elif kind == "step_done":
        out.print(f"  [green]✓[/] {data['step']} [dim]{data['seconds']:.1f}s[/]")
    elif kind == "step_skipped":
        out.print(f"  [dim]✓ {data['step']} (completed earlier)[/]")
    elif kind == "step_resumed":
        if data["undoing"]:
            out.print(f"  [yellow]↺ {data['step']}[/] was interrupted: undoing {data['undoing']} partial effect(s),"
                      " then again")
        else:
            out.print(f"  [yellow]↺ {data['step']}[/] again")
    elif kind == "step_failed":
        out.print(f"  [red]✗ {data['step']}[/]")
    elif kind == "step_waiting":
        out.print(f"  [yellow]⏸ {data['step']}[/] {data['reason']}")
    elif kind == "auto_rollback":
        out.print(f"  [red]↩ {data['step']} failed: rolling the wave back now[/]")
    elif kind == "check":
        colour = {"pass": "green", "warn": "yellow", "fail": "red"}[data["status"]]
        out.print(f"  [{colour}]{data['status']:4}[/] {data['check']} [bold]{data['subject']}[/]: {data['reason']}",
                  markup=True)
    elif kind == "irreversible":
        out.print(f"  [red]! cannot undo[/] {data['summary']}: {data['reason']}")


def json_option(fn):
    """`--json` after the verb too (`migrate status --json`), same as the global flag."""
    def set_json(ctx: click.Context, _param, value: bool) -> None:
        if value and ctx.find_root().obj:
            ctx.find_root().obj.json = True
    return click.option("--json", "as_json_local", is_flag=True, expose_value=False, callback=set_json,
                        help="Machine-readable output.")(fn)


def confirm_with(yes: bool):
    def confirm(text: str) -> bool:
        err.print(text)
        if yes:
            return True
        if not sys.stdin.isatty():
            raise ConfigError("confirmation needed and no terminal to ask on: pass --yes")
        return click.confirm("Proceed?", default=False, err=True)
    return confirm


@click.group(epilog=EXIT_CODES)
@click.option("-i", "--inventory", default="inventories/lab", show_default=True,
              help="Inventory directory (hosts.yml + migrate.yml).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output where the output is data.")
@click.version_option(package_name="migrate")
@click.pass_context
def cli(ctx: click.Context, inventory: str, debug: bool, as_json: bool) -> None:
    """Move a municipality's HR and attendance systems to a cloud, in waves."""
    ctx.obj = Options(inventory, debug, as_json)


@cli.command(epilog=EXIT_CODES)
@click.argument("wave")
@click.option("--limit", metavar="SYSTEM", help="Only this system of the wave.")
@json_option
@click.pass_obj
def plan(o: Options, wave: str, limit: str | None) -> None:
    """Show every step of WAVE and what it would change. Changes nothing."""
    outcome = commands.plan(o.inventory(), wave, bus=o.bus(), limit=limit)
    _finish(o, outcome)


@cli.command(epilog=EXIT_CODES)
@click.argument("wave")
@json_option
@click.pass_obj
def preflight(o: Options, wave: str) -> None:
    """Check everything WAVE needs (hosts, keys, disk, databases, bucket, window); change nothing."""
    findings = commands.preflight(o.inventory(), wave, bus=Bus() if o.json else o.bus())
    found = {"wave": wave, "findings": [f.to_json() for f in findings]}
    bad = [f for f in findings if f.status == "fail"]
    if bad:
        raise _with_data(o, PreflightFailed(f"preflight of {wave}: {len(bad)} check(s) failed, first {bad[0].check}"
                                            f" {bad[0].subject}: {bad[0].reason}"), found)
    if o.json:
        click.echo(json.dumps(found, indent=2))


def _with_data(o: Options, exc: MigrateError, data: dict) -> MigrateError:
    """The error a command ends with, carrying what it found: with --json the error object holds
    it (one object on stdout, not the data and then the error)."""
    if o.json:
        exc.data = data
    return exc


@cli.command(epilog=EXIT_CODES)
@click.argument("wave")
@click.option("--dry-run", is_flag=True, help="Plan and check only; change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--accept-warnings", is_flag=True, help="Go on when preflight checks only warn.")
@click.option("--rehearse", is_flag=True, help="Run the wave, then roll it back; record both timings.")
@click.option("--approve", "approved_by", metavar="NAME",
              help="Go past the go/no-go gate: NAME (who decided) is recorded in the journal.")
@click.option("--limit", metavar="SYSTEM", help="Only this system of the wave (journalled as WAVE@SYSTEM).")
@json_option
@click.pass_obj
def run(o: Options, wave: str, dry_run: bool, yes: bool, accept_warnings: bool, rehearse: bool,
        approved_by: str | None, limit: str | None) -> None:
    """Run WAVE, or resume it after a failure, a crash or a stop at the go/no-go gate.
    Preflight checks run first."""
    if rehearse and (dry_run or approved_by):
        raise click.UsageError("--rehearse excludes --dry-run and --approve")
    if approved_by is not None and not approved_by.strip():
        raise click.UsageError("--approve needs the name of who decided")
    verb = commands.rehearse if rehearse else functools.partial(commands.run, dry_run=dry_run, approved_by=approved_by)
    outcome = verb(o.inventory(), wave, bus=o.bus(), confirm=confirm_with(yes), accept_warnings=accept_warnings,
                   limit=limit)
    _finish(o, outcome)


@cli.command(epilog=EXIT_CODES)
@click.argument("wave")
@click.option("--dry-run", is_flag=True, help="Plan and check only; change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--accept-warnings", is_flag=True, help="Go on when preflight checks only warn.")
@click.option("--limit", metavar="SYSTEM", help="Only this system of the wave (journalled as WAVE@SYSTEM).")
@json_option
@click.pass_obj
def sync(o: Options, wave: str, dry_run: bool, yes: bool, accept_warnings: bool, limit: str | None) -> None:
    """Copy WAVE while its source stays live and keep the target in sync (the warm phase); then
    `migrate run WAVE` cuts over in a short freeze. Again on a synced wave: checks it is in sync."""
    outcome = commands.sync(o.inventory(), wave, bus=o.bus(), confirm=confirm_with(yes), dry_run=dry_run,
                            accept_warnings=accept_warnings, limit=limit)
    _finish(o, outcome)


@cli.command(epilog=EXIT_CODES)
@click.argument("wave")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--limit", metavar="SYSTEM", help="Roll back the run made with `run --limit SYSTEM`.")
@click.option("--forensic-override", metavar="REASON",
              help="FOR FORENSICS ONLY: roll back although the journal's chain is broken. REASON, who and the"
                   " breakage are journalled first (chain_override); undos that are not in the journalled plan"
                   " are still refused.")
@json_option
@click.pass_obj
def rollback(o: Options, wave: str, yes: bool, limit: str | None, forensic_override: str | None) -> None:
    """Undo the completed steps of WAVE's last run, newest first."""
    if forensic_override is not None and not forensic_override.strip():
        raise click.UsageError("--forensic-override needs the reason")
    outcome = commands.rollback(o.inventory(), wave, bus=o.bus(), confirm=confirm_with(yes), limit=limit,
                                forensic_override=forensic_override)
    _finish(o, outcome)


@cli.command(epilog=EXIT_CODES)
@click.argument("wave")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@click.pass_obj
def finalize(o: Options, wave: str, yes: bool) -> None:
    """End WAVE for good after go-live and the confirmation period: the way back ends, the staged
    copies are deleted, the wave is marked final (NO ROLLBACK AFTER IT), and a last evidence pack
    is written."""
    _finish(o, commands.finalize(o.inventory(), wave, bus=o.bus(), confirm=confirm_with(yes)))


@cli.command(epilog=EXIT_CODES)
@click.argument("wave", required=False)
@json_option
@click.pass_obj
def status(o: Options, wave: str | None) -> None:
    """Each wave's steps, with state and timings."""
    result = commands.status(o.inventory(), wave)
    if o.json:
        click.echo(json.dumps(result, indent=2, default=str))
        return
    out.print(f"journal {result['journal']} (chain {result['chain']})")
    for slot in result.get("stray_slots", []):
        out.print(f"[bold red]replication slot {slot['slot']} on {slot['server']} (database {slot['database']})"
                  f" belongs to no live wave and keeps {slot['retained_wal_bytes'] or 0} bytes of WAL[/]")
    for name, w in result["waves"].items():
        out.print(f"[bold]{name}[/]: {w['status']}" + (f" (run {w['run_id']}, {w['operator']})" if "run_id" in w else ""))
        if w.get("rehearsal"):
            r = w["rehearsal"]
            out.print(f"  rehearsal: ran in {r['run_seconds']:.1f}s, rolled back in {r['rollback_seconds']:.1f}s")
        if w.get("approval"):
            out.print(f"  go/no-go: approved by {w['approval']['approved_by'] or w['approval']['how']}")
        for db, now in (w.get("sync") or {}).items():
            out.print(f"  sync {db}: {_sync_line(now)}")
        if w.get("freeze"):
            f = w["freeze"]
            stopped = "under way" if w["status"] in ("running", "interrupted", "awaiting_approval") else "stopped short"
            took = f"{f['seconds']:.1f}s" if f["seconds"] is not None else stopped
            out.print(f"  freeze: {took} from maintenance on to the entry point on the target ("
                      + ", ".join(f"{p['step']} {p['seconds']:.1f}s" for p in f["phases"]) + ")")
        if w.get("lock"):
            out.print(f"  locked by pid {w['lock'].get('pid')} on {w['lock'].get('host')} since {w['lock'].get('since')}")
        table = Table("step", "state", "seconds", "note", box=None, pad_edge=False)
        for s in w.get("steps", []):
            table.add_row(s["id"], s["state"], f"{s['seconds']:.1f}" if s["seconds"] is not None else "",
                          s["error"] or s["noop"] or "")
        if w.get("steps"):
            out.print(table)


def _sync_line(now: dict) -> str:
    slot, sub = now.get("slot_state") or {}, now.get("subscription") or {}
    if now.get("error"):
        return f"{now['state']} ({now['error']})"
    if now.get("fenced_lsn"):
        return f"{now['state']}: the target confirmed {now['confirmed_lsn']} (fenced at {now['fenced_lsn']})"
    parts = [now["state"]]
    if slot:
        lag = f"{now['lag_seconds']:.1f}s" if now.get("lag_seconds") is not None else "?"
        parts.append(f"lag {slot['lag_bytes'] or 0} bytes / {lag}")
        parts.append(f"applied up to {sub.get('applied_lsn') or slot['confirmed_lsn']}")
        age = f", age {now['slot_age_seconds']:.0f}s" if now.get("slot_age_seconds") is not None else ""
        parts.append(f"slot {now['slot']}{age}, {slot['retained_wal_bytes'] or 0} bytes of WAL kept")
    return "; ".join(parts)


@cli.command(epilog=EXIT_CODES)
@click.argument("wave")
@click.option("--force", is_flag=True, help="Remove the lock even if it is still held, when its recorded holder"
              " is gone (never while that process is alive on this host).")
@click.pass_obj
def unlock(o: Options, wave: str, force: bool) -> None:
    """Clear WAVE's lock when its holder is gone."""
    out.print(commands.unlock(o.inventory(), wave, force=force))


show_paths_option = click.option(
    "--show-paths", is_flag=True, help="Also print the path of each document the report names (it names them by"
    " manifest index and SHA-256: paths can name people); printed here only, never written to a file.")


def _with_paths(inv: config.Inventory, data: dict, show: bool) -> dict:
    """The report with the paths of its documents, for this terminal only (migrate.verify.paths)."""
    if not show:
        return data
    from migrate.verify import paths
    return {**data, "paths": [{"system": d["database"], "object": d["object"], "key": d["key"],
                               "problem": d["problem"], "path": path} for d, path in paths.resolve(inv, data)]}


def _paths_text(shown: list[dict]) -> str:
    lines = ["paths (--show-paths: on this terminal only, written nowhere):"]
    for p in shown:
        key = " ".join(f"{k}={v}" for k, v in p["key"].items())
        lines.append(f"  {p['system']} {p['object']} {key}: {p['problem']}: {p['path']}")
    return "\n".join(lines)


@cli.command(epilog=EXIT_CODES)
@click.argument("wave")
@click.option("--depth", type=click.Choice(["counts", "checksums", "full"]), default="full", show_default=True,
              help="counts: row counts; checksums: segment checksums bisected to keys, evidence digests;"
                   " full: also document bytes re-hashed.")
@show_paths_option
@json_option
@click.pass_obj
def verify(o: Options, wave: str, depth: str, show_paths: bool) -> None:
    """Compare WAVE's target with its source; exit 1 on any difference."""
    from migrate.errors import VerificationFailed
    from migrate.verify import report as reports
    inv = o.inventory()
    data = _with_paths(inv, commands.verify(inv, wave, bus=o.bus(), depth=depth), show_paths)
    _print_report(o, data, reports,
                  VerificationFailed(f"{data['summary']['differences']} difference(s); `migrate report {wave}` shows them"))


@cli.command(epilog=EXIT_CODES)
@click.argument("wave")
@show_paths_option
@json_option
@click.pass_obj
def report(o: Options, wave: str, show_paths: bool) -> None:
    """Print the last verification of WAVE; exit 1 if it found differences."""
    from migrate.errors import VerificationFailed
    from migrate.verify import report as reports
    inv = o.inventory()
    data = _with_paths(inv, commands.report(inv, wave), show_paths)
    _print_report(o, data, reports, VerificationFailed(f"the last verification of {wave} found"
                                                        f" {data['summary']['differences']} difference(s)"))


class DefaultToBuild(click.Group):
    """`migrate evidence WAVE` builds, `migrate evidence verify PACK` checks: a first word that is
    not a subcommand is the wave of `build`."""

    def resolve_command(self, ctx, args):
        if args and args[0] not in self.commands:
            args = ["build", *args]
        return super().resolve_command(ctx, args)


@cli.group(cls=DefaultToBuild, epilog=EXIT_CODES)
def evidence() -> None:
    """Write the evidence pack of a run (`migrate evidence WAVE`), or check one offline
    (`migrate evidence verify DIR|TAR`)."""


@evidence.command("build", epilog=EXIT_CODES)
@click.argument("wave")
@click.option("--run", "run_id", metavar="RUN", help="Which run (default: the wave's last).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Directory to write (default: under"
              " INVENTORY/.state/evidence/).")
@json_option
@click.pass_obj
def evidence_build(o: Options, wave: str, run_id: str | None, out: Path | None) -> None:
    """Write the evidence pack of WAVE's run: a directory and a .tar of it."""
    done = commands.evidence(o.inventory(), wave, run_id=run_id, out=out)
    if o.json:
        click.echo(json.dumps(done))
        return
    note = "signed" if done["signed"] else "NOT signed (no evidence.signing_key in the spec)"
    click.echo(f"evidence pack: {done['path']}\n  tar: {done['tar']} ({done['bytes']:,} bytes, {done['files']} files,"
               f" {note})\n  digest: {done['sha256']}\n  check it: migrate evidence verify {done['tar']}")


@evidence.command("verify", epilog=EXIT_CODES)
@click.argument("pack", type=click.Path(exists=True, path_type=Path))
@click.option("--previous", type=click.Path(exists=True, path_type=Path), help="The pack before it: check the link.")
@click.option("--key", "public_key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The signing key's public PEM as the Comune published it (default: the one in the pack).")
@json_option
@click.pass_obj
def evidence_verify(o: Options, pack: Path, previous: Path | None, public_key: Path | None) -> None:
    """Check a pack offline: checksums, schema, journal chain, page, signatures; exit 1 naming
    the first file that fails."""
    from migrate.evidence import verify as checking
    done = checking.check(pack, previous=previous, public_key=public_key)
    if o.json:
        click.echo(json.dumps(done))
        return
    signed = "signatures verified" if done["signed"] else "not signed"
    click.echo(f"evidence pack {done['pack']}: intact (run {done['run_id']}, {done['journal_records']} journal records,"
               f" {signed}); digest {done['sha256']}")


def _print_report(o: Options, data: dict, reports, failed: MigrateError) -> None:
    """The report, then `failed` when it did not pass (with --json, the report inside the error)."""
    if o.json:
        if data["status"] != "passed":
            raise _with_data(o, failed, data)
        click.echo(json.dumps(data, default=str))
    else:
        click.echo(reports.text(data), nl=False)
        if data.get("freeze") and data["freeze"].get("seconds") is not None:
            f = data["freeze"]
            click.echo(f"freeze: {f['seconds']:.1f}s from maintenance on to the entry point on the target ("
                       + ", ".join(f"{p['step']} {p['seconds']:.1f}s" for p in f["phases"]) + ")")
        if data.get("paths"):
            click.echo(_paths_text(data["paths"]))
        if data["status"] != "passed":
            raise failed


def _finish(o: Options, outcome: WaveOutcome) -> None:
    if o.json:
        click.echo(json.dumps(outcome.to_json()))
    else:
        out.print(f"[bold]{outcome.message}[/]")
    if outcome.status == "cancelled":
        sys.exit(1)


from migrate.lab_cli import lab  # noqa: E402  (registers the `lab` group)

cli.add_command(lab)


def _json_error(message: str, exit_code: int, exc: BaseException | None = None) -> None:
    """With --json, an error is one JSON object on stdout too: the error, the exit code, and the
    outcome or the data the command had (which systems got through, the failed findings)."""
    found: dict = {}
    outcome = getattr(exc, "outcome", None)
    if outcome is not None:
        found.update({**outcome.to_json(), "plan": None})
    found.update(getattr(exc, "data", None) or {})
    problems = getattr(exc, "problems", None)
    if problems and len(problems) > 1:
        found["problems"] = list(problems)
    click.echo(json.dumps({**found, "error": message, "exit": exit_code}, default=str))


def main() -> None:
    argv = sys.argv[1:]
    debug, as_json = "--debug" in argv, "--json" in argv
    environ.hold_libpq_variables()

    def fail(message: str, exit_code: int, exc: BaseException | None = None, *, lines=None) -> None:
        if as_json:
            _json_error(message, exit_code, exc)
        for line in lines or [message]:
            err.print(line, markup=False, soft_wrap=True)
        sys.exit(exit_code)

    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        fail("aborted", 1)
    except click.ClickException as exc:
        if as_json:
            _json_error(exc.format_message(), 2)
        exc.show()
        sys.exit(2)
    except MigrateError as exc:
        if debug:
            traceback.print_exc()
        fail(str(exc), exc.exit_code, exc, lines=[f"error: {line}" for line in getattr(exc, "problems", [str(exc)])])
    except KeyboardInterrupt:
        fail("interrupted; `migrate status` shows where the wave stands", 1)
    except Exception as exc:  # a bug: one line unless --debug
        if debug:
            traceback.print_exc()
        fail(f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", 1)


if __name__ == "__main__":
    main()
