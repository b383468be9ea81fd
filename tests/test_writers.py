import json
import re

from speakerlm.turns import Transcript, Turn
from speakerlm.writers import get_writer, output_path

TURNS = [Turn("Alice", "Hi, how are you?", 0.5, 2.25), Turn("spk 0", "Fine, thanks.", 2.0, 3671.5)]
T = Transcript("dir/meeting one.wav", TURNS, 3700.0, {"engine": "plain"})


def test_txt_is_name_colon_text_lines():
    assert get_writer("txt")(T) == "Alice: Hi, how are you?\nspk 0: Fine, thanks.\n"


def test_json_round_trips_turns():
    body = json.loads(get_writer("json")(T))
    assert body["audio"] == "dir/meeting one.wav" and body["engine"] == "plain"
    assert [Turn.from_dict(t) for t in body["turns"]] == TURNS


def _parse_srt_like(text, sep):
    stamp = r"(\d\d):(\d\d):(\d\d)" + re.escape(sep) + r"(\d\d\d)"
    out = []
    for m in re.finditer(stamp + " --> " + stamp + r"\n(.+)", text):
        g = [int(x) for x in m.groups()[:8]]
        out.append((g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000, g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000, m.group(9)))
    return out


def test_srt_parses_back_with_times_and_speakers():
    text = get_writer("srt")(T)
    assert text.startswith("1\n") and "\n2\n" in text
    assert _parse_srt_like(text, ",") == [(0.5, 2.25, "Alice: Hi, how are you?"), (2.0, 3671.5, "spk 0: Fine, thanks.")]


def test_vtt_has_header_and_voice_tags():
    text = get_writer("vtt")(T)
    assert text.startswith("WEBVTT\n\n")
    assert _parse_srt_like(text, ".")[1] == (2.0, 3671.5, "<v spk 0>Fine, thanks.")


def test_rttm_parses_back_with_pyannote_conventions():
    lines = get_writer("rttm")(T).splitlines()
    fields = [l.split() for l in lines]
    assert all(f[0] == "SPEAKER" and f[1] == "meeting_one" and len(f) == 10 for f in fields)
    assert [(float(f[3]), float(f[4]), f[7]) for f in fields] == [(0.5, 1.75, "Alice"), (2.0, 3669.5, "spk_0")]


def test_untimed_turns_span_the_recording():
    t = Transcript("a.wav", [Turn("spk 0", "hello")], 12.0)
    assert _parse_srt_like(get_writer("srt")(t), ",") == [(0.0, 12.0, "spk 0: hello")]


def test_output_path_uses_the_input_stem(tmp_path):
    assert output_path("x/y/talk.flac", "srt", tmp_path) == tmp_path / "talk.srt"
    assert output_path("talk.flac", "srt", None) is None
