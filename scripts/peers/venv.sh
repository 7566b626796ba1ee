#!/usr/bin/env bash
# Make (once) the peer's own venv and print its python. Never touches adrun's environment.
# Usage: scripts/peers/venv.sh [anomalib]   → prints $ADRUN_PEERS_VENV/bin/python
# ADRUN_PEERS_VENV: where the venv lives (default ~/.cache/adrun/peers/anomalib-$ANOMALIB_VERSION).
# ANOMALIB_VERSION: the release pinned (default 2.7.0). The venv takes the CPU build of torch (anomalib's [cpu] extra).
set -euo pipefail
library=${1:-anomalib}
[[ $library == anomalib ]] || { echo "peers: only anomalib is supported, not '$library'" >&2; exit 2; }
version=${ANOMALIB_VERSION:-2.7.0}
venv=${ADRUN_PEERS_VENV:-$HOME/.cache/adrun/peers/anomalib-$version}
if [[ ! -f $venv/.ready ]]; then
  base_python=${PEERS_BASE_PYTHON:-python3}
  echo "peers: making $venv (anomalib[cpu]==$version; the first time pulls torch and its dependencies)" >&2
  "$base_python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  "$venv/bin/python" -m pip install "anomalib[cpu]==$version" >&2
  "$venv/bin/python" -c "import anomalib, torch; print('peers: anomalib', anomalib.__version__, torch.__version__)" >&2
  touch "$venv/.ready"
fi
echo "$venv/bin/python"
