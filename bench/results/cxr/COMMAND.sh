#!/usr/bin/env bash
# NIH/SIIM audit (issue 13 item 3), as run at commit 43d424b. Models: `xray-audit train reference --data
# ../shared/data/cxr --arch resnet18` (target) and `--arch small_cnn` (surrogate), image size 128; split:
# `python bench/split_manifests.py ../shared/data/cxr --out $RUNS/cxr_split`.
set -euo pipefail
RUNS=${RUNS:-/work/runs}
REPO=$(cd "$(dirname "$0")/../../.." && pwd); cd "$REPO"
export PYTHONPATH=$REPO OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
python -m auditor scan ${RUNS}/cxr_resnet18/model.onnx --data ${RUNS}/cxr_split/test.csv --allow-outside-root \
  --surrogate ${RUNS}/cxr_small_cnn/model.pt --attacks mifgsm,usmm,stm --eps 4,8 \
  --defenses jpeg:75,median:3,bitdepth:4 --bpda --bpda-attacks mifgsm --detector \
  --caveat "pneumothorax films (SIIM-ACR) went through two lossy JPEG steps that the normal and pneumonia films (NIH PNG) did not: a model can learn the processing chain instead of the disease, and attacks can exploit the same shortcut" \
  --caveat "the surrogate (small CNN) was trained on the same patients as the target (ResNet18): not the disjoint-data setting of the Kermany audit" \
  --caveat "both models trained from scratch on 845 images: clean accuracy is low and near an intensity-statistics baseline" \
  --cache-dir ${RUNS}/cache_cxr --out ${RUNS}/cxr_audit --format json,csv,html,pdf --no-progress
