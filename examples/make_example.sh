#!/usr/bin/env bash
# Rebuilds the bundled example from Debian's flite voices: a two-person exchange (Alice = slt,
# Bob = rms) with short pauses, plus an enrolment clip per speaker made of *other* sentences.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
say() { flite -voice "$1" -t "$2" -o "$tmp/raw.wav"; sox -D "$tmp/raw.wav" -r 16000 -b 16 -c 1 "$3" norm -3; }  # -D: no random dither
turns=(
  "slt|Good morning. Did you get a chance to read the budget report?"
  "rms|I did. The travel costs look much higher than last year."
  "slt|That is because the team flew to the conference in March."
  "rms|Then we should plan the next trip earlier and book cheaper flights."
  "slt|Agreed. I will send a note to everyone this afternoon."
)
parts=()
for i in "${!turns[@]}"; do
  voice=${turns[$i]%%|*}; text=${turns[$i]#*|}
  say "$voice" "$text" "$tmp/t$i.wav"
  sox -n -r 16000 -b 16 -c 1 "$tmp/gap$i.wav" trim 0 0.$((3 + i % 4))
  parts+=("$tmp/t$i.wav" "$tmp/gap$i.wav")
done
sox "${parts[@]}" meeting.wav
say slt "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background." alice.wav
say rms "It is easy to tell the depth of a well. These days a chicken leg is a rare dish." bob.wav
printf '%s\n' "${turns[@]}" | sed 's/^slt|/Alice: /; s/^rms|/Bob: /' > meeting.reference.txt
