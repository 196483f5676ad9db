"""The wav-folder source, the example run file and discovery by setforge."""

import json
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from setforge import DataError, StepContext
from setforge.registry import Registry
from setforge.testing import check_component
from setforge_audio.data import COUNTS, RATE, write_sample, write_wav
from setforge_audio.source import WavFolderSource, read_wav

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "audio.yaml"


def test_source_passes_the_kit():
    check_component(WavFolderSource)


def test_reads_the_sample_set(tmp_path):
    ds = WavFolderSource({"path": str(write_sample(tmp_path / "clips"))}).load(StepContext.from_seed(0))
    assert ds.modality == "audio" and ds.shape == (1, RATE // 4)
    assert ds.classes == ("chirp", "chord", "tone") and ds.class_counts() == [COUNTS[2], COUNTS[1], COUNTS[0]]
    assert float(ds.x.abs().max()) <= 1.0


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_pcm_widths_read_back(tmp_path, width):
    clip = (0.5 * np.sin(np.linspace(0, 20, 300))).astype(np.float32)
    path = tmp_path / "a.wav"
    scale = 2 ** (8 * width - 1)
    ints = np.round(clip * (scale - 1)).astype(np.int64)
    if width == 1:
        raw = (ints + 128).astype(np.uint8).tobytes()
    elif width == 3:
        raw = b"".join(int(v).to_bytes(3, "little", signed=True) for v in ints)
    else:
        raw = ints.astype({2: "<i2", 4: "<i4"}[width]).tobytes()
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(width)
        handle.setframerate(8000)
        handle.writeframes(raw)
    data, rate = read_wav(path, "wave")
    assert rate == 8000 and data.shape == (1, 300)
    assert np.allclose(data[0], clip, atol=2.0 / scale + 1e-7)


def test_length_mono_and_bad_files(tmp_path):
    root = tmp_path / "clips"
    write_wav(root / "a" / "short.wav", np.full(100, 0.5, np.float32))
    write_wav(root / "a" / "stereo.wav", np.stack([np.full(300, 0.2), np.full(300, 0.6)]).astype(np.float32))
    write_wav(root / "b" / "fast.wav", np.zeros(200, np.float32), rate=16000)
    (root / "b" / "broken.wav").write_bytes(b"RIFF....not a wav")
    with pytest.raises(DataError, match="b/broken.wav"):
        WavFolderSource({"path": str(root), "backend": "wave"}).load(StepContext.from_seed(0))
    source = WavFolderSource({"path": str(root), "length": 250, "backend": "wave"})
    ds = source.load(StepContext.from_seed(0), on_invalid="drop")
    assert len(ds) == 2 and ds.shape == (1, 250) and sum(source.dropped.values()) == 2
    assert np.allclose(ds.x[0, 0, :100].numpy(), 0.5, atol=1e-4) and float(ds.x[0, 0, 100:].abs().max()) == 0
    assert np.allclose(ds.x[1, 0].numpy(), 0.4, atol=1e-4)  # stereo averaged, cut to 250


def test_setforge_lists_the_components_with_distribution_and_version():
    registry = Registry(use_env=False).load()
    names = {(i.kind, i.name): (i.distribution, i.version) for i in registry.components()}
    assert names[("source", "wav-folder")] == ("setforge-audio", "0.1.0")
    for name in ("gain", "time-shift", "noise-snr", "time-mask", "frequency-mask", "speed"):
        assert names[("augment", name)] == ("setforge-audio", "0.1.0")


def test_the_example_run_file_runs(tmp_path):
    shutil.copy(EXAMPLE, tmp_path / "audio.yaml")
    subprocess.run([sys.executable, "-m", "setforge_audio.data", str(tmp_path)], check=True, capture_output=True)
    result = subprocess.run([sys.executable, "-m", "setforge", "run", "audio.yaml"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "runs" / "audio" / "report.json").read_text())
    assert "raw/accuracy" in report["metrics"]["measures"]["utility"]
    assert "noise-snr" in json.dumps(report)


def test_hidden_files_folders_named_wav_and_broken_links_do_not_stop_a_run(tmp_path):
    # (found by an audit: macOS's ._x.wav stopped the run, a folder named x.wav and a broken link
    # raised raw OS errors, and dropped rows were counted per file name instead of per reason)
    root = tmp_path / "clips"
    for name in ("one.wav", "two.wav"):
        write_wav(root / "a" / name, np.zeros(100, np.float32))
        write_wav(root / "b" / name, np.zeros(100, np.float32))
    (root / "a" / "._one.wav").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (root / "a" / "dir.wav").mkdir()
    (root / "b" / "gone.wav").symlink_to(tmp_path / "nowhere.wav")
    for folder in ("a", "b"):
        (root / folder / "bad1.wav").write_bytes(b"RIFF")
    source = WavFolderSource({"path": str(root), "backend": "wave"})
    ds = source.load(StepContext.from_seed(0), on_invalid="drop")
    assert len(ds) == 4
    assert source.dropped == {"cannot read the file (No such file or directory)": 1,
                              "not a WAV file setforge-audio reads (no RIFF/WAVE header): it reads integer PCM "
                              "(8/16/24/32-bit) and float (32/64-bit) WAV; pip install soundfile for compressed WAV, "
                              "FLAC or OGG": 2}


def test_a_flac_without_soundfile_is_bad_data_that_drop_counts(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name))
                        if name == "soundfile" else real_import(name, *a, **k))
    root = tmp_path / "clips"
    write_wav(root / "a" / "one.wav", np.zeros(100, np.float32))
    write_wav(root / "b" / "two.wav", np.zeros(100, np.float32))
    (root / "b" / "three.flac").write_bytes(b"fLaC")
    source = WavFolderSource({"path": str(root), "extensions": [".wav", ".flac"]})
    assert len(source.load(StepContext.from_seed(0), on_invalid="drop")) == 2
    assert list(source.dropped) == [".flac files need the soundfile package: pip install soundfile "
                                    "(setforge-audio itself reads PCM and float .wav only)"]


def _riff(tag: int, channels: int, rate: int, width: int, samples: bytes, extensible_tag: int | None = None,
          valid_bits: int | None = None) -> bytes:
    """A WAV file's bytes, written by hand: plain `tag`, or WAVE_FORMAT_EXTENSIBLE (0xFFFE) with a
    sub-format GUID that begins with `extensible_tag`."""
    import struct

    frame = channels * width
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * frame, frame, 8 * width)
    if extensible_tag is not None:
        guid = struct.pack("<H", extensible_tag) + bytes.fromhex("000000001000800000aa00389b71")
        fmt += struct.pack("<HHI", 22, valid_bits or 8 * width, (1 << channels) - 1) + guid
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"LIST" + struct.pack("<I", 3) + b"abc\x00"  # an odd-sized chunk before the data, padded
    body += b"data" + struct.pack("<I", len(samples)) + samples
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_float_and_extensible_wav_read_without_soundfile(tmp_path):
    # (the standard library's wave refused both: "unknown format: 3" / "65534")
    left = (0.5 * np.sin(np.linspace(0, 20, 300))).astype(np.float32)
    right = -left
    stereo = np.stack([left, right], 1)  # frames of (left, right)
    cases = {
        "float32.wav": _riff(3, 2, 8000, 4, stereo.astype("<f4").tobytes()),
        "float64-extensible.wav": _riff(0xFFFE, 2, 8000, 8, stereo.astype("<f8").tobytes(), extensible_tag=3),
        "pcm24-extensible.wav": _riff(0xFFFE, 2, 8000, 3, b"".join(
            int(v).to_bytes(3, "little", signed=True) for v in np.round(stereo.ravel() * (2**23 - 1)).astype(np.int64)),
            extensible_tag=1),
        "pcm24-in-32-extensible.wav": _riff(0xFFFE, 2, 8000, 4, (np.round(stereo.ravel() * (2**23 - 1)).astype(
            np.int64) << 8).astype("<i4").tobytes(), extensible_tag=1, valid_bits=24),
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        values, rate = read_wav(tmp_path / name, "wave")
        assert rate == 8000 and values.shape == (2, 300), name
        assert np.allclose(values, stereo.T, atol=2.0 / 2**23 + 1e-7), name
    # a last frame cut off in the middle is left out; compressed audio is named, not misread
    (tmp_path / "cut.wav").write_bytes(_riff(3, 2, 8000, 4, stereo.astype("<f4").tobytes()[:-3]))
    assert read_wav(tmp_path / "cut.wav", "wave")[0].shape == (2, 299)
    (tmp_path / "adpcm.wav").write_bytes(_riff(2, 1, 8000, 1, bytes(100)))
    with pytest.raises(DataError, match=r"format tag 0x0002 \(compressed audio\).*pip install soundfile"):
        read_wav(tmp_path / "adpcm.wav", "wave")


def test_numeric_class_folders_are_numbered_by_value_as_image_folder_numbers_them(tmp_path):
    # ("10" came before "2": class ids differed from image-folder's for the same folder names)
    for name in ("2", "10", "1"):
        write_wav(tmp_path / "clips" / name / "a.wav", np.zeros(50, np.float32))
    ds = WavFolderSource({"path": str(tmp_path / "clips")}).load(StepContext.from_seed(0))
    assert ds.classes == ("1", "2", "10")


def test_a_clip_with_other_channels_is_an_invalid_row_named_by_its_file(tmp_path):
    # (with mono: false one stereo clip stopped the run: "clips have different channel counts",
    # naming no file, and on_invalid: drop could not drop it)
    root = tmp_path / "clips"
    write_wav(root / "a" / "one.wav", np.zeros(100, np.float32))
    write_wav(root / "b" / "two.wav", np.zeros(100, np.float32))
    write_wav(root / "b" / "stereo.wav", np.zeros((2, 100), np.float32))
    with pytest.raises(DataError, match=r"b/stereo.wav: 2 channels, the others have 1 \(mono: true mixes"):
        WavFolderSource({"path": str(root), "mono": False}).load(StepContext.from_seed(0))
    source = WavFolderSource({"path": str(root), "mono": False})
    ds = source.load(StepContext.from_seed(0), on_invalid="drop")
    assert len(ds) == 2 and ds.shape == (1, 100) and sum(source.dropped.values()) == 1
