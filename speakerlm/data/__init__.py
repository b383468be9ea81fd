"""Data: the TTS voice bank, the text pool, the conversation simulator and dataset readers."""
