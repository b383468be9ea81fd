"""Plain Whisper: the recording decoded by faster-whisper (long-form, VAD, beam search); one
anonymous speaker, one turn per Whisper segment."""

from __future__ import annotations

from speakerlm.engines.base import Engine, TranscribeOptions
from speakerlm.engines.progress import seconds_bar
from speakerlm.pretrained.fast_whisper import FastWhisper
from speakerlm.turns import ANONYMOUS, Turn


class PlainWhisper(Engine):
    def __init__(self, options: TranscribeOptions, config=None):
        self.options = self.resolve(options)
        self.asr = FastWhisper(self.options.whisper, language=self.options.language)

    def transcribe(self, wave, voiceprints, count=None, state=None) -> list[Turn]:
        with seconds_bar(wave, self.options.progress) as advance:
            segments = self.asr.transcribe(wave, self.options.language, self.options.num_beams, words=False,
                                           on_segment=lambda s: advance(s.end))
        return [Turn(ANONYMOUS.format(0), s.text, s.start, s.end) for s in segments if s.text]
