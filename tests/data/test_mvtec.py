"""MVTec AD: the published PNG tree → classes, counts, labels, masks on the defects, channels, cache, errors."""

from pathlib import Path

import pytest
import torch

import adrun.data.mvtec as mvtec
from adrun.data.mvtec import CATEGORIES, MVTecAD
from adrun.errors import UserError
from tests.conftest import one_line, run_on_fixture
from tests.fixtures.mvtec import COLOUR, DEFECTS, N_GOOD_TEST, N_TRAIN, SIZE, square, write_mask, write_mvtec


def mvtec_module(root: Path, tmp_path: Path, **kwargs) -> MVTecAD:
    kwargs = {"image_size": SIZE, "channels": 3, "cache_dir": str(tmp_path / "cache"), "val_fraction": 0.0} | kwargs
    module = MVTecAD(root=str(root), **kwargs)
    module.setup()
    return module


@pytest.fixture
def root(tmp_path):
    return write_mvtec(tmp_path / "mvtec")


def test_reads_the_published_layout(root, tmp_path):
    module = mvtec_module(root, tmp_path, val_fraction=0.25)
    assert module.classes == ("good", "broken_large", "contamination")
    assert module.has_masks
    assert (len(module.train_set), len(module.val_set)) == (N_TRAIN - 3, 3)
    assert all("/bottle/train/good/" in i for i in module.train_set.ids + module.val_set.ids)
    test = module.test_set
    assert len(test) == N_GOOD_TEST + sum(DEFECTS.values())
    folders = [Path(i).parent.name for i in test.ids]
    assert folders == ["good"] * 4 + ["broken_large"] * 3 + ["contamination"] * 2
    assert all(Path(i).is_file() for i in test.ids), "ids are the files' paths"
    assert test.labels.tolist() == [0] * 4 + [1] * 5
    assert test.images.shape == (9, 3, SIZE, SIZE) and test.images.dtype == torch.uint8
    assert test.masks.shape == (9, 1, SIZE, SIZE) and test.masks.dtype == torch.uint8
    assert set(test.masks.unique().tolist()) == {0, 1}
    assert torch.equal(test.masks.flatten(1).amax(1).long(), test.labels), "good images have empty masks"
    split = module.split(train=False)
    assert split.targets.tolist() == [0] * 4 + [1] * 3 + [2] * 2, "the targets are the defect types' class ids"


@pytest.mark.parametrize("size", [SIZE, 20])
def test_each_mask_sits_on_its_defect(root, tmp_path, size):
    test = mvtec_module(root, tmp_path, image_size=size).test_set
    scale = SIZE // size
    for k in range(N_GOOD_TEST, len(test)):
        top, left, h, w = square(int(Path(test.ids[k]).stem))
        expected = torch.zeros(size, size, dtype=torch.uint8)
        expected[top // scale : (top + h) // scale, left // scale : (left + w) // scale] = 1
        assert torch.equal(test.masks[k, 0], expected), test.ids[k]
        brightness = test.images[k].float().mean(0)
        assert brightness[expected.bool()].min() > 200 and brightness[~expected.bool()].max() < 150


def test_grey_files_come_out_with_the_configured_channels(tmp_path):
    grey_root = write_mvtec(tmp_path / "grey", category="grid", grey=True)
    images = mvtec_module(grey_root, tmp_path, category="grid", channels=3).test_set.images
    assert images.shape[1] == 3
    assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 1], images[:, 2])
    rgb = mvtec_module(write_mvtec(tmp_path / "rgb"), tmp_path, channels=3).train_set.images
    background = rgb[:, :, 0, 0].float().mean(0)
    assert background.tolist() == pytest.approx([c * 0.5 + 4.5 for c in COLOUR], abs=3), "channels stay R, G, B"
    luma = mvtec_module(write_mvtec(tmp_path / "rgb1"), tmp_path, channels=1).train_set.images
    expected = sum(w * (c * 0.5 + 4.5) for w, c in zip((0.299, 0.587, 0.114), COLOUR, strict=True))
    assert luma.shape[1] == 1 and luma[:, 0, 0, 0].float().mean().item() == pytest.approx(expected, abs=3)


def test_decoded_splits_are_cached_per_category_and_size(root, tmp_path, monkeypatch):
    write_mvtec(root, category="cable")
    first = mvtec_module(root, tmp_path)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(mvtec, "decode_all", no_decoding)
    again = mvtec_module(root, tmp_path)
    assert torch.equal(again.test_set.images, first.test_set.images)
    assert torch.equal(again.test_set.masks, first.test_set.masks) and again.test_set.ids == first.test_set.ids
    with pytest.raises(AssertionError, match="decoded again"):
        mvtec_module(root, tmp_path, image_size=20)  # another size is another cache entry
    with pytest.raises(AssertionError, match="decoded again"):
        mvtec_module(root, tmp_path, category="cable")  # the category is part of the key


def test_a_missing_root_names_the_path_the_layout_and_the_publisher(tmp_path):
    with pytest.raises(UserError) as error:
        MVTecAD(root=str(tmp_path / "nowhere"), image_size=16, channels=3)
    message = one_line(error)
    assert f"{tmp_path / 'nowhere'} is missing" in message
    assert "train/good" in message and "ground_truth" in message and "mvtec.com" in message
    (tmp_path / "nowhere" / "bottle" / "train" / "good").mkdir(parents=True)
    with pytest.raises(UserError, match="bottle/test is missing"):
        MVTecAD(root=str(tmp_path / "nowhere"), image_size=16, channels=3)


def test_a_wrong_category_lists_the_fifteen(root):
    with pytest.raises(UserError) as error:
        MVTecAD(root=str(root), category="bottles", image_size=16, channels=3)
    message = one_line(error)
    assert "'bottles'" in message and all(c in message for c in CATEGORIES) and len(CATEGORIES) == 15


def test_an_empty_class_folder_is_named(root, tmp_path):
    (root / "bottle" / "test" / "crack").mkdir()
    with pytest.raises(UserError) as error:
        mvtec_module(root, tmp_path)
    assert f"{root / 'bottle' / 'test' / 'crack'} holds no image" in one_line(error)


def test_a_corrupt_image_is_named(root, tmp_path):
    bad = root / "bottle" / "test" / "contamination" / "001.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(UserError) as error:
        mvtec_module(root, tmp_path)
    assert str(bad) in one_line(error)


def test_a_defect_image_without_its_mask_names_the_missing_mask(root, tmp_path):
    (root / "bottle" / "ground_truth" / "broken_large" / "002_mask.png").unlink()
    with pytest.raises(UserError) as error:
        mvtec_module(root, tmp_path)
    assert f"{root / 'bottle' / 'ground_truth' / 'broken_large' / '002_mask.png'}" in one_line(error)


def test_masks_without_matching_images_are_refused(root, tmp_path):
    (root / "bottle" / "test" / "broken_large" / "001.png").unlink()
    with pytest.raises(UserError, match=r"masks without matching images.*001_mask.png"):
        mvtec_module(root, tmp_path)


def test_a_mask_folder_without_its_defect_folder_is_refused(root, tmp_path):
    (root / "bottle" / "ground_truth" / "crack").mkdir()
    write_mask(root / "bottle" / "ground_truth" / "crack" / "000_mask.png", square(0))
    with pytest.raises(UserError, match=r"masks without matching images.*crack"):
        mvtec_module(root, tmp_path)


@pytest.mark.parametrize(
    ("protocol", "match"),
    [
        ({"abnormal_class": 1}, "abnormal_class"),
        ({"known_anomaly_classes": [2]}, "known_anomaly_classes"),
        ({"normal_class": 1}, "normal_class must be 0"),
    ],
)
def test_protocols_that_need_peer_classes_are_refused(root, protocol, match):
    with pytest.raises(UserError, match=match):
        MVTecAD(root=str(root), image_size=16, channels=3, **protocol)


def test_a_whole_run_reports_image_and_pixel_metrics(root, tmp_path):
    results = run_on_fixture(
        tmp_path,
        "data=mvtec",
        f"data.root={root}",
    )
    assert results["data"] == "mvtec" and results["counts"]["test"] == 9 and results["counts"]["test_anomalous"] == 5
    for key in ("image_auroc", "pixel_auroc", "pixel_aupro"):
        assert 0 <= results["metrics"][key] <= 1, key
    rows = (tmp_path / "run" / "scores.csv").read_text().splitlines()
    assert len(rows) == 10 and str(root / "bottle" / "test" / "good" / "000.png") in rows[1]
