#!/usr/bin/env bash
# Every GPU measurement of issue 14 in one go, within 10 minutes on one H200:
#   0. the CUDA test of ld3core.graphs (captured training = eager training to rounding);
#   1. the full default job at NFE 7 (JobConfig defaults: 50/50/300 pairs, 2+5 epochs, 3 starts),
#      eager, then with its iterations and validations replayed as CUDA graphs, each phase next
#      to its floor (its network calls alone, replayed as CUDA graphs at the job's batch sizes);
#   2. peak memory and time of one iteration at NFE 4 and 20, with and without rematerialization,
#      on the graph path, and the network alone;
#   3. the Stable-Diffusion-size job (benchmarks/sd_job_cost.py): per phase, peak memory, one
#      iteration with and without rematerialization;
#   4. benchmarks/gpu_report.py: the summary (targets, eager vs graphs schedule and test loss).
#
# The device machine has torch but not diffusers, and the 64 MiB transfer cannot hold the LPIPS-VGG
# weights (59 MB), so the loss is LPIPS-AlexNet (as in the README's earlier GPU figures):
#   here, once:       benchmarks/gpu.sh --prepare     (fills .gpu/, which git ignores)
#   on the device:    benchmarks/gpu.sh OUTDIR        (carry .gpu)
# With the device tool: run(command="benchmarks/gpu.sh $OUT", carry=[".gpu"], timeout_s=600).
#   anywhere:         benchmarks/gpu.sh --dry-run OUTDIR   every step on the CPU at toy sizes (a check of
#                     this script, run by tests/benchmarks/test_gpu_scripts.py; its figures mean nothing)
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--prepare" ]; then
  set -e
  mkdir -p .gpu/weights
  grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
  py=${PYTHON:-.venv/bin/python}
  "$py" -m pip download -q --no-deps --only-binary=:all: -d .gpu "diffusers==$("$py" -c 'import diffusers; print(diffusers.__version__)')"
  "$py" -c 'from ld3core.lpips_weights import cache_path; print(cache_path("alex"))' | xargs -I{} cp {} .gpu/weights/
  du -sh .gpu
  exit 0
fi

dry=0
if [ "${1:-}" = "--dry-run" ]; then dry=1; shift; fi
out=${1:?usage: $0 [--dry-run] OUTDIR | --prepare}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
[ -d .gpu/weights ] && export LD3_WEIGHTS_DIR=$PWD/.gpu/weights  # else the usual cache (a machine that ran bootstrap)
if ls .gpu/*.whl >/dev/null 2>&1; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PYTHONPATH
fi
"$py" -c 'import diffusers' 2>/dev/null || { echo "no diffusers here: run 'benchmarks/gpu.sh --prepare' where pip works and carry .gpu" >&2; exit 1; }
log=$out/gpu.log
start=$(date +%s)
budget=590 scale=1  # seconds for everything (the device tool's limit is 600); a dry run on 2 CPU cores gets more
(( dry )) && budget=1500 scale=4
left() { echo $(( budget - ($(date +%s) - start) )); }
step() {  # step NAME SECONDS CMD...: run with a time limit (x scale), log, go on after a failure
  local name=$1 limit=$(( $2 * scale )); shift 2
  (( limit > $(left) )) && limit=$(left)
  if (( limit < 20 )); then echo "== $name: skipped, $(left) s left" | tee -a "$log"; return; fi
  echo "== $name (limit ${limit} s, $(left) s left)" | tee -a "$log"
  timeout "$limit" "$@" 2>&1 | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  (( rc != 0 )) && echo "== $name: exit $rc" | tee -a "$log"
}
nvidia-smi -L 2>&1 | tee -a "$log"
"$py" -c 'import torch, diffusers; print("torch", torch.__version__, "diffusers", diffusers.__version__)' 2>&1 | tee -a "$log"

if (( dry )); then
  tc=("$py" benchmarks/train_cost.py --device cpu --loss lpips_alex --small --threads 1 --repeats 1)
  job=(--n-train 4 --n-val 2 --n-test 2 --starts 2 --job-nfe 3 --teacher-nfe 4); nfes=(2 3)
  sd=(--device cpu --tiny --n-train 2 --n-val 1 --n-test 1 --teacher-nfe 4)
else
  tc=("$py" benchmarks/train_cost.py --device cuda --loss lpips_alex)
  job=(--default-job --job-nfe 7); nfes=(4 20); sd=(--device cuda)
fi
step "graphs test" 90 "$py" -m pytest --confcutdir tests/ld3core -p no:cacheprovider -q tests/ld3core/test_graphs.py -k cuda
step "job, eager" 200 "${tc[@]}" --only job network "${job[@]}" --floor --json "$out/job_eager.json"
step "job, CUDA graphs" 120 "${tc[@]}" --only job network "${job[@]}" --floor --graphs --json "$out/job_graphs.json"
step "memory, CUDA graphs" 120 "${tc[@]}" --only memory network --nfe "${nfes[@]}" --graphs --json "$out/memory.json"
step "Stable-Diffusion-size job" 240 "$py" benchmarks/sd_job_cost.py "${sd[@]}" --loss lpips_alex --json "$out/sd_job.json"
"$py" benchmarks/gpu_report.py "$out" | tee "$out/summary.md"
