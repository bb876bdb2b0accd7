#!/usr/bin/env bash
# Set up LLMOps Desktop in a virtual environment, then open the app or run the tests.
#
#   installers/setup.sh app      set up, then open the app
#   installers/setup.sh test     set up, then run the whole test suite (extra args go to pytest)
#   installers/setup.sh          set up only
#
# A second run skips work already done: system packages already present are not
# reinstalled, the venv is reused, and pip runs only when pyproject.toml, the
# constraints or this script changed. llama-cpp-python is compiled once (about
# 4 minutes on 2 cores); pip's wheel cache serves it afterwards.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LLMOPS_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
MODE="${1:-setup}"
[ $# -gt 0 ] && shift

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# --- system libraries Qt needs (only what is missing; needs root or sudo) -------------------
SYSTEM_PACKAGES=(libgl1 libegl1 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libdbus-1-3
                 libglib2.0-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0
                 libxcb-xinerama0 libxcb-randr0 libxcb-render-util0 libxcb-image0 fonts-dejavu-core)
missing=()
if command -v dpkg >/dev/null 2>&1; then
  for pkg in "${SYSTEM_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
fi
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
  if [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; then
    say "installing system libraries for Qt: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    say "warning: missing system packages ${missing[*]} (run as root to install them)"
  fi
fi

# --- virtual environment -------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtual environment in $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
STAMP="$VENV/.llmops-setup-stamp"
want=$(cat "$ROOT/pyproject.toml" "$ROOT/installers/constraints.txt" "$ROOT/installers/setup.sh" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ] || ! "$PY" -c "import llmops_desktop" 2>/dev/null; then
  export PIP_DISABLE_PIP_VERSION_CHECK=1
  # torch first, pinned: a plain "torch" requirement would pull a multi-GB CUDA build.
  if ! "$PY" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
    say "installing torch 2.13.0 (CPU build)"
    "$PY" -m pip install -q "torch==2.13.0"
  fi
  if ! "$PY" -c "import llama_cpp" 2>/dev/null; then
    say "installing llama-cpp-python (compiled once, ~4 min; then served from pip's cache)"
    CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" "$PY" -m pip install -q \
      -c "$ROOT/installers/constraints.txt" "llama-cpp-python==0.3.36"
  fi
  say "installing LLMOps Desktop and its dependencies"
  "$PY" -m pip install -q -c "$ROOT/installers/constraints.txt" -e "$ROOT[test]"
  echo "$want" > "$STAMP"
else
  say "environment up to date ($VENV)"
fi

case "$MODE" in
  app)
    say "opening LLMOps Desktop"
    exec "$VENV/bin/llmops-desktop" "$@"
    ;;
  test)
    say "running the test suite"
    cd "$ROOT"
    export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}"
    exec "$PY" -m pytest "$@"
    ;;
  setup)
    say "done. Open the app with: $VENV/bin/llmops-desktop   (CLI: $VENV/bin/llmops --help)"
    ;;
  *)
    echo "usage: installers/setup.sh [app|test|setup] [args...]" >&2
    exit 2
    ;;
esac
