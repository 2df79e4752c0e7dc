#!/usr/bin/env bash
# Compile the requirements-*.in files into the pinned, hash-checked requirements-*.txt (pip-tools).
#   scripts/compile-requirements.sh            after an edit of a .in file: pins that still fit are kept
#   scripts/compile-requirements.sh --upgrade  every package to the newest release its .in allows
# The order matters: the apprise extra and the dev set are constrained by requirements.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh dev  # pip-compile comes with the dev requirements
compile() {
    .venv/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
        --no-emit-find-links "$@"
}
compile "$@" --output-file=requirements.txt requirements.in
compile "$@" --output-file=requirements-apprise.txt requirements-apprise.in
compile "$@" --output-file=requirements-dev.txt requirements-dev.in
git --no-pager diff --stat -- requirements.txt requirements-apprise.txt requirements-dev.txt 2>/dev/null || true
