#!/usr/bin/env bash
# The main job on the local lab: install, bring the lab up, run wave-1 end to end
# (`--warm`: `migrate sync wave-1` first, then the cutover).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/migrate lab up
if [ "${1:-}" = "--warm" ]; then  # copy while the source is live, then cut over in a short freeze
    shift
    time .venv/bin/migrate -i inventories/lab sync wave-1 --yes "$@"
fi
time .venv/bin/migrate -i inventories/lab run wave-1 --yes --approve "lab operator ($(whoami))" "$@"
.venv/bin/migrate -i inventories/lab status wave-1
# The wave's evidence pack (directory and .tar), then its offline check.
pack=$(.venv/bin/migrate -i inventories/lab --json evidence wave-1 | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["tar"])')
.venv/bin/migrate evidence verify "$pack"
echo "evidence pack: $pack"
