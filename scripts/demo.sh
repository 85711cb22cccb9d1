#!/usr/bin/env bash
# The main job on the embedded model, in a scratch project: edit, commit, log, evaluate, revert.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bash "$repo/scripts/setup.sh"
export PATH="$repo/.venv/bin:$PATH"
work=${KVC_DEMO_DIR:-$repo/scratch/demo}
rm -rf "$work" && mkdir -p "$work" && cd "$work"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step kvc model generate smollm2 "The Eiffel Tower is located in the city of"
step kvc init --model smollm2
step kvc compile "$repo/specs/eiffel_rome.kedit" --derive   # what follows from Rome: Italy, asked of the model
step kvc commit "$repo/specs/demo.kedit" -m "Rewrite four well-known facts"
step kvc commit "$repo/specs/demo_extra.kedit" -m "Move the Colosseum to London"
step kvc log --metrics
step kvc revert HEAD
step kvc eval
step kvc log --oneline
step kvc fsck
