#!/usr/bin/env bash
# Set up if needed, then transcribe the bundled example with its enrolled speakers, using the bundled
# SpeakerLM model (pass --engine cascade for the cascaded baseline).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/speakerlm transcribe examples/meeting.wav --engine speakerlm \
    --speaker Alice=examples/alice.wav --speaker Bob=examples/bob.wav "$@"
