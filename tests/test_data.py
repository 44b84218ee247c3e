import numpy as np
import pytest
import torch

import repsr.data as data_module
from repsr.data import HRFolder, PairedFolder, TrainPatches, modcrop, open_dataset
from repsr.errors import RepsrError
from repsr.images import read_image, write_image
from repsr.resize import imresize


def _image(rng, h, w, channels=3):
    shape = (h, w) if channels == 1 else (h, w, channels)
    return rng.integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture
def hr_dir(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "hr"
    folder.mkdir()
    write_image(folder / "a.png", _image(rng, 50, 61))
    write_image(folder / "b.bmp", _image(rng, 40, 40))
    write_image(folder / "gray.png", _image(rng, 33, 45, channels=1))
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_hr_folder_makes_matlab_lr_and_caches_it(hr_dir, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    ds = HRFolder(hr_dir, 4, cache)
    assert [p.name for p in ds.hr_files] == ["a.png", "b.bmp", "gray.png"]
    pair = ds[0]
    hr = modcrop(read_image(hr_dir / "a.png"), 4)
    assert pair.hr.shape == (48, 60, 3) and pair.lr.shape == (12, 15, 3)
    np.testing.assert_array_equal(pair.hr, hr)
    np.testing.assert_array_equal(pair.lr, imresize(hr, 0.25))
    assert ds[2].lr.ndim == 2  # gray stays gray
    assert len(list(cache.glob("*_x4_*.png"))) == 2 and ds[0] is pair  # memory cache too

    def fail(*_args):
        raise AssertionError("LR recomputed instead of read from the disk cache")

    monkeypatch.setattr(data_module, "bicubic_downscale", fail)
    np.testing.assert_array_equal(HRFolder(hr_dir, 4, cache)[0].lr, pair.lr)


def test_paired_folder_basicsr_and_div2k_layouts(tmp_path):
    rng = np.random.default_rng(1)
    layouts = ((tmp_path / "Set", "HR", "LR_bicubic"), (tmp_path, "DIV2K_valid_HR", "DIV2K_valid_LR_bicubic"))
    for root, hr_name, lr_name in layouts:
        (root / hr_name).mkdir(parents=True)
        (root / lr_name / "X2").mkdir(parents=True)
        for stem in ("0801", "0802"):
            hr = _image(rng, 20, 22)
            write_image(root / hr_name / f"{stem}.png", hr)
            write_image(root / lr_name / "X2" / f"{stem}x2.png", imresize(hr, 0.5))
    for path in (tmp_path / "Set", tmp_path / "DIV2K_valid_HR"):
        ds = open_dataset(path, 2)
        assert isinstance(ds, PairedFolder) and len(ds) == 2
        assert ds[1].lr.shape == (10, 11, 3) and ds[1].hr.shape == (20, 22, 3)
    (tmp_path / "Set" / "LR_bicubic" / "X2" / "0802x2.png").unlink()
    with pytest.raises(RepsrError, match="0802.png: no matching LR image"):
        open_dataset(tmp_path / "Set", 2)
    ds = PairedFolder(tmp_path / "DIV2K_valid_HR", tmp_path / "DIV2K_valid_LR_bicubic" / "X2", 4, filename_tmpl="{}x2")
    with pytest.raises(RepsrError, match="does not match HR"):
        ds[0]


def test_errors_name_the_file(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RepsrError, match="empty: no images"):
        open_dataset(empty, 2)
    with pytest.raises(RepsrError, match="no such folder"):
        open_dataset(tmp_path / "missing", 2)
    (empty / "fake.png").write_text("this is text")
    with pytest.raises(RepsrError, match="fake.png: not a readable image"):
        HRFolder(empty, 2)[0]
    (empty / "fake.png").write_bytes(b"")
    with pytest.raises(RepsrError, match="fake.png: empty file"):
        HRFolder(empty, 2)[0]


def test_train_patches_are_aligned_augmented_and_reproducible(hr_dir):
    ds = HRFolder(hr_dir, 2)
    patches = TrainPatches(ds, lr_patch=12, repeat=4, seed=3)
    assert len(patches) == 12
    item = patches[5]
    assert item["lr"].shape == (3, 12, 12) and item["hr"].shape == (3, 24, 24)
    assert item["lr"].min() >= 0 and item["hr"].max() <= 1
    assert torch.equal(patches[5]["hr"], item["hr"])  # same (seed, epoch, index), same patch
    assert torch.equal(patches[(0, 5)]["hr"], item["hr"])  # plain index = epoch 0
    assert not torch.equal(patches[(1, 5)]["hr"], item["hr"])
    for i in range(len(patches)):  # LR is the bicubic downscale of HR whatever the flips/rotations
        it = patches[(2, i)]
        down = imresize(it["hr"].double(), 0.5)
        assert (down - it["lr"].double())[:, 3:-3, 3:-3].abs().max() <= 0.5 / 255 + 1e-6
    y = TrainPatches(ds, lr_patch=8, color="y")[0]
    assert y["lr"].shape == (1, 8, 8) and y["hr"].min() >= 16 / 255 - 1e-6 and y["hr"].max() <= 235 / 255 + 1e-6


def test_train_patches_skip_images_smaller_than_the_patch(hr_dir):
    patches = TrainPatches(HRFolder(hr_dir, 2), lr_patch=20)  # LR sizes 25x30, 20x20, 16x22
    assert patches.num_images == 2 and [s.hr_files[i].name for s, i in patches.skipped] == ["gray.png"]
    with pytest.raises(RepsrError, match="every training image is smaller than the LR patch 40"):
        TrainPatches(HRFolder(hr_dir, 2), lr_patch=40)
