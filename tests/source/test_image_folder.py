"""The image-folder source on folders the tests write: odd files, mixed modes and sizes, own split."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from setforge import ConfigError, DataError, Splits, StepContext
from setforge.plugins.source.image_folder import ImageFolderSource
from setforge.testing import check_component


def load(path, on_invalid="error", **params):
    source = ImageFolderSource({"path": path, **params})
    return source.load(StepContext.from_seed(0), on_invalid=on_invalid), source


def save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture
def odd_folder(tmp_path):
    """Two classes of 8x8 images in every mode, one 16x12 image, a corrupt PNG, a .txt and stray files."""
    root = tmp_path / "images"
    gray = np.full((8, 8), 100, np.uint8)
    save(root / "cat" / "01-gray.png", gray)
    save(root / "cat" / "02-rgb.png", np.dstack([np.full((8, 8), v, np.uint8) for v in (255, 0, 0)]))
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[:4, :, 3] = 255  # top half opaque, bottom half transparent
    save(root / "cat" / "03-rgba.png", rgba)
    save(root / "dog" / "big.png", np.full((16, 12, 3), 60, np.uint8))  # a different size
    save(root / "dog" / "nested" / "deep.jpg", np.full((8, 8, 3), 30, np.uint8))
    save(root / "dog" / "wide16.png", np.full((8, 8), 65535, np.uint16))
    noise = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    save(tmp_path / "noise.png", noise)
    cut = (tmp_path / "noise.png").read_bytes()
    (root / "dog" / "corrupt.png").write_bytes(cut[:len(cut) // 2])  # a valid header, pixels cut off
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / "dog" / ".DS_Store").write_bytes(b"\0\1")  # hidden: skipped
    (root / "README.md").write_text("files at the top are not rows")
    return root


def test_invalid_files_are_named_and_counted(odd_folder):
    with pytest.raises(DataError, match=r"image-folder images: dog/notes.txt \(.*\): unreadable or not an image"):
        load(odd_folder)
    ds, source = load(odd_folder, on_invalid="drop")
    assert source.dropped == {"unreadable or not an image": 2}
    assert ds.classes == ("cat", "dog") and ds.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert ds.shape == (3, 8, 8)  # the most common size


def test_modes_are_converted_to_rgb_and_transparency_composited_on_black(odd_folder):
    ds, _ = load(odd_folder, on_invalid="drop")
    gray, red, rgba, big, deep, wide16 = ds.x
    assert torch.all(gray == 100 / 255)  # grayscale repeated over the three channels
    assert torch.all(red[0] == 1.0) and torch.all(red[1:] == 0.0)
    assert torch.all(rgba[:, :4] == 200 / 255) and torch.all(rgba[:, 4:] == 0.0)
    assert torch.allclose(big, torch.full_like(big, 60 / 255))  # resized from 16x12
    assert torch.allclose(deep, torch.full_like(deep, 30 / 255), atol=2 / 255)  # JPEG in a sub-folder
    assert torch.all(wide16 == 1.0)  # 16-bit white


def test_one_channel_uses_luminance(odd_folder):
    ds, _ = load(odd_folder, on_invalid="drop", channels=1)
    assert ds.shape == (1, 8, 8)
    assert torch.allclose(ds.x[1], torch.full((1, 8, 8), 76 / 255))  # ITU-R 601: 0.299 * 255, rounded


def test_resizing_is_antialiased(tmp_path):
    board = (np.indices((32, 32)).sum(axis=0) % 2 * 255).astype(np.uint8)  # 1-pixel checkerboard
    save(tmp_path / "a" / "board.png", board)
    ds, _ = load(tmp_path, size=8, channels=1)
    assert ds.shape == (1, 8, 8)
    # Nearest-neighbour sampling would give pure black or white; a low-pass filter gives grey.
    assert float(ds.x.min()) > 0.35 and float(ds.x.max()) < 0.65
    ds, _ = load(tmp_path, size=[4, 6])
    assert ds.shape == (3, 4, 6)


def test_most_common_size_ties_go_to_the_larger(tmp_path):
    save(tmp_path / "a" / "small.png", np.zeros((4, 4), np.uint8))
    save(tmp_path / "b" / "large.png", np.zeros((6, 5), np.uint8))
    ds, _ = load(tmp_path)
    assert ds.shape == (3, 6, 5)


def test_train_val_test_folders_are_the_sources_own_split(tmp_path):
    pixel = np.zeros((4, 4), np.uint8)
    for split, cls, n in [("train", "ant", 3), ("train", "bee", 2), ("val", "ant", 1), ("test", "bee", 2),
                          ("test", "cow", 1)]:
        for i in range(n):
            save(tmp_path / split / cls / f"{i}.png", pixel + i)
    (tmp_path / "report.json").write_text("{}")
    (tmp_path / "figures").mkdir()  # other top folders beside train/ are ignored
    parts, _ = load(tmp_path)
    assert isinstance(parts, Splits)
    assert parts.train.classes == ("ant", "bee", "cow")
    assert parts.train.y.tolist() == [0, 0, 0, 1, 1]
    assert parts.val.y.tolist() == [0] and parts.test.y.tolist() == [1, 1, 2]


def test_split_folders_are_found_in_any_case(tmp_path):
    # (found by an audit: Train/ and Test/ were read as two classes, 'Test' and 'Train')
    pixel = np.zeros((4, 4), np.uint8)
    for split, cls, n in [("Train", "cat", 3), ("Train", "dog", 2), ("TEST", "dog", 2)]:
        for i in range(n):
            save(tmp_path / split / cls / f"{i}.png", pixel + i)
    parts, _ = load(tmp_path)
    assert isinstance(parts, Splits) and parts.train.classes == ("cat", "dog")
    assert parts.train.y.tolist() == [0, 0, 0, 1, 1] and parts.test.y.tolist() == [1, 1] and parts.val is None


def test_numeric_class_folders_sort_by_value(tmp_path):
    for name in ("10", "2", "1"):
        save(tmp_path / name / "x.png", np.zeros((2, 2), np.uint8))
    ds, _ = load(tmp_path)
    assert ds.classes == ("1", "2", "10")


def test_bad_layouts_are_explained(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "nowhere")
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(ConfigError, match="is a file"):
        load(tmp_path / "file.png")
    with pytest.raises(DataError, match="no class folders"):
        load(tmp_path)
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(DataError, match="hold no files"):
        load(tmp_path)
    (tmp_path / "empty_class" / "x.txt").write_text("x")
    with pytest.raises(DataError, match="no readable images"):
        load(tmp_path, on_invalid="drop")


def test_conforms():
    check_component(ImageFolderSource)


def test_an_unlabelled_folder_holds_rows_apart_not_a_class(tmp_path):
    for cls, value, n in [("ant", 10, 3), ("bee", 20, 2), ("unlabelled", 200, 4)]:
        for i in range(n):
            save(tmp_path / cls / f"{i}.png", np.full((4, 4), value, np.uint8))
    parts, _ = load(tmp_path, channels=1)
    assert isinstance(parts, Splits) and parts.val is None and parts.test is None
    assert parts.train.classes == ("ant", "bee") and parts.train.y.tolist() == [0, 0, 0, 1, 1]
    assert len(parts.unlabelled) == 4 and torch.allclose(parts.unlabelled.x, torch.tensor(200 / 255))
    assert (parts.train.x < 0.5).all()  # no unlabelled image among the labelled rows
    ds, _ = load(tmp_path, channels=1, unlabelled=None)  # null: an ordinary class
    assert ds.classes == ("ant", "bee", "unlabelled") and len(ds) == 9


def test_unlabelled_folders_beside_and_inside_the_split_folders(tmp_path):
    pixel = np.zeros((4, 4), np.uint8)
    for folder, n in [("train/ant", 2), ("train/bee", 2), ("test/ant", 1), ("test/bee", 1),
                      ("pool", 3), ("train/pool", 2)]:
        for i in range(n):
            save(tmp_path / folder / f"{i}.png", pixel + i)
    parts, _ = load(tmp_path, unlabelled="pool")
    assert parts.train.classes == ("ant", "bee") and len(parts.train) == 4 and len(parts.test) == 2
    assert len(parts.unlabelled) == 5


def test_unlabelled_folder_errors_are_explained(tmp_path):
    save(tmp_path / "unlabelled" / "0.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError, match="no class folders \\(besides the unlabelled folder 'unlabelled'\\)"):
        load(tmp_path)
    with pytest.raises(DataError, match="names 'train', a split folder"):
        load(tmp_path, unlabelled="train")
    save(tmp_path / "cat" / "0.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "unlabelled" / "0.png").write_text("not an image")
    ds, source = load(tmp_path, on_invalid="drop")  # the pool's one image unreadable: no pool, the rest loads
    assert not isinstance(ds, Splits) and len(ds) == 1 and source.dropped == {"unreadable or not an image": 1}


def test_symlinked_sub_folders_of_a_class_are_read_and_a_link_back_up_does_not_loop(tmp_path):
    # ("files in sub-folders of a class folder belong to it": Path.rglob skipped symlinked folders)
    import os

    root, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    generator = np.random.default_rng(0)
    for folder in (root / "cat", root / "dog", elsewhere):
        folder.mkdir(parents=True)
    for i in range(2):
        for folder in (root / "cat", root / "dog", elsewhere):
            Image.fromarray(generator.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    os.symlink(elsewhere, root / "dog" / "linked")
    os.symlink(root / "cat", root / "cat" / "again")  # a loop: the folder itself, once
    ds = ImageFolderSource({"path": str(root)}).load(StepContext.from_seed(0))
    assert ds.classes == ("cat", "dog") and ds.class_counts() == [2, 4]


@pytest.mark.parametrize(("maxval", "pixels"), [(65535, [100, 200, 250, 255]), (65535, [100, 200, 250, 40000]),
                                                (1023, [0, 512, 1023, 100])])
def test_a_16_bit_gray_image_is_scaled_by_its_depth_not_its_content(tmp_path, maxval, pixels):
    # (found by an audit: a dark 16-bit PGM, whose pixels stay at or below 255, came out 257x too bright)
    from setforge.plugins.source.image_folder import read_image

    path = tmp_path / "dark.pgm"
    path.write_bytes(f"P5 2 2 {maxval}\n".encode() + np.array(pixels, dtype=">u2").tobytes())
    expected = np.array(pixels, dtype=np.float64) / maxval
    assert np.allclose(read_image(path, 1, (2, 2)).ravel(), expected, atol=1 / 65535)


def test_a_broken_link_is_an_unreadable_file_named_not_left_out(tmp_path):
    # (found by an audit: a link whose target had moved was skipped without a word: 3 rows, nothing dropped)
    import os

    save(tmp_path / "a" / "0.png", np.zeros((4, 4), np.uint8))
    os.symlink(tmp_path / "moved.png", tmp_path / "a" / "1.png")
    with pytest.raises(DataError, match=r"a/1.png \(.*No such file.*\): unreadable or not an image"):
        load(tmp_path)
    ds, source = load(tmp_path, on_invalid="drop")
    assert len(ds) == 1 and source.dropped == {"unreadable or not an image": 1}


def test_a_16_bit_gray_png_with_a_transparent_level_is_composited_on_black(tmp_path):
    # (found by an audit: the tRNS grey level of a 16-bit PNG was ignored; 8-bit grey and RGB honour theirs)
    from setforge.plugins.source.image_folder import read_image

    pixels = np.array([[1000, 40000], [40000, 65535]], dtype=np.uint16)
    Image.fromarray(pixels).save(tmp_path / "keyed.png", transparency=40000)
    with Image.open(tmp_path / "keyed.png") as image:
        assert image.mode == "I;16" and image.info["transparency"] == 40000
    assert np.allclose(read_image(tmp_path / "keyed.png", 1, (2, 2))[0], [[1000 / 65535, 0.0], [0.0, 1.0]])


def test_float_and_32_bit_images_outside_their_range_are_invalid_rows_not_clipped(tmp_path):
    # (found by an audit: a float TIFF of 0..255 came out white, a 32-bit one above 65535 clipped, without a word)
    save(tmp_path / "a" / "unit.tif", np.array([[0.0, 0.25], [0.5, 1.0]], dtype=np.float32))
    save(tmp_path / "a" / "bytes.tif", np.array([[0.0, 64.5], [128.0, 255.0]], dtype=np.float32))
    save(tmp_path / "a" / "wide.tif", np.array([[0, 70000], [5, 9]], dtype=np.int32))
    with pytest.raises(DataError, match=r"a/bytes.tif \(mode F pixels span 0..255, outside 0..1; .*\): "
                                        r"pixel values out of range"):
        load(tmp_path, channels=1)
    ds, source = load(tmp_path, channels=1, on_invalid="drop")
    assert source.dropped == {"pixel values out of range": 2}
    assert ds.x.flatten().tolist() == [0.0, 0.25, 0.5, 1.0]  # a float image in [0, 1] is taken as it is


def test_a_folder_that_cannot_be_listed_stops_the_load_naming_it(tmp_path, monkeypatch):
    # (found by an audit: os.walk skips a folder it cannot list, so its images were left out without a word;
    # a refused listing is simulated, as the tests may run as root, whom permissions do not stop)
    import os

    for folder in ("cat", "dog", "dog/locked"):
        save(tmp_path / folder / "0.png", np.zeros((4, 4), np.uint8))
    real_scandir = os.scandir

    def scandir(path="."):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(DataError, match=r"cannot list the folder .*dog/locked \(Permission denied\)"):
        load(tmp_path)


def test_class_names_sort_by_value_only_when_each_is_a_plain_number():
    from setforge.dataset import sort_class_names as sort_names

    assert sort_names(["10", "2", "-1.5", "1e1x"]) == ["-1.5", "10", "1e1x", "2"]  # a word among them: as text
    assert sort_names(["10", "2", "-1.5", "3e0"]) == ["-1.5", "2", "3e0", "10"]
    # float() reads these as numbers; as class names they are words ("1_000" sorted as 1000, and
    # "nan" left the order to chance)
    assert sort_names(["2", "1_000", "30"]) == ["1_000", "2", "30"]
    assert sort_names(["nan", "2", "10"]) == ["10", "2", "nan"]
    assert sort_names(["inf", " 7", "3"]) == [" 7", "3", "inf"]
    assert sort_names(["１２", "3"]) == ["3", "１２"] and sort_names(["12", "3"]) == ["3", "12"]
