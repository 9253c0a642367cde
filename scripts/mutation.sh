#!/usr/bin/env bash
# `make mutation`: mutation testing (cosmic-ray) of the modules that decide verdicts.
#
# Each module is mutated in its own scratch copy of the tree (the checkout is never touched), one
# module at a time, against a fast targeted test selection, within a time budget per module.
# Prints killed/done per module with a binomial 95% interval; sessions (sqlite), cr-report output
# and the surviving mutants (<name>.survivors.txt) go to $MUTATION_OUT. See docs/mutation.md.
#
#   MUTATION_MODULES="metrics gates"  only these (names below; default: all)
#   MUTATION_BUDGET=900               seconds per module (the run stops there; the score counts done jobs)
#   MUTATION_SAMPLE=150               score a seeded uniform random sample of N mutants per module
#                                     (default 0: all); the rest are marked skipped ("not in sample")
#   MUTATION_SEED=0                   seed of that sample (same seed + same code = same mutants)
#   MUTATION_RETEST=old.sqlite        run only the mutants that survived in that earlier session of the
#                                     same module (after adding tests: which survivors are now killed)
#   MUTATION_SRC=/path/to/tree        mutate and test that tree instead of this checkout (e.g. an
#                                     older commit, to score its tests on the same sample)
#   MUTATION_OUT=mutation-out         where sessions and reports go
#
# Test files of a selection that do not exist in the tree are left out (so an older tree is scored
# with the tests it has). Filtered out before the run: mutations of an arithmetic operator into a
# bit/shift/modulo/power operator and of a unary minus into bit inversion (on floats and arrays
# they raise at once: always killed, only cost time), and every mutation of ``|`` (in these modules
# it appears only in type annotations, which ``from __future__ import annotations`` never
# evaluates: always equivalent).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
SRC=$(cd "${MUTATION_SRC:-$here}" && pwd)
PYTHON=${PYTHON:-python3}
BUDGET=${MUTATION_BUDGET:-900}
SAMPLE=${MUTATION_SAMPLE:-0}
SEED=${MUTATION_SEED:-0}
RETEST=${MUTATION_RETEST:+$(cd "$(dirname "$MUTATION_RETEST")" && pwd)/$(basename "$MUTATION_RETEST")}
OUT=$(mkdir -p "${MUTATION_OUT:-$here/mutation-out}" && cd "${MUTATION_OUT:-$here/mutation-out}" && pwd)
ONLY=${MUTATION_MODULES:-}

# name | module | test selection (pytest arguments; the fastest-killing files first, pytest runs -x)
MODULES=(
  "projection|auditor/attacks/projection.py|tests/attacks/test_attacks_core.py -k invariants_or_l2_norm_or_project"
  "bpda|auditor/defenses/bpda.py|tests/defenses/test_defenses_bpda.py"
  "gates|auditor/report/gates.py|tests/report/test_report_gates.py tests/report/test_worst_case_gates.py"
  "gate_specs|auditor/report/gate_specs.py|tests/report/test_report_gates.py tests/report/test_worst_case_gates.py"
  "gate_view|auditor/report/gate_view.py|tests/report/test_worst_case_gates.py tests/report/test_report_gates.py"
  "metrics|auditor/metrics.py|tests/test_metrics.py -k not_cover"
  "quantize|auditor/attacks/sets.py|tests/attacks/test_sets_mutants.py tests/attacks/test_attacks_sets.py tests/attacks/test_cache_key.py"
  "cache|auditor/attacks/cache.py|tests/attacks/test_sets_mutants.py tests/attacks/test_attacks_sets.py tests/attacks/test_cache_key.py"
  "spec|auditor/models/spec.py|tests/test_spec_mutants.py tests/test_spec.py"
  "loop|auditor/attacks/base.py|tests/attacks/test_loop_mutants.py tests/attacks/test_attacks_core.py"
  "defense_stage|auditor/scan/defense.py|tests/test_defense_stage_mutants.py tests/test_adaptive.py"
  "detect_stage|auditor/scan/detect.py|tests/test_defense_stage_mutants.py tests/test_stream.py -k detector"
)

command -v cosmic-ray >/dev/null || { echo "cosmic-ray missing: pip install -e '.[mutation]'" >&2; exit 2; }
[[ "$SAMPLE" =~ ^[0-9]+$ && "$SEED" =~ ^[0-9]+$ ]] || { echo "MUTATION_SAMPLE and MUTATION_SEED must be integers" >&2; exit 2; }
printf '%-14s %-28s %s\n' module file "killed/done [95% CI] (done of jobs)"
for row in "${MODULES[@]}"; do
  IFS='|' read -r name module tests <<<"$row"
  if [[ -n "$ONLY" && " $ONLY " != *" $name "* ]]; then continue; fi
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  (cd "$SRC" && cp -a auditor tests pyproject.toml "$scratch/")
  # keep the options and the test files that exist in this tree
  kept=()
  for word in $tests; do
    if [[ "$word" == tests/* && ! -e "$scratch/$word" ]]; then continue; fi
    kept+=("$word")
  done
  sel="${kept[*]}"
  # pytest's -k takes "a or b": spelled with underscores above so the row splits on spaces
  sel=${sel//_or_/ or }
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
    if [[ -n "$RETEST" ]]; then
      # keep only the mutants (same operator, occurrence and position) that survived in $RETEST
      "$PYTHON" - "$db" "$RETEST" <<'PY'
import sqlite3, sys
from cosmic_ray.work_db import use_db, WorkDB
from cosmic_ray.work_item import WorkResult, WorkerOutcome
path, old = sys.argv[1:]
survived = set(sqlite3.connect(old).execute(
    """select m.operator_name, m.occurrence, m.start_pos_row, m.start_pos_col from work_results r
       join mutation_specs m on m.job_id = r.job_id where r.test_outcome = 'SURVIVED'""").fetchall())
with use_db(path, WorkDB.Mode.open) as db:
    for item in list(db.pending_work_items):
        m = item.mutations[0]
        if (m.operator_name, m.occurrence, m.start_pos[0], m.start_pos[1]) not in survived:
            db.set_result(item.job_id, WorkResult(output="not in sample", worker_outcome=WorkerOutcome.SKIPPED))
PY
    elif [[ "$SAMPLE" -gt 0 ]]; then
      # a uniform sample of the pending mutants: the first N of a seeded shuffle of the list sorted by
      # what each mutant is (not by cosmic-ray's random job ids), so a seed names the same mutants on
      # every run, and a larger N extends a smaller one
      "$PYTHON" - "$db" "$SAMPLE" "$SEED" <<'PY'
import random, sys
from cosmic_ray.work_db import use_db, WorkDB
from cosmic_ray.work_item import WorkResult, WorkerOutcome
path, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with use_db(path, WorkDB.Mode.open) as db:
    def what(item):
        return [(str(m.module_path), m.operator_name, m.occurrence, tuple(m.start_pos), tuple(m.end_pos))
                for m in item.mutations]
    pending = sorted(db.pending_work_items, key=what)
    random.Random(seed).shuffle(pending)
    keep = {item.job_id for item in pending[:n]}
    for item in pending:
        if item.job_id not in keep:
            db.set_result(item.job_id, WorkResult(output="not in sample", worker_outcome=WorkerOutcome.SKIPPED))
PY
    fi
    timeout "$BUDGET" cosmic-ray exec "$cfg" "$db" >/dev/null 2>&1 || true
  )
  cr-report "$db" --show-pending >"$OUT/$name.report.txt" 2>&1 || true
  "$PYTHON" - "$db" "$name" "$module" "$OUT/$name.survivors.txt" "$SRC" <<'PY'
import math, sqlite3, sys
db, name, module, surv_path, src = sys.argv[1:]
source = open(f"{src}/{module}", encoding="utf-8").read().splitlines()
c = sqlite3.connect(db)
rows = c.execute("select r.test_outcome, r.worker_outcome, r.output from work_results r").fetchall()
total = c.execute("select count(*) from work_items").fetchone()[0]
filtered = sum(1 for o, w, out in rows if w == "SKIPPED" and out != "not in sample")
unsampled = sum(1 for o, w, out in rows if w == "SKIPPED" and out == "not in sample")
done = [(o, w) for o, w, _ in rows if w != "SKIPPED"]
killed = sum(1 for o, w in done if o in ("KILLED", "INCOMPETENT") or w == "ABNORMAL")
n = len(done)
def clopper_pearson(k, n, level=0.95):
    """Exact binomial interval (scipy when present, else Wilson's score interval)."""
    if n == 0:
        return 0.0, 1.0
    try:
        from scipy.stats import binomtest
        ci = binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
        return ci.low, ci.high
    except ImportError:
        z = 1.959963984540054
        p = k / n
        mid = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return max(0.0, mid - half), min(1.0, mid + half)
lo, hi = clopper_pearson(killed, n)
pct = 100 * killed / n if n else float("nan")
print(f"{name:<14} {module:<28} {killed}/{n} killed = {pct:.0f}% [{100 * lo:.0f}-{100 * hi:.0f}%] "
      f"({n} of {total - filtered} jobs{'; sampled' if unsampled else ''}; {filtered} filtered)")
surv = c.execute("""select m.start_pos_row, m.operator_name, m.occurrence from work_results r
                    join mutation_specs m on m.job_id = r.job_id
                    where r.worker_outcome != 'SKIPPED' and r.test_outcome = 'SURVIVED'
                    order by m.start_pos_row, m.operator_name, m.occurrence""").fetchall()
with open(surv_path, "w") as fh:
    for line, op, occ in surv:
        fh.write(f"{module}:{line} {op} #{occ}: {source[line - 1].strip()[:100]}\n")
PY
  rm -rf "$scratch"
  trap - EXIT
done
