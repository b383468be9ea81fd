"""Command line: a thin layer over the library (`speakerlm transcribe`, `speakerlm prepare`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from speakerlm.errors import UserError

FORMATS = ("txt", "json", "srt", "vtt", "rttm")


def _speaker_arg(value: str) -> tuple[str, str]:
    if "=" not in value:
        raise argparse.ArgumentTypeError(f"{value!r}: expected NAME=FILE, e.g. --speaker Alice=alice.wav")
    name, path = value.split("=", 1)
    return name, path


def cmd_transcribe(args: argparse.Namespace) -> None:
    """Everything is checked before any model loads: inputs, options, output folder, enrolment."""
    from speakerlm.audio import check_audio_file
    from speakerlm.cache import write_text_atomic
    from speakerlm.diarize import SpeakerCount
    from speakerlm.transcribe import Transcriber, TranscribeOptions
    from speakerlm.turns import check_speaker_name
    from speakerlm.writers import get_writer, output_path

    transcriber = Transcriber(TranscribeOptions(engine=args.engine, model=args.model, whisper=args.whisper,
                                                language=args.language, num_beams=args.beams,
                                                speaker_encoder=args.speaker_encoder, progress=True))
    count = SpeakerCount(args.num_speakers, args.min_speakers, args.max_speakers)
    formats = FORMATS if args.format == "all" else (args.format,)
    if args.output_dir is None and len(formats) > 1:
        raise UserError("--format all writes several files; add --output-dir DIR")
    if args.output_dir is not None and args.output_dir.exists() and not args.output_dir.is_dir():
        raise UserError(f"--output-dir {args.output_dir}: is a file, not a folder; give a folder (it is created if missing)")
    for audio in args.files:
        check_audio_file(audio)
    speakers: dict[str, list[str]] = {}
    for name, path in args.speaker or []:
        speakers.setdefault(check_speaker_name(name), []).append(path)
    stored = {}
    if args.speakers_dir is not None:
        from speakerlm.enroll import load_store

        if not args.speakers_dir.is_dir():
            raise UserError(f"{args.speakers_dir}: no such enrolment folder; create it with `speakerlm enroll NAME FILE --store DIR`")
        stored = load_store(transcriber.speaker_encoder, args.speakers_dir)
    voiceprints = {**stored, **transcriber.enroll(speakers)}  # reads (and checks) the enrolment audio, once
    if args.output_dir is not None:
        args.output_dir.mkdir(parents=True, exist_ok=True)
    for audio in args.files:
        state = _state_file(audio, transcriber.options, voiceprints)  # finished work: a rerun resumes there
        transcript = transcriber.transcribe(audio, voiceprints=voiceprints, num_speakers=count.num,
                                            min_speakers=count.min, max_speakers=count.max, state=state)
        if not transcript.turns:
            print(f"speakerlm: warning: {audio}: no speech recognised; the transcript is empty", file=sys.stderr)
        if args.timeline:
            from speakerlm.plots import plot_timeline

            target = (args.output_dir or Path(".")) / f"{Path(audio).stem}.png"
            timed = [t for t in transcript.turns if t.start is not None and t.end is not None]
            plot_timeline(timed, target, title=f"{Path(audio).name}: who spoke when")
            print(f"wrote {target}", file=sys.stderr)
        for fmt in formats:
            text = get_writer(fmt)(transcript)
            path = output_path(audio, fmt, args.output_dir)
            if path is None:
                sys.stdout.write(text)
            else:
                write_text_atomic(path, text)
                print(f"wrote {path}", file=sys.stderr)
        if state is not None:
            state.unlink(missing_ok=True)  # outputs are written: nothing left to resume


def _state_file(audio: str, options, voiceprints: dict) -> Path | None:
    """Where the engine records finished work of this exact job (same file, same options, same
    enrolled voices), in the cache; None for engines that cannot resume."""
    import hashlib
    import os

    from speakerlm.cache import cache_dir
    from speakerlm.transcribe import ENGINES

    if not ENGINES[options.engine].resumable or not Path(audio).is_file():
        return None
    stat = os.stat(audio)
    key = repr((str(Path(audio).resolve()), stat.st_size, stat.st_mtime_ns, options,
                sorted((n, v.tobytes().hex()[:64]) for n, v in voiceprints.items())))
    folder = cache_dir() / "partial"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.jsonl"


def cmd_prepare(args: argparse.Namespace) -> None:
    """Convert every packaged pretrained part into the cache once, and report load times."""
    import time

    from speakerlm.pretrained.llm import load_llm
    from speakerlm.pretrained.speaker_encoder import ENCODERS
    from speakerlm.vad import _silero
    from speakerlm.pretrained.fast_whisper import FastWhisper
    from speakerlm.pretrained.whisper import SOURCES, load_whisper

    steps = [(f"whisper {n}", lambda n=n: load_whisper(n)) for n in SOURCES]
    steps += [(f"faster-whisper {n}", lambda n=n: FastWhisper(n)) for n in SOURCES]
    steps += [(f"speaker encoder {n}", cls) for n, cls in ENCODERS.items()]
    steps += [("llm smollm2-135m", load_llm), ("vad silero", _silero)]
    for label, load in steps:
        if args.skip_llm and label.startswith("llm"):
            continue
        t = time.perf_counter()
        load()
        print(f"{label}: ready in {time.perf_counter() - t:.2f} s", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="speakerlm", description="Who said what: speaker-attributed transcription.")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("transcribe", help="transcribe recordings, with optional enrolled speakers")
    t.add_argument("files", nargs="+", help="audio files (wav, flac, ogg, mp3, …)")
    t.add_argument("--speaker", action="append", type=_speaker_arg, metavar="NAME=FILE",
                   help="enrol a speaker by a voice sample (repeat for more speakers or more samples)")
    t.add_argument("--format", default="txt", choices=FORMATS + ("all",), help="output format (default txt)")
    t.add_argument("--output-dir", type=Path, help="write DIR/<file stem>.<format> instead of printing")
    t.add_argument("--speakers-dir", type=Path, help="use every voiceprint in this enrolment folder "
                   "(made by `speakerlm enroll --store DIR`)")
    t.add_argument("--timeline", action="store_true", help="also draw who spoke when as <stem>.png")
    t.add_argument("--engine", choices=("cascade", "speakerlm", "plain"),
                   help="cascade (default; speakerlm when --model is given): speaker clustering + "
                        "faster-whisper, the most accurate on held-out data; speakerlm: the end-to-end model "
                        "(the bundled one, or --model); plain: Whisper only, one speaker")
    t.add_argument("--model", help="SpeakerLM model folder (default: the bundled one)")
    t.add_argument("--whisper", help="Whisper model of the cascade and plain engines: tiny.en (default), base, "
                   "or a local HF folder (the SpeakerLM model is built on its own Whisper)")
    t.add_argument("--language", default="en", help="language code for multilingual Whisper (default en)")
    t.add_argument("--beams", type=int, help="beam size, 1 = greedy (default: 5 for cascade and plain, 4 for the model)")
    t.add_argument("--speaker-encoder", choices=("campp", "ge2e"),
                   help="voiceprint model of the cascade (default campp; the SpeakerLM model uses its own)")
    t.add_argument("--num-speakers", type=int, help="the number of speakers, when known")
    t.add_argument("--min-speakers", type=int, help="at least this many speakers")
    t.add_argument("--max-speakers", type=int, help="at most this many speakers")
    t.set_defaults(func=cmd_transcribe)

    from speakerlm.evaluate import add_evaluate_parser

    add_evaluate_parser(sub)
    from speakerlm.enroll import add_enroll_parser
    from speakerlm.data.simulate import add_simulate_parser
    from speakerlm.train import add_train_parser

    add_enroll_parser(sub)
    add_simulate_parser(sub)
    add_train_parser(sub)

    p = sub.add_parser("prepare", help="convert the packaged weights into the cache (done once by setup)")
    p.add_argument("--skip-llm", action="store_true", help="skip the SmolLM2 conversion")
    p.set_defaults(func=cmd_prepare)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as e:
        print(f"speakerlm: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("speakerlm: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
