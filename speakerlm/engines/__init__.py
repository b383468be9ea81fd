"""Engines: a recording → chronological turns, behind one interface (`base.Engine`).

plain      Whisper only, one anonymous speaker (the speaker-agnostic WER reference)
cascade    diarization → Whisper words → each word labelled from the frames it was spoken in
speakerlm  the end-to-end SpeakerLM model over windows of the recording
"""
