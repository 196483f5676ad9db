"""``wav-folder``: WAV clips in one sub-folder per class (``root/dog/1.wav``, ``root/cat/7.wav``)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from setforge import ConfigError, DataError, Dataset, Source, StepContext, sort_class_names

__all__ = ["WavFolderSource", "read_wav"]


#: WAV format tags: integer PCM, IEEE float, and WAVE_FORMAT_EXTENSIBLE (the tag of its sub-format
#: GUID's first two bytes), which many tools write for 24-bit or multichannel audio.
_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE


def read_wav(path: Path, backend: str = "auto") -> tuple[np.ndarray, int]:
    """``(channels, samples)`` float32 in [-1, 1] and the sample rate. The built-in reader (backend
    ``wave``) reads WAV of 8/16/24/32-bit integer PCM and 32/64-bit float, plain or
    WAVE_FORMAT_EXTENSIBLE; ``soundfile`` (optional) also compressed WAV, FLAC and OGG."""
    if backend == "soundfile" or (backend == "auto" and path.suffix.lower() != ".wav"):
        try:
            import soundfile
        except ImportError:
            raise DataError(f"{path.suffix or path.name} files need the soundfile package: pip install "
                            "soundfile (setforge-audio itself reads PCM and float .wav only)") from None
        try:
            data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        except (RuntimeError, soundfile.LibsndfileError) as error:
            raise DataError(f"soundfile cannot read it ({error})") from None
        return np.ascontiguousarray(data.T), int(rate)
    try:
        return _read_riff_wav(path.read_bytes())
    except ValueError as error:
        if backend == "auto":
            try:
                return read_wav(path, "soundfile")
            except DataError:
                pass
        raise DataError(f"not a WAV file setforge-audio reads ({error}): it reads integer PCM (8/16/24/32-bit) "
                        "and float (32/64-bit) WAV; pip install soundfile for compressed WAV, FLAC or OGG") from None


def _read_riff_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Decode a RIFF/WAVE file's bytes (`read_wav`); ValueError saying what is wrong."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("no RIFF/WAVE header")
    chunks, position = {}, 12
    while position + 8 <= len(data):
        size = int.from_bytes(data[position + 4:position + 8], "little")
        chunks.setdefault(data[position:position + 4], data[position + 8:position + 8 + size])
        position += 8 + size + (size & 1)  # (chunks are padded to an even size)
    fmt, samples = chunks.get(b"fmt "), chunks.get(b"data")
    if fmt is None or len(fmt) < 16 or samples is None:
        raise ValueError("no 'fmt ' or 'data' chunk")
    tag, channels, rate = struct.unpack("<HHI", fmt[:8])
    frame_bytes = struct.unpack("<H", fmt[12:14])[0]
    if tag == _EXTENSIBLE:
        if len(fmt) < 26:
            raise ValueError("a WAVE_FORMAT_EXTENSIBLE header without its sub-format")
        tag = struct.unpack("<H", fmt[24:26])[0]
    if channels < 1 or frame_bytes % channels:
        raise ValueError(f"{channels} channels in frames of {frame_bytes} bytes")
    width = frame_bytes // channels  # the container's bytes per sample (24 valid bits may sit in 4)
    samples = samples[:len(samples) // frame_bytes * frame_bytes]  # (a cut-off last frame is left out)
    if tag == _FLOAT and width in (4, 8):
        values = np.frombuffer(samples, {4: "<f4", 8: "<f8"}[width]).astype(np.float32)
        values = np.clip(np.nan_to_num(values), -1.0, 1.0)
    elif tag != _PCM:
        raise ValueError(f"format tag {tag:#06x} (compressed audio)")
    elif width == 1:  # 8-bit PCM is unsigned
        values = (np.frombuffer(samples, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 3:
        b = np.frombuffer(samples, np.uint8).reshape(-1, 3).astype(np.int32)
        ints = (b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16))
        values = (np.where(ints >= 2**23, ints - 2**24, ints)).astype(np.float32) / 2**23
    elif width in (2, 4):
        values = np.frombuffer(samples, {2: "<i2", 4: "<i4"}[width]).astype(np.float32) / float(2 ** (8 * width - 1))
    else:
        raise ValueError(f"{8 * width}-bit integer samples")
    return np.ascontiguousarray(values.reshape(-1, channels).T), rate


class WavFolderSource(Source):
    """Audio clips from a folder of class folders: each sub-folder's name is a class, its audio files the rows.

    Clips become ``(channels, samples)`` float32 in [-1, 1]: mixed down to mono (``mono``), then
    cut or padded with silence to ``length`` samples (unset: the longest clip). All clips must
    share one sample rate (``sample_rate``, unset: the first file's); a clip at another rate, an
    unreadable file or an empty one is an invalid row (stops the run naming the file, or is
    dropped and counted with ``source.on_invalid: drop``). Integer PCM and float WAV (plain or
    WAVE_FORMAT_EXTENSIBLE) are read by setforge-audio itself; other formats need ``soundfile``.
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
        backend: Literal["auto", "wave", "soundfile"] = Field("auto", description="auto: the built-in WAV reader "
                                                              "(wave) for .wav, soundfile for the rest")

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
        classes = tuple(sort_class_names(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")))
        if not classes:
            raise DataError(f"source 'wav-folder': {root} has no class folders")
        suffixes = {s.lower() for s in params.extensions}
        rate, channels = params.sample_rate, None
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
                channels = data.shape[0] if channels is None else channels
                if not params.mono and data.shape[0] != channels:  # (mono: every clip is mixed down to one)
                    self._invalid(f"{name}/{file.name}", f"{data.shape[0]} channels, the others have {channels} "
                                  "(mono: true mixes every clip down to one)")
                    continue
                clips.append(data.mean(0, keepdims=True) if params.mono else data)
                labels.append(c)
        if not clips:
            raise DataError(f"source 'wav-folder': no readable clips under {root}")
        length = params.length or max(clip.shape[1] for clip in clips)
        x = np.zeros((len(clips), clips[0].shape[0], length), np.float32)
        for i, clip in enumerate(clips):
            x[i, :, :min(length, clip.shape[1])] = clip[:, :length]
        self.sample_rate = rate
        return Dataset(x=torch.from_numpy(x), y=torch.tensor(labels, dtype=torch.int64), classes=classes,
                       modality="audio")
