"""``wav-folder``: WAV clips in one sub-folder per class (``root/dog/1.wav``, ``root/cat/7.wav``)."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from setforge import ConfigError, DataError, Dataset, Source, StepContext

__all__ = ["WavFolderSource", "read_wav"]


def read_wav(path: Path, backend: str = "auto") -> tuple[np.ndarray, int]:
    """``(channels, samples)`` float32 in [-1, 1] and the sample rate. ``wave`` (standard library)
    reads 8/16/24/32-bit PCM; ``soundfile`` (optional) also float WAV, FLAC and OGG."""
    if backend == "soundfile" or (backend == "auto" and path.suffix.lower() != ".wav"):
        try:
            import soundfile
        except ImportError:
            raise DataError(f"{path.suffix or path.name} files need the soundfile package: pip install "
                            "soundfile (the standard library reads PCM .wav only)") from None
        try:
            data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        except (RuntimeError, soundfile.LibsndfileError) as error:
            raise DataError(f"soundfile cannot read it ({error})") from None
        return np.ascontiguousarray(data.T), int(rate)
    try:
        with wave.open(str(path), "rb") as handle:
            channels, width, rate = handle.getnchannels(), handle.getsampwidth(), handle.getframerate()
            raw = handle.readframes(handle.getnframes())
    except (wave.Error, EOFError) as error:
        if backend == "auto":
            try:
                return read_wav(path, "soundfile")
            except DataError:
                pass
        raise DataError(f"not a PCM WAV file the standard library reads ({str(error) or type(error).__name__}); "
                        "pip install soundfile for float WAV, FLAC or OGG, or WAVE_FORMAT_EXTENSIBLE files "
                        "(24-bit or multichannel WAV as many tools write them)") from None
    if width == 1:  # 8-bit PCM is unsigned
        values = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        ints = (b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16))
        values = (np.where(ints >= 2**23, ints - 2**24, ints)).astype(np.float32) / 2**23
    elif width in (2, 4):
        values = np.frombuffer(raw, {2: "<i2", 4: "<i4"}[width]).astype(np.float32) / float(2 ** (8 * width - 1))
    else:
        raise DataError(f"{path.name}: {8 * width}-bit samples are not PCM the source reads")
    return np.ascontiguousarray(values.reshape(-1, channels).T), rate


class WavFolderSource(Source):
    """Audio clips from a folder of class folders: each sub-folder's name is a class, its audio files the rows.

    Clips become ``(channels, samples)`` float32 in [-1, 1]: mixed down to mono (``mono``), then
    cut or padded with silence to ``length`` samples (unset: the longest clip). All clips must
    share one sample rate (``sample_rate``, unset: the first file's); a clip at another rate, an
    unreadable file or an empty one is an invalid row (stops the run naming the file, or is
    dropped and counted with ``source.on_invalid: drop``). PCM WAV is read by the standard
    library; other formats need ``soundfile``.
    """

    name = "wav-folder"
    modalities = ("audio",)

    class Params(Source.Params):
        """Where the clips are and how they are shaped."""

        path: Path = Field(Path("audio"), description="the folder of class folders (relative to the run file)")
        length: int | None = Field(None, ge=1, le=2**31 - 1, description="samples per clip (cut or padded); "
                                                                         "unset: the longest clip")
        mono: bool = Field(True, description="average the channels into one")
        sample_rate: int | None = Field(None, ge=1, le=10_000_000, description="the rate every clip must have; "
                                                                               "unset: the first file's")
        extensions: list[str] = Field([".wav"], min_length=1, description="file suffixes read (case-insensitive)")
        backend: Literal["auto", "wave", "soundfile"] = Field("auto", description="auto: wave for .wav, "
                                                              "soundfile for the rest")

    @classmethod
    def make_testing_params(cls, folder: Path) -> dict[str, object]:
        """The plugin's small tone set, for the conformance kit."""
        from .data import write_sample

        return {"path": str(write_sample(Path(folder) / "clips", per_class=(4, 3, 2)))}

    def _load(self, ctx: StepContext) -> Dataset:
        params = self.params
        root = Path(params.path).expanduser()
        if not root.is_dir():
            raise ConfigError(problems=[("source.params.path", f"wav-folder: {str(root)!r} is not a folder")])
        classes = tuple(sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")))
        if not classes:
            raise DataError(f"source 'wav-folder': {root} has no class folders")
        suffixes = {s.lower() for s in params.extensions}
        rate = params.sample_rate
        clips, labels = [], []
        for c, name in enumerate(classes):
            for file in sorted(p for p in (root / name).iterdir()
                               if p.suffix.lower() in suffixes and not p.name.startswith(".") and not p.is_dir()):
                try:  # (hidden files, macOS's ._x.wav among them, are skipped, as image-folder skips them)
                    data, file_rate = read_wav(file, params.backend)
                except (DataError, OSError) as error:  # the reason alone, so that equal reasons count together
                    self._invalid(f"{name}/{file.name}", str(error) if isinstance(error, DataError) else
                                  f"cannot read the file ({error.strerror or type(error).__name__})")
                    continue
                rate = file_rate if rate is None else rate
                if file_rate != rate:
                    self._invalid(f"{name}/{file.name}", f"sample rate {file_rate} Hz, the others have {rate} Hz")
                    continue
                if data.shape[1] == 0:
                    self._invalid(f"{name}/{file.name}", "no samples")
                    continue
                clips.append(data.mean(0, keepdims=True) if params.mono else data)
                labels.append(c)
        if not clips:
            raise DataError(f"source 'wav-folder': no readable clips under {root}")
        if len({clip.shape[0] for clip in clips}) > 1:
            raise DataError("source 'wav-folder': clips have different channel counts; set mono: true")
        length = params.length or max(clip.shape[1] for clip in clips)
        x = np.zeros((len(clips), clips[0].shape[0], length), np.float32)
        for i, clip in enumerate(clips):
            x[i, :, :min(length, clip.shape[1])] = clip[:, :length]
        self.sample_rate = rate
        return Dataset(x=torch.from_numpy(x), y=torch.tensor(labels, dtype=torch.int64), classes=classes,
                       modality="audio")
