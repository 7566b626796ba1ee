"""Caltech-256 from its JPEG tree under OGNet's protocol: the draw, the split sizes, channels, the cache, errors, a run.

The fixture writes the published layout, `<root>/256_ObjectCategories/NNN.name/NNN_XXXX.jpg`, with a few categories of
greyscale and colour JPEGs at varying sizes (as the real files are), plus `257.clutter`.
"""

import json
from pathlib import Path

import pytest
import torch
import torchvision

import adrun.data.caltech256 as caltech
from adrun.data.caltech256 import Caltech256
from adrun.errors import UserError
from tests.conftest import one_line, run_on_fixture
from tests.fixtures.caltech256 import COUNTS, TREE, write_tree


@pytest.fixture
def root(tmp_path) -> Path:
    write_tree(tmp_path / "caltech256" / TREE)
    return tmp_path / "caltech256"


def module(root, tmp_path, **kwargs) -> Caltech256:
    args = {"image_size": 16, "channels": 3, "train_per_category": 4, "cache_dir": str(tmp_path / "cache")} | kwargs
    return Caltech256(root=str(root), **args)


def names(ids) -> list[str]:
    return [f"{Path(i).parent.name}/{Path(i).name}" for i in ids]


def test_classes_are_the_folder_names_in_order_clutter_last(root, tmp_path):
    assert module(root, tmp_path).classes == ("ak47", "american-flag", "backpack", "baseball-bat", "clutter")


def test_one_inlier_category_train_first_images_test_rest_and_as_many_clutter(root, tmp_path):
    data = module(root, tmp_path, n_inliers=1, outlier_fraction=0.5)
    (inlier,) = data.normal_classes
    assert inlier in (0, 1, 2)  # drawn among the categories with more than 4 images; never clutter or baseball-bat
    folder = list(COUNTS)[inlier]
    number, n = folder.split(".")[0], COUNTS[folder]

    train = data.load_split(train=True)
    assert names(train.ids) == [f"{folder}/{number}_{i:04d}.jpg" for i in range(1, 5)]  # the first four, in order
    assert train.targets.tolist() == [inlier] * 4 and train.images.shape == (4, 3, 16, 16)
    test = data.load_split(train=False)
    inliers = [f"{folder}/{number}_{i:04d}.jpg" for i in range(5, n + 1)]
    assert names(test.ids)[: n - 4] == inliers
    clutter = names(test.ids)[n - 4 :]
    assert len(clutter) == n - 4 and len(set(clutter)) == n - 4  # outliers are half the test set
    assert all(c.startswith("257.clutter/257_") for c in clutter)
    assert test.targets.tolist() == [inlier] * (n - 4) + [4] * (n - 4)

    data.setup()
    assert len(data.train_set) + len(data.val_set) == 4 and data.train_set.labels.eq(0).all()
    assert len(data.test_set) == 2 * (n - 4) and data.test_set.labels.sum() == n - 4
    assert torch.equal(data.test_set.labels, (test.targets == 4).long())
    assert not set(data.train_set.ids + data.val_set.ids) & set(data.test_set.ids)


def test_three_inliers_and_a_quarter_outliers(root, tmp_path):
    data = module(root, tmp_path, n_inliers=3, outlier_fraction=0.25)
    assert data.normal_classes == (0, 1, 2)
    data.setup()
    n_in = (8 - 4) + (5 - 4) + (9 - 4)
    assert len(data.train_set) + len(data.val_set) == 12
    assert len(data.test_set) == n_in + 3 and data.test_set.labels.sum() == 3  # round(0.25 · 10 / 0.75) = 3


def test_the_draw_is_seeded(root, tmp_path):
    def draw(seed):
        data = module(root, tmp_path, n_inliers=1, seed=seed)
        return data.normal_classes, names(data.load_split(train=False).ids)

    assert draw(0) == draw(0)
    draws = {draw(seed)[0] for seed in range(8)}
    assert len(draws) > 1 and draws <= {(0,), (1,), (2,)}
    # the clutter draw follows the seed too: two seeds that pick the same category pick different clutter
    by_category = {}
    for seed in range(8):
        inliers, ids = draw(seed)
        by_category.setdefault(inliers, set()).add(tuple(i for i in ids if i.startswith("257")))
    assert any(len(v) > 1 for v in by_category.values())


@pytest.mark.parametrize("channels", [1, 3])
def test_greyscale_and_colour_files_come_out_with_the_configured_channels(root, tmp_path, channels):
    data = module(root, tmp_path, n_inliers=3, channels=channels)
    split = data.load_split(train=True)
    assert split.images.shape == (12, channels, 16, 16) and split.images.dtype == torch.uint8
    grey = [k for k, i in enumerate(split.ids) if i.endswith("_0003.jpg")]
    colour = [k for k, i in enumerate(split.ids) if i.endswith("_0001.jpg")]
    if channels == 3:
        planes = split.images[grey]
        assert torch.equal(planes[:, 0], planes[:, 1]) and torch.equal(planes[:, 1], planes[:, 2])
        assert not torch.equal(split.images[colour][:, 0], split.images[colour][:, 1])


def test_the_decoded_split_is_cached(root, tmp_path, monkeypatch):
    first = module(root, tmp_path, n_inliers=3)
    first.setup()
    assert len(list((tmp_path / "cache").glob("Caltech256-*.pt"))) == 2  # train and test

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(caltech, "decode_all", no_decoding)
    again = module(root, tmp_path, n_inliers=3)
    again.setup()
    assert torch.equal(again.test_set.images, first.test_set.images) and again.test_set.ids == first.test_set.ids
    other = module(root, tmp_path, n_inliers=3, outlier_fraction=0.25)  # other files: not served from the cache
    with pytest.raises(AssertionError, match="decoded again"):
        other.setup()


def test_the_plain_tar_layout_and_the_download(tmp_path, monkeypatch):
    write_tree(tmp_path / "plain" / TREE)
    assert len(module(tmp_path / "plain", tmp_path).load_split(train=True).ids) == 4

    calls = []

    def fake_download(url, download_root, filename=None, md5=None, **kwargs):  # torchvision's, without the network
        calls.append(url)
        write_tree(Path(download_root) / TREE)

    monkeypatch.setattr(torchvision.datasets.caltech, "download_and_extract_archive", fake_download)
    data = module(tmp_path / "fresh", tmp_path, download=True)
    assert calls == ["https://data.caltech.edu/records/nyy15-4j048/files/256_ObjectCategories.tar"]
    assert data.classes[-1] == "clutter" and (tmp_path / "fresh" / "caltech256" / TREE / "257.clutter").is_dir()


def test_a_missing_root_names_the_layout_and_the_page(tmp_path):
    with pytest.raises(UserError) as error:
        module(tmp_path / "nowhere", tmp_path)
    message = one_line(error)
    assert f"{tmp_path}/nowhere/{TREE} is missing" in message and "NNN.name/NNN_XXXX.jpg" in message
    assert "https://data.caltech.edu/records/nyy15-4j048" in message and "download" in message


def test_an_empty_category_folder_is_named(root, tmp_path):
    (root / TREE / "005.baseball-glove").mkdir()
    with pytest.raises(UserError) as error:
        module(root, tmp_path)
    assert f"{root / TREE / '005.baseball-glove'} holds no images" in one_line(error)


def test_missing_clutter_is_named(root, tmp_path):
    for path in (root / TREE / "257.clutter").iterdir():
        path.unlink()
    (root / TREE / "257.clutter").rmdir()
    with pytest.raises(UserError) as error:
        module(root, tmp_path)
    assert f"{root / TREE / '257.clutter'} is missing" in one_line(error)


def test_too_few_clutter_images_for_the_outlier_fraction(root, tmp_path):
    with pytest.raises(UserError) as error:
        module(root, tmp_path, n_inliers=3, outlier_fraction=0.6)  # 10 inlier test images need 15 outliers
    message = one_line(error)
    assert "needs 15 outliers" in message and "holds 12" in message and "outlier_fraction" in message


def test_more_inliers_than_categories_with_test_images(root, tmp_path):
    with pytest.raises(UserError) as error:
        module(root, tmp_path, n_inliers=4)
    assert "has 3" in one_line(error) and "n_inliers" in str(error.value)


def test_protocols_that_do_not_apply_are_refused(root, tmp_path):
    with pytest.raises(UserError, match="abnormal_class"):
        module(root, tmp_path, abnormal_class=1)
    with pytest.raises(UserError, match="outlier_fraction"):
        module(root, tmp_path, outlier_fraction=1.0)


def test_a_corrupt_jpeg_is_named(root, tmp_path):
    bad = root / TREE / "003.backpack" / "003_0002.jpg"
    bad.write_bytes(b"not a jpeg")
    data = module(root, tmp_path, n_inliers=3)
    with pytest.raises(UserError) as error:
        data.setup()
    assert str(bad) in one_line(error)


def test_end_to_end(root, tmp_path):
    results = run_on_fixture(
        tmp_path,
        "data=caltech256",
        f"data.root={root}",
        "data.n_inliers=3",
        "data.train_per_category=4",
    )
    auroc = results["metrics"]["image_auroc"]
    assert isinstance(auroc, float) and 0 <= auroc <= 1
    assert results["counts"] == {"train": 11, "val": 1, "test": 20, "test_anomalous": 10}
    assert json.loads((tmp_path / "run" / "results.json").read_text())["data"] == "caltech256"
    scores = (tmp_path / "run" / "scores.csv").read_text()
    assert "257.clutter" in scores and "003.backpack" in scores  # every score traces back to its file
