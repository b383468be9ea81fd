"""speakerlm: who said what, from one recording (a re-implementation of SpeakerLM, arXiv 2508.06372).

Data flow, one module per stage:
audio → vad → features → backbones/model (registration, pointer) → decoding → engines → turns → writers · metrics
"""

__version__ = "0.1.0"


def load_model(**options):
    """The Python API: `speakerlm.load_model().transcribe("meeting.wav", speakers={"Alice": ["a.wav"]})`;
    keywords are `TranscribeOptions` fields (engine, model, whisper, language, num_beams, …)."""
    from speakerlm.transcribe import Transcriber, TranscribeOptions

    return Transcriber(TranscribeOptions(**options))
