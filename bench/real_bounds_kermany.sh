#!/usr/bin/env bash
# Worst-case bounds on real data (issue 23, item 6): for each Kermany model, one scan with every threat model
# the tool has, then the Square attack again at a larger query budget.
#
#   models    target   = the seeds' ResNet50 recipe @128 ($TARGET, bench/real_audit_kermany.sh trains it)
#             adv      = that model fine-tuned by `xray-audit train adversarial` (FGSM-RS) ($ADV; skipped if absent)
#             custom   = the target with an identity Shrink node: same predictions, but onnx2torch cannot
#                        convert it (bench/make_unconvertible.py), so only transfer and query attacks apply
#   scan 1    transfer MI-FGSM, USMM, STM from the disjoint-data ResNet18 surrogate ($SUR),
#             white-box APGD (CE then DLR / logit margin; 100 iterations) on the converted target,
#             Square with $Q1 queries on the ONNX file; ε = $EPS /255; N class-balanced test images
#   scan 2    white-box MI-FGSM (--surrogate target)
#   scan 3    Square with $Q2 queries
# Every scan resumes through --cache-dir; a finished scan (results.json present) is skipped.
# Env knobs: N (100), EPS (2,4,8), Q1 (1000), Q2 (5000), PRECISION (bf16), MODELS ("target custom adv"), RUNS, OUT, CACHE.
# Summary: python bench/bounds_table.py $OUT/*/results.json --markdown bench/results/bounds/kermany.md
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/kermany_env.sh"
RUNS="${RUNS:-/work/runs}"
N="${N:-100}"
EPS="${EPS:-2,4,8}"
Q1="${Q1:-1000}"
Q2="${Q2:-5000}"
PRECISION="${PRECISION:-bf16}"  # explicit, so a resumed run finds its cached sets (auto may choose differently)
MODELS="${MODELS:-target custom adv}"
SPLIT="$RUNS/kermany_split"
TARGET="${TARGET:-$RUNS/k_resnet50_128/model.onnx}"
ADV="${ADV:-$RUNS/k_resnet50_128_adv/model.onnx}"
CUSTOM="${CUSTOM:-$RUNS/k_resnet50_128_custom/model.onnx}"
SUR="${SUR:-$RUNS/k_resnet18_sur_128/model.pt}"
CACHE="${CACHE:-$RUNS/cache_bounds}"
OUT="${OUT:-$RUNS/kermany_bounds_n$N}"
cd "$REPO"
mkdir -p "$OUT"
for f in "$TARGET" "$SUR"; do [ -f "$f" ] || { echo "missing $f: run bench/real_audit_kermany.sh first (it trains it)" >&2; exit 4; }; done
[ -f "$SPLIT/test_balanced_$N.csv" ] || python bench/split_manifests.py "$KERMANY" --out "$SPLIT" --balanced-test "$N" >/dev/null
DATA="$SPLIT/test_balanced_$N.csv"
if [ ! -f "$CUSTOM" ]; then mkdir -p "$(dirname "$CUSTOM")"; python bench/make_unconvertible.py "$TARGET" --out "$CUSTOM"; fi

scan() {  # scan NAME MODEL ARGS...
  local name=$1 model=$2; shift 2
  local out="$OUT/$name"
  if [ -f "$out/results.json" ]; then echo "done already: $out/results.json"; return; fi
  local cmd=(python -m auditor scan "$model" --data "$DATA" --out "$out" --eps "$EPS" --allow-outside-root
             --cache-dir "$CACHE" --precision "$PRECISION" --format json,html,pdf --no-progress "$@")
  echo "${cmd[*]}" > "$out.COMMAND.txt"
  local s=$SECONDS
  "${cmd[@]}" || echo "[exit $?] $name" | tee -a "$OUT/timings.txt"
  echo "[timing] $((SECONDS - s)) s: $name" | tee -a "$OUT/timings.txt"
}
for m in $MODELS; do
  case $m in target) model=$TARGET ;; adv) model=$ADV ;; custom) model=$CUSTOM ;; *) echo "unknown model $m" >&2; exit 2 ;; esac
  [ -f "$model" ] || { echo "skipped $m: $model is absent"; continue; }
  scan "$m-all-q$Q1" "$model" --surrogate "$SUR" --attacks mifgsm,usmm,stm,square --whitebox apgd --queries "$Q1"
  # white-box MI-FGSM: its own scan (a scan runs an attack either on the surrogate or on the target)
  scan "$m-whitebox-mifgsm" "$model" --surrogate target --attacks mifgsm
  scan "$m-square-q$Q2" "$model" --attacks square --queries "$Q2"
done
echo "results: $OUT/*/results.json (timings in $OUT/timings.txt)"
