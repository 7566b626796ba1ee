#!/usr/bin/env bash
# TinyAE beside GANomaly on Fashion-MNIST's budget protocol (as scripts/fmnist_budget.sh runs it for one method):
# one-vs-rest over the 10 classes, 1,000 training normals and 1,000 test images drawn per seed, 32 px, seeds 0, 1, 2;
# both methods with their defaults (15 epochs). Then adrun-report's table, tiny_ae's column beside ganomaly's.
# Usage: examples/tiny_ae/benchmark.sh [overrides…]   e.g. data.root=/path/to/fashion-mnist hardware=gpu
#   The data: data.root, default $ADRUN_DATA/fashion-mnist (the four IDX files as published).
#   Overrides given here come last and win: data.normal_class=0,1 seed=0 method.epochs=1 for a quick look.
# Writes the sweep to $SWEEP_DIR (default outputs/tiny_ae_fmnist_budget) and the report (report.md, .csv, .png) to
# $SWEEP_DIR/report; prints the table. Exit status: the sweep's (1 if a job failed; the report lists it).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
sweep=${SWEEP_DIR:-outputs/tiny_ae_fmnist_budget}
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"  # tiny_ae.py importable: adrun does not add the config dir
adrun -m method=tiny_ae,ganomaly hydra.searchpath="['file://$here/conf']" \
  data=fashion_mnist data.normal_class="range(10)" data.train_subset=1000 data.test_subset=1000 data.image_size=32 \
  seed=0,1,2 hydra.sweep.dir="$sweep" "$@"
status=$?
[ $status -le 1 ] || exit $status  # 2: a user error before anything ran (one line above)
adrun-report "$sweep" --out "$sweep/report" || exit
exit $status
