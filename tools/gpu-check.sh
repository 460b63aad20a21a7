#!/usr/bin/env bash
# One prepared GPU check, <= 8 minutes on one GPU: correctness against the CPU, speed against
# facenet-pytorch on the same GPU, the input pipeline, a short training run. One JSON line per
# measure in $OUT/gpu-check.jsonl (and on stdout), the full log in $OUT/gpu-check.log.
#
# Usage: tools/gpu-check.sh [FACENET_BINARY] [DEVICE]
#   FACENET_BINARY  a facenet built with a GPU feature, e.g.
#                   `cargo build --release --features vulkan && strip target/release/facenet`
#                   [default: ./facenet-gpu, then target/release/facenet]
#   DEVICE          its --device [default: vulkan:0]
# Environment: OUT (results folder, default /tmp/gpu-check), QUICK=1 (tiny sizes: a dry run of
#   the script itself, e.g. on lavapipe with DEVICE=vulkan:cpu), PEER=0 (skip the PyTorch peer).
# A machine without a Vulkan loader: unpack the libvulkan1 .deb first (README, "GPU").
set -uo pipefail
cd "$(dirname "$0")/.."
bin=${1:-}
if [ -z "$bin" ]; then
  for b in ./facenet-gpu target/release/facenet; do [ -x "$b" ] && bin=$b && break; done
fi
dev=${2:-vulkan:0}
out=${OUT:-/tmp/gpu-check}
mkdir -p "$out"
jsonl=$out/gpu-check.jsonl
log=$out/gpu-check.log
: >"$jsonl"
: >"$log"
export FACENET_NO_PROGRESS=1
started=$(date +%s)

if [ "${QUICK:-0}" = 1 ]; then
  full=inception_resnet_v1_small size=64 batches="8" steps=2 parity_batch=2 peer_steps=2 epochs=1 epoch_size=2 loader_batches=3
else
  full=inception_resnet_v1 size=160 batches="90 256" steps=15 parity_batch=8 peer_steps=20 epochs=3 epoch_size=50 loader_batches=40
fi

# Runs a step with a time limit; its JSON lines go to the results, everything to the log.
step() {
  local name=$1 limit=$2
  shift 2
  echo "== $name: $*" >>"$log"
  local t0=$(date +%s)
  timeout "$limit" "$@" 2>>"$log" | tee -a "$log" | grep '^{' | tee -a "$jsonl"
  local rc=${PIPESTATUS[0]}
  if [ "$rc" != 0 ]; then
    printf '{"step":"%s","error":"exit %s (124: over its %ss limit)","seconds":%s}\n' "$name" "$rc" "$limit" $(($(date +%s) - t0)) | tee -a "$jsonl"
  fi
}

# what this machine is
{
  echo "binary: $bin ($("$bin" --version 2>&1))"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 || echo "no nvidia-smi"
  lscpu | grep -E 'Model name|^CPU\(s\)' || true
} | tee -a "$log"

# 1. correctness: the same weights on the CPU and the device
step parity 150 "$bin" bench parity --device "$dev" --model_def "$full" --batch_size "$parity_batch" --image_size "$size"

# 2. speed, ours: training step and embedding at the reference's batch (90) and a large one
for b in $batches; do
  step "train-$b" 120 "$bin" bench train --device "$dev" --model_def "$full" --batch_size "$b" --image_size "$size" --warmup 3 --steps "$steps"
done
# what reading every step's loss back costs (the default reads every 10 steps on a GPU)
b90=${batches%% *}
step "train-$b90-sync1" 120 "$bin" bench train --device "$dev" --model_def "$full" --batch_size "$b90" --image_size "$size" --warmup 3 --steps "$steps" --sync_every 1
# mixed precision: convolutions in f16 (loss scaled) and bf16, where the GPU has the type
for p in f16 bf16; do
  step "train-$b90-$p" 75 "$bin" bench train --device "$dev" --model_def "$full" --batch_size "$b90" --image_size "$size" --warmup 3 --steps "$steps" --precision "$p"
done
for b in $batches; do
  step "embed-$b" 90 "$bin" bench embed --device "$dev" --model_def "$full" --batch_size "$b" --image_size "$size" --warmup 3 --steps "$steps"
done

# 3. the peer on the same GPU: facenet-pytorch eager, then torch.compile + bf16 autocast
if [ "${PEER:-1}" = 1 ] && python3 -c 'import torch, facenet_pytorch; assert torch.cuda.is_available()' 2>>"$log"; then
  step peer 200 python3 tools/gpu_peer.py --batch $batches --image_size "$size" --steps "$peer_steps"
else
  echo '{"step":"peer","skipped":"no CUDA PyTorch with facenet_pytorch here"}' | tee -a "$jsonl"
fi

# 4. the input pipeline alone, every core
step loader 60 "$bin" bench loader --batches "$loader_batches" --image_size "$size"

# 5. a short training run of the small model on synthetic data, on the device
work=$(mktemp -d)
step synth 60 "$bin" synth "$work/syn" --identities 40 --images_per_identity 10 --image_size 72 --pairs_identities 10 --pairs_folds 2 --pairs_per_fold 10 --no_baseline
echo "== train-run" >>"$log"
t0=$(date +%s)
if timeout 150 "$bin" train --device "$dev" --data_dir "$work/syn/train" --lfw_dir "$work/syn/pairs" --lfw_pairs "$work/syn/pairs.txt" \
  --lfw_nrof_folds 2 --logs_base_dir "$work/logs" --models_base_dir "$work/models" --model_def inception_resnet_v1_small \
  --image_size 64 --batch_size 64 --epoch_size "$epoch_size" --max_nrof_epochs "$epochs" --optimizer RMSPROP --learning_rate 0.01 \
  --keep_probability 0.8 --random_crop --random_flip --center_loss_factor 1e-2 --center_loss_alfa 0.9 --weight_decay 5e-5 >>"$log" 2>&1; then
  csv=$(ls "$work"/logs/*/epochs.csv)
  python3 - "$csv" "$(($(date +%s) - t0))" "$dev" <<'EOF' | tee -a "$jsonl"
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1])))
last = rows[-1]
print(json.dumps({"step": "train-run", "device": sys.argv[3], "seconds": int(sys.argv[2]), "epochs": len(rows),
                  "last": {k: last[k] for k in last if k in ("loss", "accuracy", "lfw_accuracy", "images_per_s")}}))
EOF
else
  printf '{"step":"train-run","error":"failed or over 150 s","seconds":%s}\n' $(($(date +%s) - t0)) | tee -a "$jsonl"
fi
rm -rf "$work"
echo "gpu-check done in $(($(date +%s) - started)) s: $jsonl" | tee -a "$log"
