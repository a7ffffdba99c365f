#!/usr/bin/env bash
# One idempotent set-up for a fresh machine: Debian libraries (when missing), a virtual environment in
# .venv, PyTorch, scener1 with its extras, and SAM2 built without CUDA. Called by `make install`.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
# torch/torchvision are pinned to a pair known to work with transformers' Qwen processors and SAM2
# (see docs/environment.md); override with TORCH_SPEC="torch==X torchvision==Y".
TORCH_SPEC=${TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}
EXTRAS=${EXTRAS:-"train,eval,dev"}

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# 1. Debian libraries: Open3D needs libusb to import; offscreen rendering needs a Vulkan driver;
#    pycocoevalcap's METEOR and PTB tokenizer need Java.
DEB_PKGS="libusb-1.0-0 libvulkan1 mesa-vulkan-drivers"
missing=""
if command -v dpkg >/dev/null 2>&1; then
  for p in $DEB_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  command -v java >/dev/null 2>&1 || missing="$missing default-jre-headless"
fi
if [ -n "$missing" ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
  if [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; then
    log "installing Debian packages:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
  else
    log "WARNING: missing Debian packages:$missing (no root or sudo); install them by hand"
  fi
fi

# 2. Virtual environment.
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"
export PIP_DISABLE_PIP_VERSION_CHECK=1

# 3. PyTorch first, so that nothing later pulls a different build.
if ! "$VENV/bin/python" -c "import torch, torchvision" >/dev/null 2>&1; then
  log "installing $TORCH_SPEC"
  $PIP install -q $TORCH_SPEC
fi

# 4. scener1 itself (editable) with the extras the tests and tools use.
log "installing scener1[$EXTRAS]"
$PIP install -q setuptools wheel
$PIP install -q -e ".[$EXTRAS]"

# 5. SAM2: no nvcc here, and its build must see the torch installed above (no build isolation).
if ! "$VENV/bin/python" -c "import sam2" >/dev/null 2>&1; then
  log "installing sam2 (CPU build)"
  SAM2_BUILD_CUDA=0 $PIP install -q --no-build-isolation "sam2>=1.1"
fi
log "ready: $VENV/bin/scener1"
