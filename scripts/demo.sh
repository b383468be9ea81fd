#!/usr/bin/env bash
# Set up if needed, then transcribe the bundled example with its enrolled speakers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/speakerlm transcribe examples/meeting.wav \
    --speaker Alice=examples/alice.wav --speaker Bob=examples/bob.wav "$@"
