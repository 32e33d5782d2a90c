"""`--limit SYSTEM`: a wave narrowed to one system, journalled apart under `wave@system`, and the
rules that keep the narrowed runs and the whole wave's runs from stepping on each other."""

from __future__ import annotations

from migrate.config import SPEC_FILE, Inventory
from migrate.engine import state
from migrate.engine.journal import Journal
from migrate.errors import ConfigError, MigrateError


def check_wave(inv: Inventory, wave: str) -> None:
    if wave not in inv.spec.waves:
        known = ", ".join(sorted(inv.spec.waves))
        raise ConfigError(f"{inv.path / SPEC_FILE}: waves: no wave '{wave}' (known: {known})")


def scoped(inv: Inventory, wave: str, limit: str | None) -> tuple[Inventory, str]:
    """The inventory a run sees and the journal key of its runs."""
    check_wave(inv, wave)
    if not limit:
        return inv, wave
    return inv.limited(wave, limit), f"{wave}@{limit}"


def limit_of(key: str) -> str | None:
    return key.split("@", 1)[1] if "@" in key else None


def covers(inv: Inventory, wave: str, key: str) -> set[str]:
    system = limit_of(key)
    return {system} if system else set(inv.spec.waves[wave].systems)


def active(j: Journal, wave: str) -> dict[str, state.RunView]:
    """Every journal key of `wave` whose last run is not rolled back, with that run."""
    found = {}
    for key in j.waves():
        if key == wave or key.startswith(wave + "@"):
            view = state.latest(j.records(wave=key))
            if view and view.status != "rolled_back":
                found[key] = view
    return found


def check_run(inv: Inventory, j: Journal, wave: str, key: str) -> None:
    """A run may start: no other active run holds one of its systems, and under --limit every
    system it depends on in this wave was migrated by a completed run."""
    runs = active(j, wave)
    mine = covers(inv, wave, key)
    for other, view in runs.items():
        shared = mine & covers(inv, wave, other)
        if other != key and shared:
            raise MigrateError(f"{wave}: {', '.join(sorted(shared))} belongs to run {view.run_id} ({other},"
                               f" {view.status}); finish or roll back that one first")
    system = limit_of(key)
    if system:
        done = set().union(*[covers(inv, wave, k) for k, v in runs.items() if v.status == "completed"])
        for dep in inv.spec.systems[system].depends_on:
            if dep in inv.spec.waves[wave].systems and dep not in done:
                raise ConfigError(f"--limit {system}: it depends on {dep}, which no completed run of {wave}"
                                  f" has migrated; run `--limit {dep}` first")  # bad usage: exit 2


def check_rollback(inv: Inventory, j: Journal, wave: str, key: str) -> None:
    """A narrowed rollback may not take away a system another active run depends on."""
    system = limit_of(key)
    if not system:
        return
    for other, view in active(j, wave).items():
        users = {s for s in covers(inv, wave, other) if system in inv.spec.systems[s].depends_on}
        if other != key and users:
            raise MigrateError(f"--limit {system}: {', '.join(sorted(users))} depends on it and is still migrated"
                               f" (run {view.run_id}); roll that back first")
