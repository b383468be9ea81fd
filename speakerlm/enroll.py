"""The enrolment store: named voiceprints kept on disk so `transcribe` can recognise people by voice.

A voiceprint is the mean embedding of 2–10 s clips of a speaker's audio (paper §5.1), one per
speaker encoder. The store is a folder (`$SPEAKERLM_CACHE/speakers` unless given) with one
`<name>.npz` per person, written atomically.

    speakerlm enroll Alice alice1.wav alice2.wav      # add or replace
    speakerlm enroll --list
    speakerlm enroll --remove Alice
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Optional

import numpy as np

from speakerlm.audio import Pathlike
from speakerlm.cache import atomic_path, cache_dir
from speakerlm.errors import UserError
from speakerlm.turns import check_speaker_name


def store_dir(path: Optional[Pathlike] = None) -> Path:
    folder = Path(path) if path else cache_dir() / "speakers"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _file(store: Path, name: str) -> Path:
    safe = re.sub(r"[^\w.-]+", "_", name)  # a file name, whatever characters the name holds
    return store / f"{safe}.npz"


def enroll(name: str, paths: list[Pathlike], encoder: str = "campp", store: Optional[Pathlike] = None) -> Path:
    """Compute and keep `name`'s voiceprint from `paths` (refuses bad names, silent or short audio)."""
    from speakerlm.voiceprints import enroll_voiceprint

    name = check_speaker_name(name)
    if not paths:
        raise UserError(f"enrolling {name!r}: give at least one audio file of their voice (2–10 s is best)")
    voiceprint = enroll_voiceprint(paths, encoder)
    path = _file(store_dir(store), name)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, name=np.array(name), encoder=np.array(encoder), voiceprint=voiceprint,
                     sources=np.array([str(p) for p in paths]))
    return path


def load_store(encoder: str = "campp", store: Optional[Pathlike] = None) -> dict[str, np.ndarray]:
    """name → voiceprint for every enrolled speaker whose voiceprint was made with `encoder`."""
    out = {}
    for path in sorted(store_dir(store).glob("*.npz")):
        with np.load(path, allow_pickle=False) as z:
            if str(z["encoder"]) == encoder:
                out[str(z["name"])] = z["voiceprint"].astype(np.float32)
    return out


def remove(name: str, store: Optional[Pathlike] = None) -> None:
    path = _file(store_dir(store), name)
    if not path.exists():
        raise UserError(f"{name!r} is not enrolled; `speakerlm enroll --list` shows who is")
    path.unlink()


def add_enroll_parser(subparsers) -> None:
    p = subparsers.add_parser("enroll", help="keep a speaker's voiceprint for later transcriptions")
    p.add_argument("name", nargs="?", help="the speaker's name as it should appear in transcripts")
    p.add_argument("files", nargs="*", help="audio of that speaker alone (2–10 s clips are best)")
    p.add_argument("--list", action="store_true", help="list enrolled speakers")
    p.add_argument("--remove", metavar="NAME", help="forget an enrolled speaker")
    p.add_argument("--store", type=Path, help="enrolment folder (default: the cache's speakers/)")
    p.add_argument("--speaker-encoder", default="campp", choices=("campp", "ge2e"))
    p.set_defaults(func=cmd_enroll)


def cmd_enroll(args: argparse.Namespace) -> None:
    if args.list:
        for name in load_store(args.speaker_encoder, args.store):
            print(name)
    elif args.remove:
        remove(args.remove, args.store)
        print(f"removed {args.remove}")
    elif args.name:
        print(f"enrolled {args.name}: {enroll(args.name, args.files, args.speaker_encoder, args.store)}")
    else:
        raise UserError("give NAME FILE... to enrol, --list, or --remove NAME")
