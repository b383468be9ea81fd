"""Plain Whisper: speech windows cut at pauses, each transcribed; one anonymous speaker."""

from __future__ import annotations

from speakerlm.audio import SAMPLE_RATE
from speakerlm.engines.base import Engine, TranscribeOptions
from speakerlm.pretrained.whisper import ASR_WINDOW_SECONDS, load_whisper, transcribe_window
from speakerlm.turns import ANONYMOUS, Turn
from speakerlm.vad import group_regions, speech_regions


class PlainWhisper(Engine):
    def __init__(self, options: TranscribeOptions, config=None):
        self.options = self.resolve(options)
        self.model, self.processor = load_whisper(self.options.whisper)

    def transcribe(self, wave, voiceprints, count=None, state=None) -> list[Turn]:
        turns = []
        for w in group_regions(speech_regions(wave), ASR_WINDOW_SECONDS):
            piece = wave[int(w.start * SAMPLE_RATE) : int(w.end * SAMPLE_RATE)]
            text = transcribe_window(self.model, self.processor, piece, self.options.language, self.options.num_beams)
            if text:
                turns.append(Turn(ANONYMOUS.format(0), text, round(w.start, 3), round(w.end, 3)))
        return turns
