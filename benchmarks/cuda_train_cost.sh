#!/usr/bin/env bash
# The GPU figures of benchmarks/train_cost.py (issue 2), as run on a lent H100/H200:
#   1. the full default job at NFE 7 (JobConfig defaults: 50/50/100 pairs, 2+5 epochs, 3 starts),
#      eager, then with --compile (torch.compile, CUDA graphs);
#   2. peak memory of one iteration at NFE 4/10/20 with and without rematerialization, and the
#      network alone.
# Usage: benchmarks/cuda_train_cost.sh OUTDIR [LOSS]   (LOSS default lpips, i.e. LPIPS-VGG)
# Writes OUTDIR/{job_eager,job_compiled,memory}.{md,json}. Python and the project's imports must
# be on the path (an installed .venv, or PYTHONPATH=. where the packages are already there).
set -uo pipefail
out=${1:?usage: $0 OUTDIR [LOSS]}; loss=${2:-lpips}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi -L || true
run() { local name=$1; shift; echo "== $name"; "$py" benchmarks/train_cost.py --device cuda "$@" --json "$out/$name.json" 2>&1 | tee "$out/$name.md"; }
run job_eager --only job --default-job --job-nfe 7 --loss "$loss"
run memory --only memory network --nfe 4 10 20 --loss "$loss"
timeout 240 bash -c "$(declare -f run); py=$py out=$out; run job_compiled --only job --default-job --job-nfe 7 --loss $loss --compile" \
  || echo "compiled run failed or timed out (exit $?)"
