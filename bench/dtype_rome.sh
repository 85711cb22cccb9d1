#!/usr/bin/env bash
# bfloat16 vs float32 ROME on the first N CounterFact records (the records of counterfact100_rome.json),
# one thread, on the CPU. Usage: bash bench/dtype_rome.sh [N]   (JSON in bench/results/dtype_rome_*.json)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10}   # PYTHON=.venv/bin/python to choose the interpreter
for dtype in bfloat16 float32; do
  OMP_NUM_THREADS=1 PYTHONPATH=$PWD nice -n 5 "${PYTHON:-python}" -m kedit_vc.cli.main bench counterfact \
    --n "$N" --method rome --dtype "$dtype" --device cpu --no-progress --json "bench/results/dtype_rome_${dtype}.json"
done
