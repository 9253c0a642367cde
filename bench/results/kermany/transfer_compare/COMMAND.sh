#!/usr/bin/env bash
# As run (frozen checkout of commit a29eae4 at /work/wt/run). The --compare model: `xray-audit train adversarial
# --data ../shared/data/kermany --init <target model.pt> --epochs 2` stopped after epoch 1 and exported with
# bench/export_interim.py (FGSM-RS, eps drawn from 2,4,8/255; val acc 0.937).
set -euo pipefail
cd /work/wt/run
export PYTHONPATH=/work/wt/run OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
python -m auditor scan /work/runs/k_resnet50_128/model.onnx --data /work/runs/kermany_split/test_balanced_200.csv \
  --out /work/runs/kermany_audit_n200/transfer_compare --surrogate /work/runs/k_resnet18_sur_128/model.pt \
  --attacks mifgsm,usmm,stm --eps 2,4,8 --defenses jpeg:75,median:3,bitdepth:4 --bpda --bpda-attacks mifgsm \
  --no-detector --allow-outside-root --compare /work/runs/k_resnet50_128_adv_e1/model.onnx \
  --cache-dir /work/runs/cache_kermany --format json,csv,html,pdf --no-progress
