#!/usr/bin/env bash
# Real-data audit on ../shared/data/kermany (issue 13): the seeds' table with CIs, resumable.
#
#   target    = the seeds' ResNet50 recipe @128 trained on the target's 60 % patients   ($TARGET, ONNX)
#   surrogate = a ResNet18 @128 trained only on the target's *validation* patients     ($SUR, checkpoint)
#               (bench/split_manifests.py: disjoint from the target's train and test patients)
#   images    = N class-balanced images of the target's test split (test_balanced_N.csv)
#   attacks   = MI-FGSM (baseline), USMM, STM at eps 2, 4, 8 /255
#   defenses  = JPEG sweep (90/75/50/30), median 3, bit depth 4, --bpda (MI-FGSM), both detectors
#               (+ the HGD denoiser when $DENOISER exists, + --compare $COMPARE when it exists)
#   then the same with --surrogate target (white-box upper bound) unless WHITEBOX=0.
#
# Every step is skipped when its output exists; the scans resume through --cache-dir (adversarial
# batches are cached as they finish), so re-running after an interruption continues where it stopped.
# Models are trained here only when missing (hours of CPU). Env knobs: N, RUNS, TARGET, SUR, EPS,
# ATTACKS, DEFENSES, BPDA_ATTACKS (default mifgsm), DENOISER, COMPARE, WHITEBOX, CACHE, OUT, RESULTS (copy results.json/report.pdf there;
# they embed example images of the data set, so keep them out of git), RESUME_TRAINING=1 (resume an
# interrupted training run found in the model's folder).
# Dry run:  N=10 TARGET=/work/runs/k_resnet50_128_interim/model.onnx WHITEBOX=0 bench/real_audit_kermany.sh
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/kermany_env.sh"
JEMALLOC=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
if [ -f "$JEMALLOC" ] && [[ "${LD_PRELOAD:-}" != *jemalloc* ]]; then export LD_PRELOAD="$JEMALLOC${LD_PRELOAD:+:$LD_PRELOAD}"; fi
RUNS="${RUNS:-/work/runs}"
N="${N:-200}"
SPLIT="$RUNS/kermany_split"
TARGET="${TARGET:-$RUNS/k_resnet50_128/model.onnx}"
SUR="${SUR:-$RUNS/k_resnet18_sur_128/model.pt}"
EPS="${EPS:-2,4,8}"
ATTACKS="${ATTACKS:-mifgsm,usmm,stm}"
DEFENSES="${DEFENSES:-jpeg,median:3,bitdepth:4}"
BPDA_ATTACKS="${BPDA_ATTACKS:-mifgsm}"   # the adaptive check with USMM/STM costs as much as those attacks
DENOISER="${DENOISER:-$RUNS/k_denoiser/denoiser.onnx}"
COMPARE="${COMPARE:-$RUNS/k_resnet50_128_adv/model.onnx}"
WHITEBOX="${WHITEBOX:-1}"
CACHE="${CACHE:-$RUNS/cache_kermany}"
OUT="${OUT:-$RUNS/kermany_audit_n$N}"
cd "$REPO"
mkdir -p "$OUT"
t() { local s=$SECONDS; "$@"; echo "[timing] $((SECONDS - s)) s: $*" | tee -a "$OUT/timings.txt"; }

# 1. the target's split as CSV manifests, and the class-balanced test sample
[ -f "$SPLIT/test_balanced_$N.csv" ] || python bench/split_manifests.py "$KERMANY" --out "$SPLIT" --balanced-test "$N" >/dev/null
DATA="$SPLIT/test_balanced_$N.csv"

# 2. models, only when missing (resume an interrupted training run)
train() {
  local out=$1; shift; local r=()
  if [ -f "$out/state.pt" ]; then
    # an unfinished run may still be training in another process: never run two on one folder
    if [ "${RESUME_TRAINING:-0}" != 1 ]; then
      echo "$out holds an unfinished training run (maybe still running); wait for its model, or set RESUME_TRAINING=1" >&2
      exit 4
    fi
    r=(--resume)
  fi
  t python -m auditor train reference "$@" --out "$out" "${r[@]}" --no-progress
}
[ -f "$TARGET" ] || train "$(dirname "$TARGET")" --data "$KERMANY" --arch resnet50 --image-size 128 --epochs 20
[ -f "$SUR" ] || train "$(dirname "$SUR")" --data "$SPLIT/val.csv" --arch resnet18 --image-size 128 --epochs 30 --min-epochs 5 --allow-outside-root

# 3. transfer audit with the disjoint-data surrogate
DEF="$DEFENSES"
[ -f "$DENOISER" ] && DEF="$DEF,denoiser:$DENOISER"
CMP=()
[ -f "$COMPARE" ] && CMP=(--compare "$COMPARE")
scan() {
  local out=$1 sur=$2
  if [ -f "$out/results.json" ]; then echo "done already: $out/results.json"; return; fi
  echo "python -m auditor scan $TARGET --data $DATA --out $out --surrogate $sur --attacks $ATTACKS --eps $EPS" \
       "--defenses $DEF --bpda --bpda-attacks $BPDA_ATTACKS --detector --allow-outside-root ${CMP[*]} --cache-dir $CACHE --format json,csv,html,pdf --no-progress" > "$out.COMMAND.txt"
  t python -m auditor scan "$TARGET" --data "$DATA" --out "$out" --surrogate "$sur" --attacks "$ATTACKS" --eps "$EPS" \
    --defenses "$DEF" --bpda --bpda-attacks "$BPDA_ATTACKS" --detector --allow-outside-root "${CMP[@]}" --cache-dir "$CACHE" --format json,csv,html,pdf --no-progress
}
scan "$OUT/transfer" "$SUR"
# 4. white-box upper bound (the target itself, converted with onnx2torch)
[ "$WHITEBOX" = 1 ] && scan "$OUT/whitebox" target

# 5. copy the small result files for the repository (never weights)
if [ -n "${RESULTS:-}" ]; then
  for d in transfer whitebox; do
    [ -f "$OUT/$d/results.json" ] || continue
    mkdir -p "$RESULTS/$d"; cp "$OUT/$d/results.json" "$OUT/$d/report.pdf" "$RESULTS/$d/"
  done
fi
echo "audit folders: $OUT/transfer $OUT/whitebox (timings in $OUT/timings.txt)"
