#!/bin/bash
# The CUDA paths on a GPU machine: the test suite with CUDA visible (pttrain's --device auto then
# trains with AMP on the GPU, and resumes CUDA RNG state), ptgen synth on the GPU, pp -> finetune
# -> eval, and torchrun with nccl. Run from the repository root:
#     bash benchmarks/gpu_check.sh [OUTDIR]
# Where the machine cannot install packages, put wheels for what it lacks in .whl/ (diffusers,
# webdataset, braceexpand, importlib_metadata here); they go to a private site folder.
OUT=${1:-${OUT:-/tmp/gpu-check}}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1
nvidia-smi -L
python3 -c "import torch,timm,diffusers,sys;print(sys.version.split()[0],torch.__version__,timm.__version__,diffusers.__version__)"
T() { local s=$(date +%s%N); "$@"; echo "rc=$? wall_ms=$(( ($(date +%s%N) - s) / 1000000 )): $*"; }
T python3 -m generate synth --out /tmp/s --per-class 10 --batch-size 1000 --quiet
# More processes than GPUs: every rank must stop with the same one-line reason, no run folder.
python3 -m torch.distributed.run --nproc_per_node "$(( $(nvidia-smi -L | wc -l) + 1 ))" -m train pp --shards /tmp/s \
    --out /tmp/pp2 --epochs 1 --quiet 2>&1 | grep "^pttrain"; ls -d /tmp/pp2 2>/dev/null || echo "no run folder written"
# Two ranks on one GPU cannot work (NCCL), hence the deselected torchrun test.
timeout 240 python3 -m pytest -q -p no:cacheprovider -k "not torchrun_two_ranks" tests > "$OUT/pytest_gpu.log" 2>&1
echo "pytest rc=$?"; tail -3 "$OUT/pytest_gpu.log"
T python3 -m generate synth --out /tmp/s10 --per-class 10 --batch-size 1000 --steps 10 --quiet
T python3 -m train data digits --out /tmp/d
T python3 -m train pp --shards /tmp/s --out /tmp/pp --epochs 3 --quiet
tail -1 /tmp/pp/metrics.jsonl
T python3 -m train finetune --data /tmp/d --init /tmp/pp --out /tmp/ft --quiet
T python3 -m train eval --run /tmp/ft --data /tmp/d
T python3 -m torch.distributed.run --nproc_per_node 1 -m train pp --shards /tmp/s --out /tmp/pp1 --epochs 1 --quiet
cp /tmp/pp/metrics.jsonl "$OUT/pp_metrics.jsonl"
