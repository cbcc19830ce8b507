#!/usr/bin/env bash
# Installs whatever is missing for `make app` (mode app) or `make test` (mode test):
# Debian packages, the virtual environment at .venv, and the pretrained models.
# Idempotent: a second run with nothing missing takes a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-app}

# --- system packages -------------------------------------------------------
pkgs=(libportaudio2 ffmpeg)  # sounddevice needs PortAudio; whisper's load_audio needs ffmpeg
if [ "$mode" = test ]; then
  pkgs+=(espeak-ng sox chromium chromium-driver)  # test media and the headless-browser test
fi
missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing system packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing system packages with sudo: ${missing[*]}"
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: please install these system packages, then run this again: ${missing[*]}" >&2
    echo "       (Debian/Ubuntu: apt-get install ${missing[*]}; macOS: brew install portaudio ffmpeg espeak-ng sox)" >&2
    exit 1
  fi
fi

# --- virtual environment ---------------------------------------------------
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
extras=""
[ "$mode" = test ] && extras="[test]"
stamp=".venv/.livelearner-installed-$mode"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements.lock -nt "$stamp" ]; then
  echo "setup: installing Python packages into .venv (first time: about 2 minutes, 6.6 GB)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -c requirements.lock -e ".$extras"
  touch "$stamp"
fi

# --- models ----------------------------------------------------------------
# Fetched once into $LIVELEARNER_HOME (default ~/.cache/livelearner), verified by sha256.
.venv/bin/livelearner models fetch --default
