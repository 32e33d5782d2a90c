#!/usr/bin/env bash
# The test suite: unit tests, then integration tests against a real lab that the tests start
# in a directory of their own (default ports + 1000, so a running dev lab is left alone).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
