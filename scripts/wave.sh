#!/usr/bin/env bash
# The main job on the local lab: install, bring the lab up, run wave-1 end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/migrate lab up
time .venv/bin/migrate -i inventories/lab run wave-1 --yes --approve "lab operator ($(whoami))" "$@"
.venv/bin/migrate -i inventories/lab status wave-1
