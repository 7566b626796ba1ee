"""OCT2017 (Kermany et al. 2018) as published: <root>/{train,test}/{NORMAL,CNV,DME,DRUSEN}/*.jpeg, grey scans."""

import math

import numpy as np
import pytest
import torch

from adrun.data.oct import OCT
from tests.conftest import composed, one_line_error, run_on_fixture
from tests.fixtures.oct import CLASSES, TEST, TRAIN, grey, write_oct


def oct_module(root, tmp_path, **kwargs):
    return OCT(root=str(root), cache_dir=str(tmp_path / "cache"), **({"image_size": 16, "channels": 1} | kwargs))


def test_reads_both_splits_with_class_ids_from_the_folders(tmp_path):
    root = write_oct(tmp_path / "OCT2017")
    module = oct_module(root, tmp_path)
    for train, counts in ((True, TRAIN), (False, TEST)):
        split = module.load_split(train)
        assert split.images.shape == (sum(counts.values()), 1, 16, 16) and split.images.dtype == torch.uint8
        assert split.targets.dtype == torch.long and split.masks is None
        assert torch.bincount(split.targets).tolist() == [counts[name] for name in CLASSES]
        for image, target, path in zip(split.images, split.targets.tolist(), split.ids, strict=True):
            assert f"/{'train' if train else 'test'}/{CLASSES[target]}/" in path and path.endswith(".jpeg")
            assert abs(image.float().mean().item() - grey(target)) < 3, "the image is its folder's"


def test_normal_is_class_zero_and_the_protocol_keeps_only_normals_for_training(tmp_path):
    module = oct_module(write_oct(tmp_path / "oct"), tmp_path, val_fraction=0.2)
    module.setup()
    assert module.classes[0] == "NORMAL" and not module.has_masks
    assert (len(module.train_set), len(module.val_set)) == (8, 2)
    assert all("/train/NORMAL/" in i for i in module.train_set.ids + module.val_set.ids)
    assert len(module.test_set) == 12 and module.test_set.labels.tolist() == [0] * 3 + [1] * 9
    batch = next(iter(module.test_dataloader()))
    assert batch["mask"].abs().sum() == 0 and batch["image"].shape[1:] == (1, 16, 16)


def test_three_channels_replicate_the_grey_scan(tmp_path):
    module = oct_module(write_oct(tmp_path / "oct"), tmp_path, channels=3)
    module.setup()
    images = module.test_set.images
    assert images.shape == (12, 3, 16, 16)
    assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 0], images[:, 2])


def test_a_decoded_split_is_cached_per_size(tmp_path, monkeypatch):
    root = write_oct(tmp_path / "oct")
    first = oct_module(root, tmp_path)
    first.setup()
    assert len(list((tmp_path / "cache").glob("OCT-*.pt"))) == 2  # train and test

    def no_decoding(self, train):
        raise AssertionError("the cached split should have been used")

    monkeypatch.setattr(OCT, "load_split", no_decoding)
    again = oct_module(root, tmp_path)
    again.setup()
    assert torch.equal(again.test_set.images, first.test_set.images) and again.test_set.ids == first.test_set.ids
    with pytest.raises(AssertionError, match="cached split"):  # another size is another cache entry
        oct_module(root, tmp_path, image_size=32).setup()


def test_a_missing_root_names_it_the_layout_and_the_source(tmp_path):
    message = one_line_error(lambda: oct_module(tmp_path / "nowhere", tmp_path))
    assert f"{tmp_path / 'nowhere'} is missing" in message
    assert "{train,test}/{NORMAL,CNV,DME,DRUSEN}" in message and "data.mendeley.com/datasets/rscbjbr9sj" in message


def test_a_missing_class_folder_is_named(tmp_path):
    root = write_oct(tmp_path / "oct")
    for path in (root / "test" / "DRUSEN").iterdir():
        path.unlink()
    (root / "test" / "DRUSEN").rmdir()
    message = one_line_error(lambda: oct_module(root, tmp_path))
    assert f"{root / 'test' / 'DRUSEN'} is missing" in message


def test_an_empty_class_folder_is_refused(tmp_path):
    root = write_oct(tmp_path / "oct")
    for path in (root / "train" / "DME").iterdir():
        path.unlink()
    (root / "train" / "DME" / "Thumbs.db").write_bytes(b"not an image")
    message = one_line_error(lambda: oct_module(root, tmp_path))
    assert f"{root / 'train' / 'DME'} holds no images" in message


def test_a_corrupt_scan_is_named(tmp_path):
    root = write_oct(tmp_path / "oct")
    bad = root / "test" / "CNV" / "CNV-1001-1.jpeg"
    bad.write_bytes(b"\xff\xd8 truncated")
    message = one_line_error(lambda: oct_module(root, tmp_path).setup())
    assert str(bad) in message


@pytest.mark.parametrize("protocol", [{"abnormal_class": 1}, {"known_anomaly_classes": [2]}])
def test_diseases_are_not_peer_classes(tmp_path, protocol):
    root = write_oct(tmp_path / "oct")
    message = one_line_error(lambda: oct_module(root, tmp_path, **protocol))
    assert "not peer categories" in message


def test_the_config_defaults_to_anogans_64_px_grey(tmp_path):
    cfg = composed("data=oct")
    assert (cfg.data.image_size, cfg.data.channels, cfg.data.normal_class) == (64, 1, 0)
    assert cfg.data.root.endswith("/oct")


def test_end_to_end_run(tmp_path):
    root = write_oct(tmp_path / "oct")
    results = run_on_fixture(
        tmp_path,
        "data=oct",
        f"data.root='{root}'",
        f"data.cache_dir='{tmp_path}/cache'",
    )
    auroc = results["metrics"]["image_auroc"]
    assert isinstance(auroc, float) and not math.isnan(auroc) and 0 <= auroc <= 1
    assert "pixel_auroc" not in results["metrics"]
    assert results["counts"] == {"train": 9, "val": 1, "test": 12, "test_anomalous": 9}
    scores = (tmp_path / "run" / "scores.csv").read_text()
    assert str(root / "test" / "DRUSEN" / "DRUSEN-1002-1.jpeg") in scores
    assert np.isfinite(results["timings"]["fit_s"])
