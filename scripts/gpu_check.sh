#!/usr/bin/env bash
# make gpu-check on a GPU node with its own python3 (torch, torchvision, numpy, pandas, pyarrow) and
# no network: installs gpu_bundle/'s wheels where hydra is missing, then runs scripts/gpu_check.py.
#   scripts/gpu_check.sh [gpu_check.py arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
py=${GPU_PY:-python3}
if ! "$py" -c "import hydra, omegaconf" 2>/dev/null; then
  [ -d gpu_bundle/wheels ] || { echo "error: hydra is not installed and gpu_bundle/wheels is missing: run make gpu-bundle where pip works, and bring gpu_bundle/ along" >&2; exit 2; }
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/nesterov_site gpu_bundle/wheels/*.whl
  export PYTHONPATH=/tmp/nesterov_site${PYTHONPATH:+:$PYTHONPATH}
fi
export WANDB_MODE=disabled PYTHONUNBUFFERED=1
exec "$py" scripts/gpu_check.py "$@"
