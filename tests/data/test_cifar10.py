"""CIFAR-10 from its published python pickle batches: layout, pixels, protocol counts at full size, errors, a run.

The fixtures write the batches as the archive holds them: Python 2 pickles whose keys are Python 2 `str` (so
`encoding="bytes"` gives b"data", torchvision's `encoding="latin1"` gives "data"), `data` uint8 [N, 3072] (the red,
green and blue planes of each 32×32 image, row-major), `labels` a list of ints. torchvision checks every file against
the published MD5, so each fixture patches torchvision's table with its own files' checksums.
"""

import json
import pickle
import shutil

import numpy as np
import pytest
import torch
import torchvision

from adrun.data.cifar10 import CIFAR10
from adrun.errors import UserError
from tests.conftest import run_on_fixture
from tests.fixtures.cifar10 import FOLDER, write_cifar


def small(n_train=100, n_test=30, seed=0):
    """Random images, labels cycling through the classes (10 % per class)."""
    rng = np.random.default_rng(seed)
    train = rng.integers(0, 256, (n_train, 3072), dtype=np.uint8)
    test = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    return train, np.arange(n_train) % 10, test, np.arange(n_test) % 10


@pytest.fixture
def cifar(tmp_path, monkeypatch):
    train, train_labels, test, test_labels = small()
    root = write_cifar(tmp_path / "cifar10", train, train_labels, test, test_labels, monkeypatch)
    return root, train, test


def module(root, tmp_path, **kwargs):
    args = {"image_size": 32, "channels": 3, "normal_class": 3, "cache_dir": str(tmp_path / "cache")} | kwargs
    return CIFAR10(root=str(root), **args)


def test_the_fixture_is_the_published_format(cifar):
    root, _, _ = cifar
    with open(root / FOLDER / "data_batch_1", "rb") as f:
        entry = pickle.load(f, encoding="bytes")  # the snippet on the CIFAR page
    assert set(entry) == {b"batch_label", b"labels", b"data", b"filenames"}
    assert entry[b"data"].dtype == np.uint8 and entry[b"data"].shape == (20, 3072)
    with open(root / FOLDER / "batches.meta", "rb") as f:
        assert pickle.load(f, encoding="latin1")["label_names"][0] == "airplane"


def test_reads_every_image_with_its_label_and_pixels(cifar, tmp_path):
    root, train, test = cifar
    data = module(root, tmp_path)
    split = data.load_split(train=True)
    assert split.images.shape == (100, 3, 32, 32) and split.images.dtype == torch.uint8
    assert split.targets.tolist() == (np.arange(100) % 10).tolist() and split.masks is None
    # the red, green and blue planes of each row, as published
    assert torch.equal(split.images, torch.from_numpy(train).view(100, 3, 32, 32))
    assert split.ids[7] == "train/7"
    test_split = data.load_split(train=False)
    assert torch.equal(test_split.images, torch.from_numpy(test).view(30, 3, 32, 32))

    data.setup()
    assert len(data.train_set) + len(data.val_set) == 10  # class 3: every tenth training image
    ids = [int(i.split("/")[1]) for i in data.train_set.ids + data.val_set.ids]
    assert all(i % 10 == 3 for i in ids)
    first = int(data.train_set.ids[0].split("/")[1])
    assert torch.equal(data.train_set.images[0], torch.from_numpy(train[first]).view(3, 32, 32))
    assert len(data.test_set) == 30 and data.test_set.labels.sum() == 27


def test_a_second_run_reads_the_cache_not_the_pickles(cifar, tmp_path, monkeypatch):
    root, _, _ = cifar
    first = module(root, tmp_path, image_size=16)
    first.setup()
    monkeypatch.setattr(CIFAR10, "load_split", lambda self, train: pytest.fail("decoded again"))
    again = module(root, tmp_path, image_size=16)
    again.setup()
    assert torch.equal(first.test_set.images, again.test_set.images) and again.test_set.images.shape[-1] == 16


def test_grey_and_resized(cifar, tmp_path):
    root, _, _ = cifar
    data = module(root, tmp_path, image_size=16, channels=1)
    data.setup()
    assert data.test_set.images.shape == (30, 1, 16, 16) and data.train_set.images.shape[1:] == (1, 16, 16)


def test_root_may_be_the_batches_folder_itself(cifar, tmp_path):
    root, _, _ = cifar
    data = module(root / FOLDER, tmp_path)
    assert len(data.load_split(train=False).targets) == 30


def test_full_size_protocol_counts(tmp_path, monkeypatch):
    """A stand-in at CIFAR-10's size (50,000 + 10,000 images, 5,000 + 1,000 per class): the protocols' exact counts."""
    images = torch.randint(0, 256, (60_000, 3072), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    images = images.numpy()
    labels = np.arange(60_000) % 10
    root = write_cifar(
        tmp_path / "cifar10", images[:50_000], labels[:50_000], images[50_000:], labels[50_000:], monkeypatch
    )

    data = module(root, tmp_path, normal_class=0)
    data.setup()
    assert len(data.train_set) + len(data.val_set) == 5_000 and len(data.val_set) == 500
    assert len(data.test_set) == 10_000 and (data.test_set.labels == 0).sum() == 1_000
    del data

    data = module(root, tmp_path, abnormal_class=0)
    data.setup()
    assert len(data.train_set) + len(data.val_set) == 43_200  # 80 % of the 54,000 normals of both splits
    assert (data.test_set.labels == 0).sum() == 10_800 and (data.test_set.labels == 1).sum() == 6_000
    assert not set(data.train_set.ids) & set(data.test_set.ids)


def test_a_missing_root_names_the_first_missing_file_and_the_page(tmp_path):
    with pytest.raises(UserError) as error:
        CIFAR10(root=str(tmp_path / "nowhere"), image_size=32, channels=3)
    message = str(error.value)
    assert "\n" not in message
    assert f"{tmp_path}/nowhere/{FOLDER}/data_batch_1 is missing" in message
    assert "https://www.cs.toronto.edu/~kriz/cifar.html" in message and "download" in message


def test_a_missing_batch_is_named(cifar, tmp_path):
    root, _, _ = cifar
    (root / FOLDER / "test_batch").unlink()
    with pytest.raises(UserError, match=f"{FOLDER}/test_batch is missing"):
        module(root, tmp_path)


def test_a_corrupt_batch_is_named(cifar, tmp_path):
    root, _, _ = cifar
    path = root / FOLDER / "data_batch_3"
    path.write_bytes(path.read_bytes()[:-100])  # truncated
    data = module(root, tmp_path)
    with pytest.raises(UserError) as error:
        data.setup()
    assert str(path) in str(error.value) and "MD5" in str(error.value) and "\n" not in str(error.value)


def test_download_goes_through_torchvision(tmp_path, monkeypatch):
    """download=true: torchvision's download is used (faked here: no network), and setup works before prepare_data,
    as adrun.cli.run calls it."""
    staged = write_cifar(tmp_path / "staged", *small(), monkeypatch)
    calls = []

    def fake_download(url, download_root, filename=None, md5=None, **kwargs):
        calls.append(url)
        shutil.copytree(staged / FOLDER, f"{download_root}/{FOLDER}")

    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", fake_download)
    data = module(tmp_path / "fresh", tmp_path, download=True)
    data.setup()
    data.prepare_data()
    assert calls == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]  # once: then the files are there
    assert len(data.test_set) == 30


def test_end_to_end(cifar, tmp_path):
    root, _, _ = cifar
    results = run_on_fixture(
        tmp_path,
        "data=cifar10",
        f"data.root={root}",
        "data.normal_class=1",
    )
    auroc = results["metrics"]["image_auroc"]
    assert isinstance(auroc, float) and 0 <= auroc <= 1
    assert results["counts"] == {"train": 9, "val": 1, "test": 30, "test_anomalous": 27}
    assert json.loads((tmp_path / "run" / "results.json").read_text())["data"] == "cifar10"
