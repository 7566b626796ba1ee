#!/usr/bin/env bash
# docs/results/fmnist_budget's table: every method at its paper defaults on the Fashion-MNIST budget protocol
# (scripts/fmnist_budget.sh), the example method examples/tiny_ae beside them, seeds $SEEDS (default 0,1,2), then
# adrun-report with intervals, ranks, Friedman and --baseline ganomaly.
#   scripts/fmnist_budget_table.sh OUT_DIR [DATA_DIR] [overrides for every sweep, e.g. launcher=local launcher.n_jobs=2]
#   METHODS="ganomaly fanogan" scripts/fmnist_budget_table.sh …      # some methods (default: all, tiny_ae included)
# A method whose summary.md exists is skipped: an interrupted table goes on where it stopped (resume=true inside a
# sweep is yours to add). On a GPU: hardware=gpu launcher=local.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:?usage: scripts/fmnist_budget_table.sh OUT_DIR [DATA_DIR] [overrides…]}
data=${2:-${ADRUN_DATA:-data}/fashion-mnist}
shift $(($# < 2 ? $# : 2))
examples=$(cd "$here/../examples/tiny_ae" && pwd)
for method in ${METHODS:-ganomaly fanogan ognet ada students anogan tiny_ae}; do
  [[ -f $out/$method/summary.md ]] && continue
  extra=()
  if [[ $method == tiny_ae ]]; then  # a researcher's own method: its config dir and its module on the paths
    extra=(hydra.searchpath="['file://$examples/conf']")
    export PYTHONPATH="$examples${PYTHONPATH:+:$PYTHONPATH}"
  fi
  SWEEP_DIR=$out/$method "$here/fmnist_budget.sh" "$method" "$data" seed="${SEEDS:-0,1,2}" "${extra[@]}" "$@"
done
adrun-report "$out"/*/ --baseline ganomaly --out "$out/report"
