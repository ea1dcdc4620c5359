#!/usr/bin/env bash
# GPU checks of the generated models (bf16 parity with Hugging Face, decode speed, compiled
# decode, training MFU) on one CUDA device; installs nothing. See benchmarks/gpu_check.py.
#   bash benchmarks/gpu_check.sh            on the GPU machine
#   bash benchmarks/gpu_check.sh --dry-run  on the CPU, tiny sizes
set -euo pipefail
cd "$(dirname "$0")/.."
exec python benchmarks/gpu_check.py "$@"
