# Sourced by the Kermany bench scripts: REPO and KERMANY (../shared/data/kermany unless set), the repository on
# PYTHONPATH, one thread per process unless set. Without the data set it prints why and ends the caller (exit 0).
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KERMANY="${KERMANY:-$REPO/../shared/data/kermany}"
if [ ! -d "$KERMANY" ]; then echo "skipped: $KERMANY is absent (the pediatric set)"; exit 0; fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
