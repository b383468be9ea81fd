"""speakerlm: who said what, from one recording (a re-implementation of SpeakerLM, arXiv 2508.06372).

Data flow, one module per stage:
audio → (vad) → whisper / speaker_encoder → transcribe → turns → writers · metrics
"""

__version__ = "0.1.0"


def load_model(**options):
    """The Python API: `speakerlm.load_model().transcribe("meeting.wav", speakers={"Alice": ["a.wav"]})`."""
    from speakerlm.transcribe import Transcriber, TranscribeOptions

    return Transcriber(TranscribeOptions(**options))
