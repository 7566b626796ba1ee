"""UCSD Ped2: the published TIF/BMP tree → one sample per frame, labels from the masks, masks on the objects, errors."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import adrun.data.ped2 as ped2
from adrun.data.ped2 import Ped2
from adrun.errors import UserError
from tests.conftest import one_line, run_on_fixture
from tests.fixtures.ped2 import TEST, TRAIN, H, W, box, write_mask, write_ped2

LABELS = [0, 0, 1, 1, 0, 0, 1, 0, 0, 0, 1]  # per test frame, clip by clip, in frame order


def ped2_module(root: Path, tmp_path: Path, **kwargs) -> Ped2:
    kwargs = {"image_size": 12, "channels": 1, "cache_dir": str(tmp_path / "cache"), "val_fraction": 0.0} | kwargs
    module = Ped2(root=str(root), **kwargs)
    module.setup()
    return module


@pytest.fixture
def root(tmp_path):
    return write_ped2(tmp_path / "UCSD_Anomaly_Dataset.v1p2")


def test_every_frame_is_a_sample_labelled_by_its_mask(root, tmp_path):
    module = ped2_module(root, tmp_path, val_fraction=0.25)
    assert module.classes == ("normal", "anomalous") and module.has_masks
    assert (len(module.train_set), len(module.val_set)) == (12, 4)
    assert all("/UCSDped2/Train/Train00" in i for i in module.train_set.ids + module.val_set.ids)
    test = module.test_set
    assert [Path(i).relative_to(root / "UCSDped2" / "Test").as_posix() for i in test.ids] == [
        f"{clip}/{f:03d}.tif" for clip, (n, _) in TEST.items() for f in range(1, n + 1)
    ]
    assert test.labels.tolist() == LABELS
    assert module.split(train=False).targets.tolist() == LABELS
    assert test.images.shape == (11, 1, 12, 12) and test.images.dtype == torch.uint8
    assert test.masks.shape == (11, 1, 12, 12) and test.masks.dtype == torch.uint8
    assert torch.equal(test.masks.flatten(1).amax(1).long(), test.labels)


@pytest.mark.parametrize("size", [12, 24])
def test_each_mask_sits_on_its_object(root, tmp_path, size):
    test = ped2_module(root, tmp_path, image_size=size).test_set
    for k in test.labels.nonzero().flatten().tolist():
        top, left, h, w = box(int(Path(test.ids[k]).stem))
        expected = torch.zeros(size, size, dtype=torch.uint8)
        expected[top * size // H : (top + h) * size // H, left * size // W : (left + w) * size // W] = 1
        assert torch.equal(test.masks[k, 0], expected), test.ids[k]
        image = test.images[k, 0].float()
        assert image[expected.bool()].min() > 200 and image[~expected.bool()].max() < 150


def test_a_frame_is_anomalous_when_its_full_size_mask_is(root, tmp_path):
    """One marked pixel at (0, 0) falls between the nearest-neighbour samples at 12 px: the frame stays anomalous."""
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[0, 0] = 255
    Image.fromarray(mask, "L").save(root / "UCSDped2" / "Test" / "Test001_gt" / "001.bmp")
    test = ped2_module(root, tmp_path).test_set
    assert test.labels[0] == 1 and test.masks[0].sum() == 0


def test_channels_follow_the_config(root, tmp_path):
    grey = ped2_module(root, tmp_path).train_set.images
    rgb = ped2_module(root, tmp_path, channels=3).train_set.images
    assert grey.shape[1] == 1 and rgb.shape[1] == 3
    assert all(torch.equal(rgb[:, c], grey[:, 0]) for c in range(3))


def test_root_may_be_the_ucsdped2_folder_itself(root, tmp_path):
    assert ped2_module(root / "UCSDped2", tmp_path).test_set.labels.tolist() == LABELS


def test_decoded_splits_are_cached(root, tmp_path, monkeypatch):
    first = ped2_module(root, tmp_path)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(ped2, "decode_all", no_decoding)
    again = ped2_module(root, tmp_path)
    assert torch.equal(again.test_set.images, first.test_set.images) and again.test_set.ids == first.test_set.ids
    assert torch.equal(again.test_set.masks, first.test_set.masks)
    assert torch.equal(again.test_set.labels, first.test_set.labels)
    with pytest.raises(AssertionError, match="decoded again"):
        ped2_module(root, tmp_path, channels=3)  # another channel count is another cache entry


def test_a_missing_root_names_the_path_the_layout_and_the_publisher(tmp_path):
    with pytest.raises(UserError) as error:
        Ped2(root=str(tmp_path / "nowhere"), image_size=16, channels=1)
    message = one_line(error)
    assert f"{tmp_path / 'nowhere'} is missing" in message
    assert "TestNNN_gt" in message and "svcl.ucsd.edu" in message
    (tmp_path / "nowhere" / "UCSDped2" / "Train").mkdir(parents=True)
    with pytest.raises(UserError, match="UCSDped2/Test is missing"):
        Ped2(root=str(tmp_path / "nowhere"), image_size=16, channels=1)


def test_a_test_clip_without_its_masks_is_refused(root, tmp_path):
    gt = root / "UCSDped2" / "Test" / "Test002_gt"
    for path in gt.iterdir():
        path.unlink()
    gt.rmdir()
    with pytest.raises(UserError) as error:
        ped2_module(root, tmp_path)
    assert f"{gt} does not exist" in one_line(error)


def test_masks_without_matching_frames_are_refused(root, tmp_path):
    (root / "UCSDped2" / "Test" / "Test001" / "006.tif").unlink()
    with pytest.raises(UserError, match=r"masks without matching images.*Test001_gt/006.bmp"):
        ped2_module(root, tmp_path)


def test_a_mask_folder_without_its_clip_is_refused(root, tmp_path):
    (root / "UCSDped2" / "Test" / "Test003_gt").mkdir()
    write_mask(root / "UCSDped2" / "Test" / "Test003_gt" / "001.bmp")
    with pytest.raises(UserError, match=r"masks without matching images.*Test003_gt"):
        ped2_module(root, tmp_path)


def test_a_frame_without_its_mask_names_the_missing_mask(root, tmp_path):
    (root / "UCSDped2" / "Test" / "Test002_gt" / "004.bmp").unlink()
    with pytest.raises(UserError) as error:
        ped2_module(root, tmp_path)
    assert str(root / "UCSDped2" / "Test" / "Test002_gt" / "004.bmp") in one_line(error)


def test_masks_may_be_png(root, tmp_path):
    gt = root / "UCSDped2" / "Test" / "Test001_gt"
    for path in sorted(gt.iterdir()):
        Image.open(path).save(path.with_suffix(".png"))
        path.unlink()
    assert ped2_module(root, tmp_path).test_set.labels.tolist() == LABELS


def test_a_corrupt_frame_is_named(root, tmp_path):
    bad = root / "UCSDped2" / "Train" / "Train002" / "003.tif"
    bad.write_bytes(b"not a tif")
    with pytest.raises(UserError) as error:
        ped2_module(root, tmp_path)
    assert str(bad) in one_line(error)


def test_an_empty_clip_is_named(root, tmp_path):
    (root / "UCSDped2" / "Train" / "Train003").mkdir()
    with pytest.raises(UserError) as error:
        ped2_module(root, tmp_path)
    assert f"{root / 'UCSDped2' / 'Train' / 'Train003'} holds no .tif frame" in one_line(error)


@pytest.mark.parametrize(
    ("protocol", "match"),
    [
        ({"abnormal_class": 1}, "abnormal_class"),
        ({"known_anomaly_classes": [1]}, "known_anomaly_classes"),
        ({"normal_class": 1}, "normal_class must be 0"),
    ],
)
def test_protocols_that_need_peer_classes_are_refused(root, protocol, match):
    with pytest.raises(UserError, match=match):
        Ped2(root=str(root), image_size=16, channels=1, **protocol)


def test_a_whole_run_reports_frame_and_pixel_metrics(root, tmp_path):
    results = run_on_fixture(
        tmp_path,
        "data=ped2",
        f"data.root={root}",
    )
    assert results["data"] == "ped2" and results["counts"]["test"] == 11
    assert results["counts"]["test_anomalous"] == sum(LABELS)
    assert results["counts"]["train"] + results["counts"]["val"] == sum(TRAIN.values())
    for key in ("image_auroc", "pixel_auroc", "pixel_aupro"):
        assert 0 <= results["metrics"][key] <= 1, key
