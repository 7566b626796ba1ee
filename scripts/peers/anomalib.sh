#!/usr/bin/env bash
# anomalib's model on the very files an adrun run reads, written as a run dir adrun-report puts beside adrun's columns.
# Usage: scripts/peers/anomalib.sh RUN_DIR <adrun overrides…>
#   e.g. scripts/peers/anomalib.sh outputs/peers/anomalib/0 data=fashion_mnist data.root=DIR data.normal_class=0 \
#          data.train_subset=1000 data.test_subset=1000 data.image_size=32 seed=0
# 1. export (adrun's environment: $ADRUN_PYTHON, default python): the overrides' train/val/test split, as adrun decodes
#    it, as PNGs in RUN_DIR/files, with index.csv (each test PNG's adrun index and id);
# 2. peer (its own venv, made once by scripts/peers/venv.sh; $ADRUN_PEERS_VENV; PYTHONPATH unset): anomalib trains
#    and scores them, RUN_DIR/peer/{scores.csv,peer.json};
# 3. finish (adrun's environment): RUN_DIR/{results.json,config.yaml,scores.csv}, metrics by adrun's evaluation.
# PEER_MODEL (Ganomaly), PEER_EPOCHS (15), PEER_THREADS (1) and PEER_INIT_ARGS ("batch_size=64 wcon=40": the model's
# constructor) choose the peer's settings; the model's own defaults otherwise.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
run_dir=${1:?usage: scripts/peers/anomalib.sh RUN_DIR <adrun overrides…>}
shift
adrun_python=${ADRUN_PYTHON:-python}
seed=0
for override in "$@"; do
  if [[ $override == seed=* ]]; then seed=${override#seed=}; fi
done
if [[ -e $run_dir/results.json ]]; then echo "peers: $run_dir already holds a run" >&2; exit 2; fi
peer_python=$("$here/venv.sh" anomalib)
init_args=()
for arg in ${PEER_INIT_ARGS:-}; do init_args+=(--init-arg "$arg"); done
mkdir -p "$run_dir"
"$adrun_python" "$here/export.py" export "$@" --out "$run_dir/files"
env -u PYTHONPATH "$peer_python" "$here/run_anomalib.py" --files "$run_dir/files" --out "$run_dir/peer" \
  --model "${PEER_MODEL:-Ganomaly}" --epochs "${PEER_EPOCHS:-15}" --seed "$seed" --threads "${PEER_THREADS:-1}" \
  "${init_args[@]}"
"$adrun_python" "$here/export.py" finish --files "$run_dir/files" --peer "$run_dir/peer" --run-dir "$run_dir"
