#!/usr/bin/env bash
# Predict throughput per method on this machine: each method is trained for one epoch on synthetic 32 px textures
# (the weights do not change the cost), then `adrun mode=predict` scores a folder of N mixed-size PNGs.
# Prints, per method, images/s for decoding + scoring, and for the whole call (CSV, overlays, TensorBoard included).
# Usage: scripts/bench_predict.sh [N=200] [WORK=/tmp/adrun_bench_predict] [methods…]
set -euo pipefail
n=${1:-200}
work=${2:-/tmp/adrun_bench_predict}
shift $(($# < 2 ? $# : 2))
methods=("$@")
[ ${#methods[@]} -gt 0 ] || methods=(ganomaly anogan fanogan ognet ada students)
declare -A extra=(
  [ganomaly]="method.epochs=1"
  [anogan]="method=anogan method.epochs=1"
  [fanogan]="method=fanogan method.gan_epochs=1 method.encoder_epochs=1"
  [ognet]="method=ognet method.low_epoch=1 method.high_epoch=2 method.phase2_iterations=5"
  [ada]="method=ada method.epochs=1"
  [students]="method=students method.epochs=1 method.patch_sizes=[33] method.students=5 method.teacher_iterations=20
    method.teacher_cache=$work/teachers data.batch_size=8"
)
mkdir -p "$work/images"
python - "$work/images" "$n" <<'EOF'
import sys
from pathlib import Path

import numpy as np
from PIL import Image

folder, n = Path(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
for i in range(n):
    size = (int(rng.integers(24, 129)), int(rng.integers(24, 129)))
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).convert("L" if i % 2 else "RGB").save(folder / f"{i:04d}.png")
EOF
echo "| method | images | decode + score img/s | whole call img/s | threshold |"
echo "|---|---|---|---|---|"
for method in "${methods[@]}"; do
  run="$work/$method"
  adrun data=synthetic data.image_size=32 ${extra[$method]:-} hydra.run.dir="$run/train" \
    > "$run.train.log" 2>&1
  adrun mode=predict ckpt="$run/train" input="$work/images" hydra.run.dir="$run/predict" > "$run.predict.log" 2>&1
  python -c "
import json, sys
r = json.load(open('$run/predict/results.json'))
t = r['timings']
print(f\"| $method | {r['counts']['images']} | {t['images_per_s']:.1f} | {r['counts']['images'] / t['total_s']:.1f} | {r['threshold']['value']:.4g} |\")"
done
