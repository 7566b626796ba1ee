#!/usr/bin/env bash
# GANomaly on Fashion-MNIST, one-vs-rest over all 10 classes, paper defaults, 32 px, 15 epochs, on the budget protocol
# every method's table uses (train_subset=1000 normals, of which 10% validation; test_subset=1000 = 100 per class).
# Usage: scripts/ganomaly_fmnist_budget.sh [DIR holding the Fashion-MNIST IDX files] [extra overrides…]
set -euo pipefail
root=${1:-../shared/data/fashion-mnist}
shift || true
exec adrun -m method=ganomaly data=fashion_mnist data.root="$root" data.normal_class="range(10)" \
  data.train_subset=1000 data.test_subset=1000 data.image_size=32 hydra.sweep.dir=outputs/ganomaly_fmnist_budget "$@"
