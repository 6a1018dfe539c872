# Sourced by scripts/test and scripts/demo: the project virtualenv and HAProxy.
#
# Why a virtualenv: Debian 12's /usr/bin/python3 is "externally managed" (PEP 668),
# pip refuses to install into it, and installing into any system Python mixes the
# project's pins with the OS's packages.  .venv/ (git-ignored) is built from the
# first python3 on PATH; a stamp of pyproject.toml + setup.cfg + that Python keeps
# repeat runs from reinstalling anything.

SR_MIN_PYTHON="3.11"
SR_VENV=".venv"

sr_as_root() {  # run a command as root (directly, or through sudo)
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

sr_apt_install() {  # Debian packages the scripts need and may install
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "cannot install $* here (no apt-get): install it with your package manager" >&2
    exit 2
  fi
  if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null 2>&1; then
    echo "$* is needed: as root, run apt-get install -y $*" >&2
    exit 2
  fi
  sr_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  sr_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

sr_need_haproxy() {  # Debian's haproxy unless one is on PATH; say which one is used
  if ! command -v haproxy >/dev/null 2>&1; then
    sr_apt_install haproxy
  fi
  echo "haproxy: $(command -v haproxy) ($(haproxy -v 2>&1 | head -n 1))"
}

sr_need_test_peers() {  # the real peers the tests drive: ZooKeeper, headless Chromium, wrk
  local missing=()
  [ -x /usr/share/zookeeper/bin/zkServer.sh ] || missing+=(zookeeper)
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing the tests' peers from Debian: ${missing[*]}" >&2
    sr_apt_install "${missing[@]}"
  fi
}

sr_base_python() {  # the first python3 on PATH, refused (one line) when too old
  local python
  python="$(command -v python3 || true)"
  if [ -z "$python" ]; then
    echo "no python3 on PATH: servicerouter needs Python >= $SR_MIN_PYTHON" >&2
    exit 2
  fi
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "$python is Python $("$python" -c 'import platform; print(platform.python_version())' 2>/dev/null || echo '?'):" \
         "servicerouter needs Python >= $SR_MIN_PYTHON (put a newer python3 first on PATH)" >&2
    exit 2
  fi
  echo "$python"
}

sr_make_venv() {  # create $SR_VENV with $1; Debian's python3-venv is installed if missing
  local python="$1"
  rm -rf "$SR_VENV"
  if "$python" -m venv "$SR_VENV" >/dev/null 2>&1; then
    return 0
  fi
  rm -rf "$SR_VENV"  # a failed venv leaves a directory without pip
  echo "$python -m venv failed: installing Debian's python3-venv" >&2
  sr_apt_install python3-venv
  "$python" -m venv "$SR_VENV"
}

# sr_venv EXTRAS: make .venv hold servicerouter (editable) with EXTRAS ("" or "test");
# sets SR_PY to the venv's python.
sr_venv() {
  local extras="$1" base identity stamp spec log
  base="$(sr_base_python)" || exit 2
  identity="$("$base" -c 'import sys; print(sys.prefix, sys.version.split()[0])')"
  stamp="$SR_VENV/.servicerouter-stamp${extras:+-$extras}"
  # What the install depends on: the Python it runs on and the packaging files.
  spec="$identity $(cat pyproject.toml setup.cfg | cksum)"
  if [ ! -x "$SR_VENV/bin/python" ] \
     || [ "$(cat "$SR_VENV/.servicerouter-python" 2>/dev/null)" != "$identity" ]; then
    sr_make_venv "$base"
    echo "$identity" > "$SR_VENV/.servicerouter-python"
  fi
  SR_PY="$SR_VENV/bin/python"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$spec" ]; then
    log="$SR_VENV/pip-install.log"
    echo "installing servicerouter${extras:+[$extras]} into $SR_VENV (pip log: $log)"
    if ! "$SR_PY" -m pip install --disable-pip-version-check -e ".${extras:+[$extras]}" \
        >"$log" 2>&1; then
      tail -n 20 "$log" >&2
      echo "pip install into $SR_VENV failed (full log: $log)" >&2
      exit 2
    fi
    echo "$spec" > "$stamp"
    if [ -n "$extras" ]; then echo "$spec" > "$SR_VENV/.servicerouter-stamp"; fi
  fi
  echo "python: $PWD/$SR_PY ($("$SR_PY" -c 'import sys; print(sys.version.split()[0])'), venv of $base)"
}
