#!/usr/bin/env bash
# GPU check of the memory plan (one GPU, under 8 minutes): a random-init model with the real
# Qwen2.5-7B widths and 4 layers through one SFT step, one PPO update and one GRPO step under
# the Qwen preset's `distributed` settings; prints measured peak memory (total and per layer)
# and tokens/s next to sftrl.memory's estimate, and writes benchmarks/results/gpu_check.json.
#   bash scripts/gpu-check.sh [extra args of benchmarks/gpu_check.py]
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 \
    TOKENIZERS_PARALLELISM=false
PYTHON="${PYTHON:-$PWD/.venv/bin/python}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
timeout 480 "$PYTHON" benchmarks/gpu_check.py --device cuda --layers 4 "$@"
