# Sourced by scripts/serve and scripts/test: make sure ./.venv exists and holds Corral with the
# given extras. Works on a fresh Debian machine: if the interpreter lacks venv/ensurepip (Debian
# splits it into python3-venv) and we are root, install it with apt-get.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
python="${PYTHON:-python3}"
extras="${1:-}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "Corral needs Python 3.11 or newer (found: $("$python" --version 2>&1))." >&2
  exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
  if ! "$python" -m venv "$venv" 2>/dev/null; then
    rm -rf "$venv"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      ver="$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python${ver}-venv" \
        || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
      "$python" -m venv "$venv"
    else
      echo "Cannot create a virtualenv: install python3-venv (sudo apt-get install python3-venv)." >&2
      exit 1
    fi
  fi
fi
spec="$root"
[ -n "$extras" ] && spec="$root[$extras]"
stamp="$venv/.corral-installed-$extras"
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
  "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
  if ! "$venv/bin/python" -m pip install -q -e "$spec" >"$venv/pip.log" 2>&1; then
    grep -v "^WARNING: Location" "$venv/pip.log" >&2
    echo "Installing Corral failed (full log: $venv/pip.log)." >&2
    exit 1
  fi
  touch "$stamp"
fi
