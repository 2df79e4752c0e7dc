#!/usr/bin/env bash
# Create .venv and install the pinned requirements. Works on a bare Debian 12 as root.
# The runtime is requirements.txt plus the optional apprise extra (requirements-apprise.txt);
# `scripts/bootstrap.sh dev` installs requirements-dev.txt instead: the complete set, with what the
# tests and tools need. Every file pins each package with its hashes, so pip checks every download.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"

if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
    echo "DockMon needs Python 3.11 or newer as '$PYTHON' (Debian 12: apt-get install python3)." >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    if ! "$PYTHON" -m venv .venv 2>/dev/null; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
            rm -rf .venv && "$PYTHON" -m venv .venv
        else
            echo "Cannot create a virtualenv: install python3-venv (apt-get install python3-venv)." >&2
            exit 1
        fi
    fi
fi
files=(requirements.txt requirements-apprise.txt)
[ "${1:-}" = dev ] && files=(requirements-dev.txt)
stamp=.venv/.requirements.sha
want=$(cat "${files[@]}" | sha256sum | cut -d' ' -f1)
# A dev install covers the runtime one: `make run` after `make test` installs nothing more.
dev_want=$(cat requirements-dev.txt | sha256sum | cut -d' ' -f1)
have=$(cat "$stamp" 2>/dev/null || true)
if [ "$have" != "$want" ] && [ "$have" != "$dev_want" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    args=()
    for file in "${files[@]}"; do args+=(-r "$file"); done
    if [ -d wheels ]; then
        .venv/bin/python -m pip install -q --no-index --find-links wheels "${args[@]}"
    else
        .venv/bin/python -m pip install -q "${args[@]}"
    fi
    echo "$want" > "$stamp"
fi
