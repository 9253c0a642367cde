#!/usr/bin/env bash
# `make mutation`: mutation testing (cosmic-ray) of the modules that decide verdicts.
#
# Each module is mutated in its own scratch copy of the tree (the checkout is never touched), one
# module at a time, against a fast targeted test selection, within a time budget per module.
# Prints killed/total per module; sessions (sqlite) and reports go to $MUTATION_OUT.
#
#   MUTATION_MODULES="metrics gates"  only these (names below; default: all)
#   MUTATION_BUDGET=900               seconds per module (the run stops there; the score counts done jobs)
#   MUTATION_OUT=mutation-out         where sessions and reports go
#
# Filtered out before the run: mutations of an arithmetic operator into a bit/shift/modulo/power
# operator and of a unary minus into bit inversion (on floats and arrays they raise at once: always
# killed, only cost time), and every mutation of ``|`` (in these modules it appears only in type
# annotations, which ``from __future__ import annotations`` never evaluates: always equivalent).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
BUDGET=${MUTATION_BUDGET:-900}
OUT=$(mkdir -p "${MUTATION_OUT:-$here/mutation-out}" && cd "${MUTATION_OUT:-$here/mutation-out}" && pwd)
ONLY=${MUTATION_MODULES:-}

# name | module | test selection (pytest arguments)
MODULES=(
  "projection|auditor/attacks/projection.py|tests/attacks/test_attacks_core.py -k invariants_or_l2_norm_or_project"
  "bpda|auditor/defenses/bpda.py|tests/defenses/test_defenses_bpda.py"
  "gates|auditor/report/gates.py|tests/report/test_report_gates.py"
  "metrics|auditor/metrics.py|tests/test_metrics.py -k not_cover"
  "quantize|auditor/attacks/sets.py|tests/attacks/test_attacks_sets.py tests/attacks/test_cache_key.py"
  "spec|auditor/models/spec.py|tests/test_spec.py"
  "loop|auditor/attacks/base.py|tests/attacks/test_attacks_core.py"
  "defense_stage|auditor/defense_stage.py|tests/test_adaptive.py"
)

command -v cosmic-ray >/dev/null || { echo "cosmic-ray missing: pip install -e '.[mutation]'" >&2; exit 2; }
printf '%-14s %-32s %s\n' module file "killed/total (done of jobs)"
for row in "${MODULES[@]}"; do
  IFS='|' read -r name module tests <<<"$row"
  if [[ -n "$ONLY" && " $ONLY " != *" $name "* ]]; then continue; fi
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  (cd "$here" && cp -a auditor tests pyproject.toml "$scratch/")
  # pytest's -k takes "a or b": spelled with underscores above so the row splits on spaces
  sel=${tests//_or_/ or }
  sel=${sel//-k not_/-k not }
  cfg="$OUT/$name.toml"
  cat >"$cfg" <<TOML
[cosmic-ray]
module-path = "$module"
timeout = 300.0
excluded-modules = []
test-command = "$PYTHON -m pytest -x -q -p no:cacheprovider -p no:randomly $(echo "$sel" | sed 's/-k \(.*\)$/-k \\"\1\\"/')"

[cosmic-ray.distributor]
name = "local"

[cosmic-ray.filters.operators-filter]
exclude-operators = [
  "core/ReplaceBinaryOperator_.*_(BitAnd|BitOr|BitXor|LShift|RShift|Mod|FloorDiv|Pow)",
  "core/ReplaceUnaryOperator_.*_Invert",
  "core/ReplaceBinaryOperator_BitOr_.*",
]
TOML
  db="$OUT/$name.sqlite"
  rm -f "$db"
  (
    cd "$scratch"
    export PYTHONPATH="$scratch" OMP_NUM_THREADS=1
    # the unmutated code must pass the selection, or every "killed" would mean nothing
    "$PYTHON" -c 'import shlex, subprocess, sys, tomllib
cmd = tomllib.load(open(sys.argv[1], "rb"))["cosmic-ray"]["test-command"]
sys.exit(subprocess.call(shlex.split(cmd), stdout=subprocess.DEVNULL))' "$cfg" \
      || { echo "$name: the test selection fails on unmutated code" >&2; exit 1; }
    cosmic-ray init "$cfg" "$db" >/dev/null
    cr-filter-operators "$db" "$cfg" >/dev/null
    timeout "$BUDGET" cosmic-ray exec "$cfg" "$db" >/dev/null 2>&1 || true
  )
  cr-report "$db" --show-pending >"$OUT/$name.report.txt" 2>&1 || true
  "$PYTHON" - "$db" "$name" "$module" <<'PY'
import sqlite3, sys
db, name, module = sys.argv[1:]
c = sqlite3.connect(db)
rows = c.execute("select r.test_outcome, r.worker_outcome from work_results r").fetchall()
total = c.execute("select count(*) from work_items").fetchone()[0]
skipped = sum(1 for o, w in rows if w == "SKIPPED")
done = [(o, w) for o, w in rows if w != "SKIPPED"]
killed = sum(1 for o, w in done if o in ("KILLED", "INCOMPETENT") or w == "ABNORMAL")
print(f"{name:<14} {module:<32} {killed}/{len(done)} killed ({len(done)} of {total - skipped} jobs; {skipped} filtered)")
PY
  rm -rf "$scratch"
  trap - EXIT
done
