#!/usr/bin/env bash
# SERAC on SmolLM2: train the scope classifier on records disjoint from the evaluated ones
# (CounterFact import records 300-449, zsRE 100-249, and three ranges of the flat 5k file that
# share no subject with CounterFact 0-99 (reported) or 450-499 (dev); evaluated: CounterFact 0-99
# and zsRE 0-99), then edit and score N + N records with bench/incontext.py. One thread, nice.
# The classifier's routing threshold is calibrated by `kvc train serac` on its held-out records;
# bench/serac_threshold.py checks it on the dev records.
#   OMP_NUM_THREADS=1 nice -n 5 bash bench/serac.sh > /work/notes/serac.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${KVC_DATA:-$(cd .. && pwd)/shared/data}
PY=${PY:-python}
N=${N:-100}
/usr/bin/time -v $PY -m kedit_vc.cli.main train serac --model smollm2 --no-progress --steps 1000 \
  --data "counterfact:$DATA/counterfact_500.json@300:450" \
  --data "zsre:$DATA/zsre_eval_portability_1037.json@100:250" \
  --data "easyedit:$DATA/counterfact_edit_5k.json@2450:2714" \
  --data "easyedit:$DATA/counterfact_edit_5k.json@2873:3137" \
  --data "easyedit:$DATA/counterfact_edit_5k.json@3469:3782"
cd bench
$PY serac_threshold.py --name serac_threshold_calibrated
$PY incontext.py --methods serac --n "$N" --cf-start 0 --zsre-start 0 --neighbours 5 --queries 10 --name "serac${N}_calibrated"
