#!/usr/bin/env bash
# GANomaly choice by choice (docs/results/ganomaly_choices.md): the paper's defaults, then each switch of
# experiment=ganomaly_anomalib alone, on the Fashion-MNIST budget protocol (scripts/fmnist_budget.sh: 10 classes, 1,000
# training normals of which 100 validate, 1,000 test images, 32 px), seeds $SEEDS; anomalib's own GANomaly on the same
# files (scripts/peers/anomalib.sh); then one adrun-report with --baseline ganomaly.
#   scripts/ganomaly_choices.sh OUT_DIR [DATA_DIR] [overrides for every adrun sweep, e.g. launcher=local launcher.n_jobs=2]
#   ONLY="defaults init_torch" scripts/ganomaly_choices.sh …     # some rows only (names below); PEER=0: no anomalib
# A row whose summary.md exists is skipped, so an interrupted run goes on where it stopped. score_mse re-tests the
# defaults' checkpoints (the score changes, the training does not). On a GPU: hardware=gpu launcher=local.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:?usage: scripts/ganomaly_choices.sh OUT_DIR [DATA_DIR] [overrides…]}
data=${2:-${ADRUN_DATA:-data}/fashion-mnist}
shift $(($# < 2 ? $# : 2))
seeds=${SEEDS:-0,1}
mkdir -p "$out"
declare -A rows=(
  [defaults]=""
  [drop_last_false]="data.drop_last=false"
  [init_torch]="method.init=torch"
  [adv_outputs]="method.adv_loss=outputs"
  [enc_smooth_l1]="method.enc_loss=smooth_l1"
  [padding4]="method.first_padding=4"
  [d_reinit_off]="method.d_reinit_below=0.0"
  [channels3]="data.channels=3"
  [batch32]="data.batch_size=32"
  [imagenet]="method.input_norm=imagenet data.channels=3"
  [matched]="experiment=ganomaly_anomalib method.input_norm=tanh data.batch_size=64"
  [matched_drop]="experiment=ganomaly_anomalib method.input_norm=tanh data.batch_size=64 data.drop_last=true"
  # matched_drop but the paper's DCGAN init: what init=torch costs beside anomalib's other choices
  [matched_dcgan]="experiment=ganomaly_anomalib method.input_norm=tanh data.batch_size=64 data.drop_last=true method.init=dcgan"
  [preset]="experiment=ganomaly_anomalib"
)
order="defaults drop_last_false init_torch adv_outputs enc_smooth_l1 padding4 d_reinit_off channels3 batch32 imagenet"
order="$order matched matched_drop matched_dcgan preset"
wanted=${ONLY:-$order score_mse}
for name in $order; do
  [[ " $wanted " == *" $name "* ]] || continue
  [[ -f $out/$name/summary.md ]] && continue
  # shellcheck disable=SC2086  # a row's overrides are words
  SWEEP_DIR=$out/$name "$here/fmnist_budget.sh" ganomaly "$data" seed="$seeds" ${rows[$name]} "$@"
done
if [[ " $wanted " == *" score_mse "* ]]; then
  for run in "$out"/defaults/*/; do
    [[ -f $run/checkpoints/last.ckpt && ! -f $out/score_mse/$(basename "$run")/results.json ]] || continue
    adrun mode=test ckpt="$run" method.score_norm=mse hydra.run.dir="$out/score_mse/$(basename "$run")"
  done
fi
if [[ ${PEER:-1} == 1 ]]; then
  for seed in ${seeds//,/ }; do
    for class in 0 1 2 3 4 5 6 7 8 9; do
      [[ -f $out/anomalib/${seed}_$class/results.json ]] && continue
      "$here/peers/anomalib.sh" "$out/anomalib/${seed}_$class" data=fashion_mnist data.root="$data" \
        data.normal_class=$class data.train_subset=1000 data.test_subset=1000 data.image_size=32 seed="$seed"
    done
  done
fi
adrun-report "$out"/*/ --baseline ganomaly --out "$out/report"
