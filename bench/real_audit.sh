#!/usr/bin/env bash
# Real-data audit on ../shared/data/cxr (measured figures for the issue notes; not part of the tests).
# Trains a small CNN target, uses a ResNet18 reference model as surrogate, trains an HGD denoiser,
# times a clean scan of all 1,408 images, then runs USMM/STM x {4,8,16}/255 with JPEG and the denoiser.
set -euo pipefail
CXR="${CXR:-$(cd "$(dirname "$0")/../.." && pwd)/shared/data/cxr}"
OUT="${OUT:-/tmp/real}"
SUR="${SUR:-$OUT/surrogate/model.pt}"
N="${N:-90}"
mkdir -p "$OUT"
t() { local s=$SECONDS; "$@"; echo "[timing] $((SECONDS - s)) s: $*" | tee -a "$OUT/timings.txt"; }
if [ ! -f "$SUR" ]; then
  t xray-audit train reference --data "$CXR" --out "$OUT/surrogate" --arch resnet18 --image-size 128 --epochs 12 \
    --no-progress --overwrite
fi
[ -f "$OUT/target/model.onnx" ] || t xray-audit train reference --data "$CXR" --out "$OUT/target" --arch small_cnn \
  --image-size 128 --epochs 30 --lr 1e-3 --min-epochs 8 --patience 4 --seed 7 --no-progress --overwrite
[ -f "$OUT/denoiser/denoiser.onnx" ] || t xray-audit train denoiser --data "$CXR" --out "$OUT/denoiser" --surrogate "$SUR" \
  --epochs 8 --max-images 240 --no-progress --overwrite
t xray-audit scan "$OUT/target/model.onnx" --data "$CXR" --out "$OUT/clean" --format json,csv --no-progress
t xray-audit scan "$OUT/target/model.onnx" --data "$CXR" --out "$OUT/audit" --surrogate "$SUR" --attacks usmm,stm \
  --eps 4,8,16 --max-images "$N" --defenses "jpeg,denoiser:$OUT/denoiser/denoiser.onnx" --attack-batch-size 6 \
  --cache-dir "$OUT/cache" --no-progress
