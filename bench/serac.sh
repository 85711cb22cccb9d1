#!/usr/bin/env bash
# SERAC on SmolLM2: train the scope classifier on records disjoint from the evaluated ones
# (CounterFact import records 300-449 and zsRE 100-249; evaluated: CounterFact 0-19 and zsRE 0-19),
# then edit and score 20 + 20 records with bench/incontext.py. One thread, nice.
#   OMP_NUM_THREADS=1 nice -n 5 bash bench/serac.sh > /work/notes/serac.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${KVC_DATA:-$(cd .. && pwd)/shared/data}
PY=${PY:-python}
N=${N:-20}
/usr/bin/time -v $PY -m kedit_vc.cli.main train serac --model smollm2 --no-progress \
  --data "counterfact:$DATA/counterfact_500.json@300:450" \
  --data "zsre:$DATA/zsre_eval_portability_1037.json@100:250"
cd bench
$PY incontext.py --methods serac --n "$N" --cf-start 0 --zsre-start 0 --neighbours 2 --queries 10 --name serac20
