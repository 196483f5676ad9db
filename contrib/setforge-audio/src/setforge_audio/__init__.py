"""setforge-audio: audio data for setforge (a WAV-folder source, waveform augmenters)."""

__version__ = "0.1.0"
