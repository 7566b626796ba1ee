#!/usr/bin/env bash
# A method on Fashion-MNIST, one-vs-rest over all 10 classes, its paper defaults, 32 px, on the budget protocol every
# method's table uses: train_subset=1000 normals (10% of them validation), test_subset=1000 (100 per class), seed 0.
# Usage: scripts/fmnist_budget.sh METHOD [DIR holding the Fashion-MNIST IDX files] [extra overrides…]
#   DIR defaults to $ADRUN_DATA/fashion-mnist, as conf/data/fashion_mnist.yaml's root does.
# Writes outputs/<METHOD>_fmnist_budget/summary.md, or $SWEEP_DIR/summary.md where that is set.
# Three seeds (each also draws its own 1,000-image subsets, data.seed following seed): append seed=0,1,2.
set -euo pipefail
method=${1:?usage: scripts/fmnist_budget.sh METHOD [DATA_DIR] [overrides…]}
root=${2:-${ADRUN_DATA:-data}/fashion-mnist}
shift $(($# < 2 ? $# : 2))
exec adrun -m method="$method" data=fashion_mnist data.root="$root" data.normal_class="range(10)" \
  data.train_subset=1000 data.test_subset=1000 data.image_size=32 hydra.sweep.dir="${SWEEP_DIR:-outputs/${method}_fmnist_budget}" "$@"
