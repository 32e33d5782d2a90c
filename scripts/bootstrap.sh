#!/usr/bin/env bash
# Installs what migrate and its lab need on a Debian machine (run as root): the PostgreSQL
# server and client tools, openssh-server, Python's venv, Chromium and poppler-utils (for the
# evidence page's browser test), then the package into .venv.
# Idempotent and quiet when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
[ -x /usr/lib/openssh/sftp-server ] || need+=(openssh-sftp-server)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
# The evidence page's browser test: headless Chromium, and poppler for its print layout.
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v pdftoppm >/dev/null 2>&1 || need+=(poppler-utils)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "bootstrap: missing OS packages (${need[*]}); run as root or install them" >&2
    exit 2
  fi
  echo "bootstrap: installing ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "bootstrap: Python 3.11 or newer is required" >&2; exit 2; }

stamp=.venv/.installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: installing Python packages into .venv" >&2
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e ".[lab,test]"
  echo "$want" > "$stamp"
fi
