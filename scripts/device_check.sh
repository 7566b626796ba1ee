#!/usr/bin/env bash
# Issue 17's GPU figures in one pass, for one H100/H200-class GPU and about 9 minutes of device time:
#   1. the GPU tests (tests/test_gpu.py: every method on the GPU, kill-and-resume bit-exact, compile/channels_last);
#   2. the full Fashion-MNIST GANomaly table (10 classes × 6,000 normals × 15 epochs, all 10,000 test images), all 10
#      jobs at once on the GPU (launcher=local, launcher.jobs_per_gpu=$JOBS_PER_GPU), timed wall-clock;
#   3. scripts/bench_gpu.py --quick: bare step vs runner, every method at its paper size;
#   4. the switches' figures: GANomaly 32 px batch 64 under channels_last, 32-true/16-mixed/bf16-mixed, compile.
# Each step has its own time limit within a total of $BUDGET_S seconds, most important first; a step that runs out
# is said and the next one runs. Everything goes under $OUT (the device tool's output folder) when set, else under
# outputs/device_check/<time>: log.txt (all output), env.txt, pytest.txt, fmnist_table/ (summary.md, summary.csv, each
# job's results.json and adrun.log), bench_gpu.md, switches.md, times.txt.
#   bash scripts/device_check.sh
#   FMNIST=/path/to/fashion-mnist bash scripts/device_check.sh        # the IDX files (default: searched, see below)
#   DEVICE=cpu TINY=1 bash scripts/device_check.sh                    # the CPU-safe parts with tiny settings (a check)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-outputs/device_check/$(date +%Y-%m-%d_%H-%M-%S)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
DEVICE=${DEVICE:-cuda}
TINY=${TINY:-0}
BUDGET_S=${BUDGET_S:-540}
JOBS_PER_GPU=${JOBS_PER_GPU:-10}
SCRATCH=$(mktemp -d)
exec > >(tee -a "$OUT/log.txt") 2>&1
start=$SECONDS

left() { echo $((BUDGET_S - (SECONDS - start))); }

step() {  # step NAME LIMIT_S COMMAND…: runs COMMAND under min(LIMIT_S, what is left), records its wall time (s)
  local name=$1 limit=$2
  shift 2
  local budget
  budget=$(left)
  ((limit > budget)) && limit=$budget
  if ((limit < 20)); then
    echo "== $name: skipped, the budget is spent" | tee -a "$OUT/times.txt"
    return
  fi
  echo "== $name (limit ${limit}s): $*"
  local t0=$SECONDS
  timeout --signal=INT --kill-after=15 "$limit" "$@"
  local code=$?
  echo "== $name: exit $code after $((SECONDS - t0)) s$( ((code == 124)) && echo ' (ran out of time)')" |
    tee -a "$OUT/times.txt"
}

# 0. the environment: adrun and the joblib launcher importable, else installed (editable) from this tree
if ! python -c "import adrun, hydra_plugins.hydra_joblib_launcher" 2>/dev/null; then
  timeout 150 pip install -q -e ".[cluster]" || timeout 60 pip install -q --no-deps --no-build-isolation -e .
fi
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  python -c "import torch, pytorch_lightning as pl; print('torch', torch.__version__, 'cuda', torch.version.cuda,
'lightning', pl.__version__, 'gpus', torch.cuda.device_count())"
  echo "cpus $(nproc)"
} | tee "$OUT/env.txt"

# Fashion-MNIST's IDX files: $FMNIST, else the first of these that holds them
if [[ -z ${FMNIST:-} ]]; then
  for dir in shared/data/fashion-mnist "${ADRUN_DATA:-data}/fashion-mnist" data/fashion-mnist ../shared/data/fashion-mnist; do
    [[ -d $dir ]] && FMNIST=$(cd "$dir" && pwd) && break
  done
fi

if [[ $DEVICE == cpu ]]; then
  hardware=(hardware=cpu)
  bench=(--device cpu)
else
  hardware=(hardware=gpu launcher.jobs_per_gpu="$JOBS_PER_GPU")
  bench=(--device cuda)
fi
table_tiny=() bench_tiny=() methods=()
if [[ $TINY == 1 ]]; then
  table_tiny=(data.train_subset=200 data.test_subset=100 method.epochs=1 'data.normal_class=range(2)')
  bench_tiny=(data.n_train=64 data.n_test=16)
  methods=(--methods ganomaly)
fi

# 1. the GPU tests
step "gpu tests" 170 python -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider 2>&1 | tee "$OUT/pytest.txt"

# 2. the full Fashion-MNIST GANomaly table, wall-clock
if [[ -n ${FMNIST:-} && -d $FMNIST ]]; then
  sweep=$SCRATCH/fmnist_table
  step "fmnist table" 210 adrun -m launcher=local "${hardware[@]}" method=ganomaly data=fashion_mnist \
    data.root="$FMNIST" 'data.normal_class=range(10)' data.image_size=32 "${table_tiny[@]}" hydra.sweep.dir="$sweep"
  mkdir -p "$OUT/fmnist_table"
  cp "$sweep"/summary.* "$OUT/fmnist_table/" 2>/dev/null
  for job in "$sweep"/[0-9]*; do
    [[ -d $job ]] || continue
    mkdir -p "$OUT/fmnist_table/$(basename "$job")"
    cp "$job"/results.json "$job"/adrun.log "$OUT/fmnist_table/$(basename "$job")/" 2>/dev/null
  done
  cat "$OUT/fmnist_table/summary.md" 2>/dev/null
else
  echo "== fmnist table: skipped, no Fashion-MNIST IDX files (set FMNIST=<dir>)" | tee -a "$OUT/times.txt"
fi

# 3. bare step vs runner, every method at its paper size
step "bench_gpu --quick" 150 python scripts/bench_gpu.py "${bench[@]}" --quick "${methods[@]}" "${bench_tiny[@]}" |
  tee "$OUT/bench_gpu.md"

# 4. the switches' figures (GANomaly 32 px batch 64)
step "bench_gpu --switches" 120 python scripts/bench_gpu.py "${bench[@]}" --quick --switches "${bench_tiny[@]}" |
  tee "$OUT/switches.md"

rm -rf "$SCRATCH"
echo "== device check done in $((SECONDS - start)) s; results in $OUT"
