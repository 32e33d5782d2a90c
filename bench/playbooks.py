"""Time the wave's playbooks as the adapter runs them (migrate.adapters.ansible.run_playbook):
the freeze (maintenance on, with the collector's drain) and its undo, the target configuration
(present) and its undo, the front door switch and its undo; optionally the same in check mode.

    .venv/bin/python bench/playbooks.py -i INVENTORY [--rounds N] [--check] [--playbooks DIR ...]

INVENTORY is a lab's inventory (`inventories/lab` for the default lab, or the test lab's, e.g.
.lab-ansible/inventory written by tests/integration/lab_support.write_inventory). Each round
changes the lab and puts it back: the flags, the configuration files and the front door's
upstreams are as before at the end (the drain loads the collector's late punches into the
source, as a freeze does). Prints the median, min and max seconds per playbook.

--playbooks DIR (repeatable) times the playbooks in DIR instead of playbooks/, e.g. an older
revision's (mkdir /tmp/old && git archive REV playbooks | tar -x -C /tmp/old); with several,
each round runs every DIR in turn, so a noisy machine weighs on all of them alike. (Playbooks
from before warm waves know no state rendered/started/stopped: their "warm" rows do nothing.)
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from pathlib import Path

from migrate import config
from migrate.adapters import ansible
from migrate.facts.cutover import FrontDoorUpstreams
from migrate.steps import wave as wave_steps
from migrate.steps.app import Configure, Freeze

try:  # warm waves: the configuration rendered before the freeze, the start inside it
    from migrate.steps.app import StartTargets
except ImportError:
    StartTargets = None
from migrate.steps.base import Run


class _Absent(dict):
    """Facts for planning: no flag and no configuration file exists yet."""

    def __missing__(self, key):
        return False


def _action(step, run, label: str, which: str) -> tuple[str, str, list[str], dict]:
    a = step.plan(run, _Absent()).actions[0]
    a = a if which == "do" else a.undo
    p = a.args
    return f"{label} {p['vars']['state']} ({p['hosts'][0]})", p["playbook"], p["hosts"], p["vars"]


def cases(inv: config.Inventory, wave: str) -> list[tuple[str, str, list[str], dict]]:
    """(label, playbook, hosts, vars) in the order a wave and its rollback run them: the freeze
    and its undo, the target configuration (rendered and started) and its undo, then, if the
    steps have warm waves, the same as a warm wave runs them (rendered before the freeze, started
    inside it), then the front door's switch and its undo."""
    run = Run(inv, wave, "bench")
    steps = wave_steps.build(inv.spec, wave)
    found = []
    for step in (s for s in steps if isinstance(s, Freeze)):
        found += [_action(step, run, "maintenance", "do"), _action(step, run, "maintenance", "undo")]
    for step in (s for s in steps if isinstance(s, Configure)):
        found += [_action(step, run, "app_config", "do"), _action(step, run, "app_config", "undo")]
    if StartTargets is not None:
        warm = wave_steps.build(inv.spec, wave, warm=True) + steps
        for step in (s for s in warm if isinstance(s, Configure) and not s.start):
            start = next(s for s in warm if isinstance(s, StartTargets) and s.host == step.host)
            found += [_action(step, run, "warm app_config", "do"), _action(start, run, "warm app_config", "do"),
                      _action(start, run, "warm app_config", "undo"), _action(step, run, "warm app_config", "undo")]
    entry = inv.spec.entry_point
    if entry.proxy_host:
        before = FrontDoorUpstreams(entry.proxy_host, entry.proxy_config_path).collect(inv)
        switched = {**before, **{s.app.service_name: inv.hosts[s.app.target_host].vars["app_url"]
                                 for n in inv.spec.waves[wave].systems if (s := inv.spec.systems[n]).app}}
        for label, upstreams in (("front_door switch", switched), ("front_door back", before)):
            found.append((label, "front_door.yml", [entry.proxy_host],
                          {"config_path": entry.proxy_config_path, "template": entry.proxy_template,
                           "upstreams": upstreams}))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-i", "--inventory", default="inventories/lab")
    parser.add_argument("--wave", default="wave-1")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--check", action="store_true", help="also time each playbook in check mode")
    parser.add_argument("--playbooks", action="append", type=Path, metavar="DIR",
                        help="time the playbooks in DIR (repeatable; default: playbooks/)")
    args = parser.parse_args()
    inv = config.load(args.inventory)
    todo = cases(inv, args.wave)
    dirs = [d.resolve() for d in args.playbooks or [ansible.PLAYBOOKS]]
    times: dict[tuple[str, Path], list[float]] = defaultdict(list)
    for _ in range(args.rounds):
        for directory in dirs:
            ansible.PLAYBOOKS = directory
            for check in (True, False) if args.check else (False,):
                for label, playbook, hosts, vars in todo:
                    started = time.monotonic()
                    result = ansible.run_playbook(inv, playbook, hosts, vars, check=check)
                    seconds = time.monotonic() - started
                    if not result.ok:
                        raise SystemExit(f"{label} ({directory}{', check' if check else ''}) failed: {result.status}"
                                         f" rc {result.rc}, see {result.artifacts}")
                    times[(f"{label}{' --check' if check else ''}", directory)].append(seconds)
    labels = list(dict.fromkeys(label for label, _ in times))
    width = max(len(k) for k in labels)
    print(f"{args.rounds} rounds, {args.inventory}; median (min-max) seconds per run")
    print(f"| {'playbook':<{width}} | " + " | ".join(str(d) for d in dirs) + " |")
    print(f"|{'-' * (width + 2)}|" + "---|" * len(dirs))
    for label in labels:
        cells = [times[(label, d)] for d in dirs]
        print(f"| {label:<{width}} | " + " | ".join(f"{statistics.median(v):.2f} ({min(v):.2f}-{max(v):.2f})"
                                                       for v in cells) + " |")


if __name__ == "__main__":
    main()
