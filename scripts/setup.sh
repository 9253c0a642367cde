#!/usr/bin/env bash
# Install what xray-audit needs on a fresh machine: Pango for WeasyPrint (Debian/Ubuntu),
# jemalloc (optional, faster torch on CPU), and the package itself with its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"

need_apt=()
if command -v ldconfig >/dev/null 2>&1; then
  ldconfig -p | grep -q 'libpango-1.0.so' || need_apt+=(libpango-1.0-0)
  ldconfig -p | grep -q 'libpangoft2-1.0.so' || need_apt+=(libpangoft2-1.0-0)
  ldconfig -p | grep -q 'libjemalloc.so.2' || need_apt+=(libjemalloc2)
fi
fc-list 2>/dev/null | grep -qi dejavu || need_apt+=(fonts-dejavu-core)
if ((${#need_apt[@]})); then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing system packages: ${need_apt[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null 2>&1
  else
    echo "setup: please install ${need_apt[*]} (PDF reports need Pango)" >&2
  fi
fi

# torch/torchvision are pinned in pyproject.toml; pip takes them from the local wheel cache when present.
"$PYTHON" -m pip install -q --disable-pip-version-check --root-user-action=ignore -e ".[dev]"
echo "setup: ok ($("$PYTHON" -c 'import auditor; print("xray-audit", auditor.__version__)'))"
