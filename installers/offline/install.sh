#!/usr/bin/env bash
# Install LLMOps Desktop from this offline bundle. Nothing is downloaded.
#
#   ./install.sh [--prefix DIR] [--bin-dir DIR] [--python PY] [--no-launcher]
#   ./install.sh --uninstall [--prefix DIR] [--purge-data]
#
# Install: checks SHA256SUMS, makes a virtual environment under the prefix, installs the
# wheels of wheelhouse/ with pip --no-index --require-hashes (each one pinned to the
# version and sha256 in requirements.lock), runs `llmops doctor`, puts `llmops` and
# `llmops-desktop` on PATH and adds the app to the desktop's applications menu.
#
# Run it again (with this bundle or a newer one) to upgrade in place: the new version is
# installed beside the old one and switched to only once it passed its self-check. Your
# data (catalog, models, settings) lives outside the prefix and is never touched, except
# by --uninstall --purge-data.
#
#   --prefix DIR    where the app goes (default: ~/.local/opt/llmops-desktop)
#   --bin-dir DIR   where the llmops and llmops-desktop commands are linked
#                   (default: ~/.local/bin; the prefix's bin/ has them too)
#   --python PY     the Python interpreter to use (default: pythonX.Y of the bundle, or python3)
#   --no-launcher   do not add the applications-menu entry
#   --uninstall     remove the app, its commands and its menu entry; the data stays
#   --purge-data    with --uninstall: also delete the data home (catalog, models, settings)
#
# Exit codes: 0 done, 1 failed (the message says what to do), 2 usage.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PREFIX="${HOME}/.local/opt/llmops-desktop"
BIN_DIR="${HOME}/.local/bin"
APPS_DIR="${XDG_DATA_HOME:-$HOME/.local/share}/applications"
ICONS_DIR="${XDG_DATA_HOME:-$HOME/.local/share}/icons/hicolor/scalable/apps"
PYTHON=""
ACTION=install
PURGE=0
LAUNCHER=1
MARKER=".llmops-desktop-prefix"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || { usage >&2; exit 2; }; PREFIX="$2"; shift 2 ;;
    --prefix=*) PREFIX="${1#*=}"; shift ;;
    --bin-dir) [ $# -ge 2 ] || { usage >&2; exit 2; }; BIN_DIR="$2"; shift 2 ;;
    --bin-dir=*) BIN_DIR="${1#*=}"; shift ;;
    --python) [ $# -ge 2 ] || { usage >&2; exit 2; }; PYTHON="$2"; shift 2 ;;
    --python=*) PYTHON="${1#*=}"; shift ;;
    --no-launcher) LAUNCHER=0; shift ;;
    --uninstall) ACTION=uninstall; shift ;;
    --purge-data) PURGE=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) printf 'unknown option: %s\n\n' "$1" >&2; usage >&2; exit 2 ;;
  esac
done
[ "$PURGE" = 1 ] && [ "$ACTION" != uninstall ] && { echo "--purge-data goes with --uninstall" >&2; exit 2; }
mkdir -p "$PREFIX" 2>/dev/null || true
PREFIX="$(cd "$PREFIX" 2>/dev/null && pwd)" || die "cannot create the prefix $PREFIX"
DESKTOP_FILE="$APPS_DIR/llmops-desktop.desktop"
ICON_FILE="$ICONS_DIR/llmops-desktop.svg"

# Nothing the app or pip runs from here may reach the network.
export PIP_CONFIG_FILE=/dev/null PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
unset PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS PIP_CONSTRAINT PIP_REQUIREMENT
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 DO_NOT_TRACK=1

remove_link() {  # remove $1 only when it is a link into the prefix
  if [ -L "$1" ] && case "$(readlink "$1")" in "$PREFIX"/*) true ;; *) false ;; esac; then
    rm -f "$1"
  fi
}

# ---- uninstall ----------------------------------------------------------------------------------
if [ "$ACTION" = uninstall ]; then
  [ -f "$PREFIX/$MARKER" ] || die "$PREFIX holds no LLMOps Desktop installed by install.sh (no $MARKER); nothing removed. Pass the --prefix you installed to."
  DATA_HOME=""
  if [ -x "$PREFIX/current/bin/python" ]; then
    DATA_HOME="$("$PREFIX/current/bin/python" -c 'from llmops_desktop.paths import default_home; print(default_home())' 2>/dev/null || true)"
  fi
  for cmd in llmops llmops-desktop; do remove_link "$BIN_DIR/$cmd"; done
  if [ -f "$DESKTOP_FILE" ] && grep -q "^Exec=$PREFIX/" "$DESKTOP_FILE"; then
    rm -f "$DESKTOP_FILE" "$ICON_FILE"
    command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$APPS_DIR" 2>/dev/null || true
  fi
  rm -rf "$PREFIX"
  say "removed LLMOps Desktop from $PREFIX"
  if [ "$PURGE" = 1 ]; then
    [ -n "$DATA_HOME" ] || die "could not tell where the data lives; delete it yourself (LLMOPS_HOME, or ~/.local/share/llmops-desktop)"
    case "$DATA_HOME" in
      /|"$HOME"|"$HOME/"|/home|/root|/usr*|/etc*) die "refusing to delete $DATA_HOME: it is not an app data folder" ;;
    esac
    if [ -d "$DATA_HOME" ]; then
      rm -rf "$DATA_HOME"
      say "deleted the data home $DATA_HOME (catalog, models, settings)"
    fi
  elif [ -n "$DATA_HOME" ]; then
    say "your data stays in $DATA_HOME (remove it with --uninstall --purge-data)"
  fi
  exit 0
fi

# ---- 1. the bundle is whole ---------------------------------------------------------------------
cd "$HERE"
[ -f SHA256SUMS ] || die "SHA256SUMS is missing: this is not a complete bundle. Copy the archive again."
say "checking SHA256SUMS"
if command -v sha256sum >/dev/null 2>&1; then
  bad="$(sha256sum -c --quiet SHA256SUMS 2>&1)" || die "the bundle is damaged; copy the archive again and compare its sha256 with the one printed when it was built:
$bad"
else
  bad="$(python3 - <<'EOF'
import hashlib
bad = []
for line in open("SHA256SUMS", encoding="utf-8"):
    digest, name = line.rstrip("\n").split("  ", 1)
    try:
        with open(name, "rb") as fh:
            ok = hashlib.file_digest(fh, "sha256").hexdigest() == digest
    except OSError:
        ok = False
    if not ok:
        bad.append(name + ": FAILED")
print("\n".join(bad))
EOF
)"
  [ -z "$bad" ] || die "the bundle is damaged; copy the archive again:
$bad"
fi
listed="$(cut -d' ' -f3- SHA256SUMS | grep -c '^wheelhouse/' || true)"
present="$(find wheelhouse -type f | wc -l)"
[ "$listed" = "$present" ] || die "wheelhouse/ holds $present files but SHA256SUMS lists $listed; copy the archive again."

PYVER="$(sed -n 's/.*"python": "\([0-9.]*\)".*/\1/p' BUILD-INFO.json | head -n1)"
APPVER="$(sed -n 's/.*"version": "\([^"]*\)".*/\1/p' BUILD-INFO.json | head -n1)"
[ -n "$PYVER" ] || die "BUILD-INFO.json names no Python version; copy the archive again."

# ---- 2. a Python of the bundle's version --------------------------------------------------------
if [ -z "$PYTHON" ]; then
  for cand in "python$PYVER" python3 python; do
    if command -v "$cand" >/dev/null 2>&1 && [ "$("$cand" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$PYVER" ]; then
      PYTHON="$(command -v "$cand")"; break
    fi
  done
  [ -n "$PYTHON" ] || die "this bundle is for Python $PYVER and none was found (looked for python$PYVER, python3). Install Python $PYVER, or pass --python /path/to/python$PYVER, or build a bundle for this machine's Python with --python."
fi
have="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" || die "$PYTHON does not run"
[ "$have" = "$PYVER" ] || die "$PYTHON is Python $have but this bundle is for $PYVER; pass --python with a Python $PYVER, or build a bundle with --python $have."

# ---- 3. a fresh environment beside the current one ----------------------------------------------
touch "$PREFIX/$MARKER"
mkdir -p "$PREFIX/versions" "$PREFIX/bin"
ENV_DIR="$PREFIX/versions/$APPVER-$(date +%Y%m%d-%H%M%S)-$$"
cleanup_failed() { rm -rf "$ENV_DIR"; }
trap 'cleanup_failed' ERR INT TERM
say "creating the environment in $ENV_DIR"
if ! "$PYTHON" -m venv "$ENV_DIR" 2>/dev/null; then
  # Python without ensurepip (Debian's python3 without python3-venv): bootstrap pip from the bundle.
  rm -rf "$ENV_DIR"
  "$PYTHON" -m venv --without-pip "$ENV_DIR" || die "$PYTHON cannot create a virtual environment"
  PIPWHL="$(ls bootstrap/pip-*.whl 2>/dev/null | head -n1)"
  [ -n "$PIPWHL" ] || die "no pip wheel in bootstrap/ to set up the environment with"
  "$ENV_DIR/bin/python" "$PIPWHL/pip" install -q --no-index "$PIPWHL" || die "could not install pip from $PIPWHL"
fi

say "installing $(grep -c '^[a-z0-9]' requirements.lock) packages from wheelhouse/ (no network, hashes checked)"
"$ENV_DIR/bin/python" -m pip install -q --no-index --find-links "$HERE/wheelhouse" \
  --require-hashes --only-binary :all: --no-compile -r "$HERE/requirements.lock" \
  || { cleanup_failed; die "pip could not install the bundle's wheels (see above); nothing was changed."; }

# ---- 4. self-check ------------------------------------------------------------------------------
say "self-check: llmops doctor"
if ! "$ENV_DIR/bin/llmops" doctor; then
  cleanup_failed
  die "the self-check failed (see above); the previous installation, if any, is unchanged."
fi
"$ENV_DIR/bin/llmops" --version >/dev/null
trap - ERR INT TERM

# ---- 5. switch over, atomically -----------------------------------------------------------------
ln -sfn "$ENV_DIR" "$PREFIX/current.new"
mv -Tf "$PREFIX/current.new" "$PREFIX/current"
for old in "$PREFIX"/versions/*; do
  [ "$old" = "$ENV_DIR" ] || rm -rf "$old"
done
for cmd in llmops llmops-desktop; do
  ln -sfn "$PREFIX/current/bin/$cmd" "$PREFIX/bin/$cmd"
done
mkdir -p "$BIN_DIR"
for cmd in llmops llmops-desktop; do
  if [ -e "$BIN_DIR/$cmd" ] && [ ! -L "$BIN_DIR/$cmd" ]; then
    say "warning: $BIN_DIR/$cmd exists and is not ours; left alone (use $PREFIX/bin/$cmd)"
  else
    ln -sfn "$PREFIX/bin/$cmd" "$BIN_DIR/$cmd"
  fi
done

# ---- 6. the applications-menu entry -------------------------------------------------------------
if [ "$LAUNCHER" = 1 ]; then
  mkdir -p "$APPS_DIR" "$ICONS_DIR"
  "$PREFIX/current/bin/python" - "$ICON_FILE" <<'EOF'
import shutil, sys
from importlib.resources import files
with files("llmops_desktop.resources").joinpath("icons/app.svg").open("rb") as src, \
        open(sys.argv[1], "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
  cat > "$DESKTOP_FILE.tmp" <<EOF
[Desktop Entry]
Type=Application
Version=1.5
Name=LLMOps Desktop
GenericName=Language model operations
Comment=Import, catalog, quantize, fine-tune and serve open-weight language models, offline
Exec=$PREFIX/bin/llmops-desktop
TryExec=$PREFIX/bin/llmops-desktop
Icon=$ICON_FILE
Terminal=false
Categories=Development;Science;
Keywords=LLM;model;quantize;serve;gguf;
StartupNotify=true
StartupWMClass=llmops-desktop
EOF
  mv -f "$DESKTOP_FILE.tmp" "$DESKTOP_FILE"
  chmod 0644 "$DESKTOP_FILE"
  command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$APPS_DIR" 2>/dev/null || true
fi

DATA_HOME="$("$PREFIX/current/bin/python" -c 'from llmops_desktop.paths import default_home; print(default_home())')"
say "installed LLMOps Desktop $APPVER in $PREFIX"
echo "  commands:  $BIN_DIR/llmops, $BIN_DIR/llmops-desktop (also in $PREFIX/bin)"
[ "$LAUNCHER" = 1 ] && echo "  launcher:  $DESKTOP_FILE"
echo "  your data: $DATA_HOME (kept across upgrades and uninstalls)"
case ":$PATH:" in
  *":$BIN_DIR:"*) ;;
  *) echo "  note: $BIN_DIR is not on PATH; add it (export PATH=\"$BIN_DIR:\$PATH\") or use $PREFIX/bin/llmops" ;;
esac
