#!/usr/bin/env bash
# Build the TRL venv that bench/vs_trl.py runs TRL's GRPOTrainer from (default bench/.venv-trl).
#
# TRL is not a FlowSteer dependency, so it gets its own venv: the CPU torch pinned by constraints.txt
# (pip can never swap in a CUDA torch), the transformers/accelerate/datasets the project uses, and
# trl==1.16.0. The bench scripts need nothing else (the workload module is plain Python).
# With SHARE_VENV=DIR (a venv that already has torch/transformers/accelerate/datasets, e.g. .venv)
# the new venv reuses that venv's packages through a .pth file and installs only trl (offline-friendly).
#
# Usage: scripts/setup_trl_bench.sh [VENV_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${1:-bench/.venv-trl}
trl_version=1.16.0

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
if [ -n "${SHARE_VENV:-}" ]; then
  site=$("$SHARE_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  own=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$site" > "$own/_shared_venv.pth"
  "$venv/bin/pip" install --no-deps "trl==$trl_version"
else
  "$venv/bin/pip" install -c constraints.txt torch==2.13.0
  "$venv/bin/pip" install -c constraints.txt "trl==$trl_version" transformers accelerate datasets
fi
"$venv/bin/python" -c 'import torch, sys; sys.exit(f"a CUDA torch ({torch.__version__}) got into the TRL venv" if torch.version.cuda else 0)'
"$venv/bin/python" -c "import trl, torch; print('TRL bench venv ready:', trl.__version__, 'torch', torch.__version__)"
