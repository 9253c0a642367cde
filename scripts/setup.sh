#!/usr/bin/env bash
# Prepare a checkout for `make demo` / `make test` on a fresh machine:
#   * system packages where missing (Debian/Ubuntu, as root): Pango for WeasyPrint, jemalloc
#     (optional, faster torch on CPU), fonts, Chromium (the browser test of report.html), and
#     python3-venv when the interpreter cannot make a venv;
#   * a virtual environment in the checkout ($VENV, default .venv) built from $PYTHON (default python3),
#     with the package installed editable with its test extras, at the versions of constraints.txt.
# Nothing is ever pip-installed into $PYTHON itself (PEP 668: Debian's python3 refuses that anyway).
# A second run with nothing changed takes a second: the venv carries a stamp of what it was built from.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
STAMP="$VENV/.xray-audit-setup"

is_root() { [ "$(id -u)" = 0 ]; }
apt_install() {  # apt_install PKG...: install with apt-get as root, else say what is missing
  if command -v apt-get >/dev/null 2>&1 && is_root; then
    echo "setup: installing system packages: $*"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1
  else
    echo "setup: please install $* (as root: apt-get install $*)" >&2
    return 1
  fi
}

need_apt=()
if command -v ldconfig >/dev/null 2>&1; then
  ldconfig -p | grep -q 'libpango-1.0.so' || need_apt+=(libpango-1.0-0)
  ldconfig -p | grep -q 'libpangoft2-1.0.so' || need_apt+=(libpangoft2-1.0-0)
  ldconfig -p | grep -q 'libjemalloc.so.2' || need_apt+=(libjemalloc2)
fi
fc-list 2>/dev/null | grep -qi dejavu || need_apt+=(fonts-dejavu-core)
if ((${#need_apt[@]})); then
  apt_install "${need_apt[@]}" || echo "setup: PDF reports need Pango" >&2
fi
# Debian's headless Chromium: tests/report/test_report_browser.py opens report.html in it (never a browser
# build downloaded by a test tool); the test skips, naming this, only where it cannot be installed
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  apt_install chromium || echo "setup: the browser test of report.html needs Debian's chromium package" >&2
fi

base_python="$(command -v "$PYTHON" || true)"
if [ -z "$base_python" ]; then
  echo "setup: $PYTHON not found; install Python >= 3.11 or run with PYTHON=/path/to/python3" >&2
  exit 4
fi
"$base_python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "setup: $base_python is Python $("$base_python" -c 'import platform; print(platform.python_version())'); xray-audit needs >= 3.11" >&2
  exit 4
}

# What the venv is built from: the interpreter (path and version) and the dependency declarations.
key="$("$base_python" - "$base_python" <<'EOF'
import hashlib, sys
h = hashlib.sha256(f"{sys.argv[1]} {sys.version}".encode())
for name in ("pyproject.toml", "constraints.txt"):
    with open(name, "rb") as f:
        h.update(f.read())
print(h.hexdigest())
EOF
)"
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$key" ] \
   && "$VENV/bin/python" -c 'import auditor' >/dev/null 2>&1; then
  echo "setup: $VENV is up to date ($("$VENV/bin/python" -c 'import auditor; print("xray-audit", auditor.__version__)'))"
  exit 0
fi

# (Re)build the venv. A venv made from another interpreter is replaced, not patched.
base_of() { "$1" -c 'import os, sys; print(os.path.realpath(sys._base_executable))' 2>/dev/null; }
if [ -x "$VENV/bin/python" ] && [ "$(base_of "$VENV/bin/python")" != "$(base_of "$base_python")" ]; then
  echo "setup: $VENV was made from another interpreter; rebuilding it"
  rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
  rm -rf "$VENV"
  if ! "$base_python" -m venv "$VENV" >/dev/null 2>&1; then
    # Debian/Ubuntu ship venv's pip bootstrap (ensurepip) in a separate package
    rm -rf "$VENV"
    minor="$("$base_python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    apt_install python3-venv "python$minor-venv" || exit 4
    "$base_python" -m venv "$VENV"
  fi
fi
echo "setup: installing xray-audit and its test dependencies into $VENV (constraints.txt; the first time takes minutes)"
# --root-user-action only exists in pip >= 22.1; the venv's pip is whatever the interpreter bundles.
root_flag=()
"$VENV/bin/python" -m pip install --help 2>/dev/null | grep -q -- '--root-user-action' && root_flag=(--root-user-action=ignore)
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "${root_flag[@]}" -c constraints.txt -e ".[dev]"
echo "$key" > "$STAMP"
echo "setup: ok ($("$VENV/bin/python" -c 'import auditor; print("xray-audit", auditor.__version__)') in $VENV; run .venv/bin/xray-audit, or: source .venv/bin/activate)"
