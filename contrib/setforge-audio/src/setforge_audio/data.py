"""A small labelled audio set the plugin writes itself (no download): tones, chords and chirps.

Three classes, long-tailed (``tone`` 30, ``chord`` 15, ``chirp`` 6 clips) of 0.25 s at 8 kHz,
16-bit PCM WAV in one folder per class, with frequencies, amplitudes and a little noise drawn
from a fixed seed, so every call writes the same files::

    setforge-audio-sample DIR          # writes DIR/clips/<class>/<n>.wav
"""

from __future__ import annotations

import argparse
import wave
from pathlib import Path

import numpy as np

__all__ = ["synthesise", "write_wav", "write_sample", "RATE", "COUNTS"]

RATE = 8000
COUNTS = (30, 15, 6)
CLASSES = ("tone", "chord", "chirp")


def synthesise(kind: str, rng: np.random.Generator, seconds: float = 0.25, rate: int = RATE) -> np.ndarray:
    """One mono clip of `kind` (``tone``, ``chord`` or ``chirp``), float32 in [-1, 1]."""
    t = np.arange(int(seconds * rate)) / rate
    f = rng.uniform(300, 1200)
    if kind == "tone":
        clip = np.sin(2 * np.pi * f * t)
    elif kind == "chord":  # a major triad
        clip = sum(np.sin(2 * np.pi * f * r * t) for r in (1.0, 1.25, 1.5)) / 3
    else:  # a linear chirp up two octaves
        clip = np.sin(2 * np.pi * (f / 4 * t + 0.5 * (f - f / 4) / seconds * t**2))
    clip = rng.uniform(0.2, 0.8) * clip + 0.01 * rng.standard_normal(len(t))
    return np.clip(clip, -1, 1).astype(np.float32)


def write_wav(path: Path, clip: np.ndarray, rate: int = RATE) -> Path:
    """Write a ``(samples,)`` or ``(channels, samples)`` clip as 16-bit PCM WAV."""
    clip = np.atleast_2d(clip)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(clip.shape[0])
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes((np.clip(clip.T, -1, 1) * 32767).round().astype("<i2").tobytes())
    return path


def write_sample(folder: str | Path, per_class: tuple[int, ...] = COUNTS, seed: int = 0) -> Path:
    """Write the set under `folder` (one sub-folder per class); returns `folder`."""
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    for name, count in zip(CLASSES, per_class):
        for i in range(count):
            write_wav(folder / name / f"{i:03d}.wav", synthesise(name, rng))
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="setforge-audio-sample", description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="writes FOLDER/clips/<class>/<n>.wav")
    args = parser.parse_args(argv)
    print(write_sample(args.folder / "clips"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
