"""The one-class protocol: exactly the right classes and counts, stratified subsets, the batch contract."""

import math

import pytest
import torch
from sklearn.datasets import load_digits

from adrun.data.base import stratified_subset
from adrun.data.digits import Digits
from adrun.data.fashion_mnist import FashionMNIST
from adrun.data.images import to_channels
from adrun.data.mnist import FILES, MNIST
from adrun.data.synthetic import Synthetic
from adrun.errors import UserError
from tests.conftest import one_line_error
from tests.fixtures.idx import write_mnist


def digits(**kwargs):
    module = Digits(**({"image_size": 16, "channels": 1} | kwargs))
    module.setup()
    return module


def test_one_vs_rest_split_has_exactly_the_normal_classes_and_counts():
    module = digits(normal_class=[3, 7], val_fraction=0.1)
    targets = torch.from_numpy(load_digits().target)
    assert len(module.val_set) == round(0.1 * (len(module.train_set) + len(module.val_set)))
    assert module.train_set.labels.eq(0).all() and module.val_set.labels.eq(0).all()
    train_ids = {int(i.split("/")[1]) for i in module.train_set.ids + module.val_set.ids}
    assert set(targets[list(train_ids)].tolist()) == {3, 7}
    test_ids = [int(i.split("/")[1]) for i in module.test_set.ids]
    assert not train_ids & set(test_ids), "no image is in both train and test"
    test_targets = targets[test_ids]
    assert len(test_ids) == math.ceil(0.3 * len(targets))  # the test split keeps every class
    in_train_split = torch.ones(len(targets), dtype=torch.bool)
    in_train_split[test_ids] = False
    n_train_normals = torch.isin(targets[in_train_split], torch.tensor([3, 7])).sum().item()
    assert len(train_ids) == len(module.train_set) + len(module.val_set) == n_train_normals
    assert set(test_targets.tolist()) == set(range(10))
    assert torch.equal(module.test_set.labels, (~torch.isin(test_targets, torch.tensor([3, 7]))).long())


def test_subsets_are_seeded_and_class_stratified():
    targets = torch.arange(10).repeat_interleave(100)
    picked = stratified_subset(targets, 250, torch.Generator().manual_seed(0))
    assert len(picked) == 250 and len(set(picked.tolist())) == 250
    assert torch.bincount(targets[picked]).tolist() == [25] * 10
    again = stratified_subset(targets, 250, torch.Generator().manual_seed(0))
    assert torch.equal(picked, again)
    uneven = torch.tensor([0] * 7 + [1] * 3)
    assert torch.bincount(uneven[stratified_subset(uneven, 5, torch.Generator())]).tolist() == [4, 1]


def test_train_and_test_subsets():
    module = digits(normal_class=0, train_subset=50, test_subset=100, val_fraction=0.2)
    assert (len(module.train_set), len(module.val_set), len(module.test_set)) == (40, 10, 100)
    assert module.test_set.labels.sum() == 90  # 10 test images per class, nine classes anomalous


def test_batch_contract_for_grey_and_rgb():
    for channels in (1, 3):
        module = Synthetic(image_size=24, channels=channels, n_train=20, n_test=10, batch_size=4)
        module.setup()
        batch = next(iter(module.test_dataloader()))
        assert batch["image"].shape == (4, channels, 24, 24) and batch["image"].dtype == torch.float32
        assert batch["image"].min() >= -1 and batch["image"].max() <= 1
        assert batch["label"].dtype == torch.long and batch["index"].tolist() == [0, 1, 2, 3]
        assert batch["mask"].shape == (4, 1, 24, 24)
    assert module.has_masks
    labels = module.test_set.labels
    masks = module.test_set.masks.flatten(1).amax(1)
    assert torch.equal(labels, masks.long()), "a synthetic image is anomalous exactly where it has a mask"


def test_images_are_decoded_once_and_held_as_uint8_tensors():
    module = digits(normal_class=1)
    assert module.train_set.images.dtype == torch.uint8 and module.train_set.images.shape[1:] == (1, 16, 16)


def test_channel_conversion():
    grey = torch.full((1, 1, 2, 2), 100, dtype=torch.uint8)
    assert to_channels(grey, 3).shape == (1, 3, 2, 2)
    rgb = torch.zeros(1, 3, 2, 2, dtype=torch.uint8)
    rgb[:, 0] = 255
    assert to_channels(rgb, 1).flatten().tolist() == [76] * 4  # 0.299 · 255


@pytest.mark.parametrize("bad", [10, -1, [0, 11]])
def test_normal_class_outside_the_dataset_is_refused(bad):
    with pytest.raises(UserError, match="normal_class"):
        Digits(image_size=16, channels=1, normal_class=bad)


@pytest.mark.parametrize("compress", [True, False])
def test_fashion_mnist_reads_the_published_idx_files(tmp_path, compress):
    write_mnist(tmp_path / "fmnist", compress=compress)
    module = FashionMNIST(
        root=str(tmp_path / "fmnist"), cache_dir=str(tmp_path / "cache"), image_size=32, channels=1, normal_class=4
    )
    module.setup()
    assert len(module.train_set) + len(module.val_set) == 6  # 60 training images, 6 of class 4
    assert len(module.test_set) == 30 and module.test_set.labels.sum() == 27
    assert module.train_set.images.shape[1:] == (1, 32, 32)


def test_mnist_reads_torchvisions_layout(tmp_path):
    write_mnist(tmp_path / "MNIST" / "raw", compress=False)
    module = MNIST(root=str(tmp_path), image_size=16, channels=3, normal_class=0)
    module.setup()
    assert module.test_set.images.shape == (30, 3, 16, 16)


def test_a_missing_root_names_the_files_and_where_to_get_them(tmp_path):
    with pytest.raises(UserError) as error:
        MNIST(root=str(tmp_path / "nowhere"), image_size=32, channels=1)
    message = str(error.value)
    assert "\n" not in message and FILES[0] in message and "yann.lecun.com" in message and "download" in message


@pytest.mark.parametrize("compress", [True, False])
def test_a_truncated_idx_file_is_named_and_poisons_no_cache(tmp_path, compress):
    write_mnist(tmp_path / "idx", compress=compress)
    name = "t10k-images-idx3-ubyte" + (".gz" if compress else "")
    path = tmp_path / "idx" / name
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])

    def make():
        return MNIST(root=str(tmp_path / "idx"), cache_dir=str(tmp_path / "cache"), image_size=16, channels=1)

    message = one_line_error(make)
    assert str(path) in message and "download it again" in message
    path.write_bytes(whole)  # fetched again: the same cache now serves the whole file
    module = make()
    module.setup()
    assert len(module.test_set) == 30


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_end_to_end_on_the_idx_fixture(tmp_path, name):
    from tests.conftest import run

    write_mnist(tmp_path / "idx", n_train=120, n_test=40)
    results = run(
        tmp_path / "run",
        f"data={name}",
        f"data.root={tmp_path / 'idx'}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "data.image_size=16",
        "method.epochs=1",
        "data.batch_size=4",
        "data.normal_class=2",
    )
    assert results["counts"] == {"train": 11, "val": 1, "test": 40, "test_anomalous": 36}
    assert 0 <= results["metrics"]["image_auroc"] <= 1 and (tmp_path / "run" / "results.json").is_file()


@pytest.mark.parametrize(
    ("drop_last", "batch_size", "batches", "last"),
    [
        (True, 8, 5, 8),  # 43 training normals: 5 full batches, the last 3 images dropped (the official codes)
        (False, 8, 6, 3),  # the last 3 kept
        (False, 6, 7, 6),  # 43 = 7·6 + 1: a last batch of one image is dropped either way (BatchNorm)
        (True, 64, 1, 43),  # fewer images than a batch: the only batch is kept, so an epoch always has one
    ],
)
def test_drop_last_cuts_the_training_batches_as_the_official_codes(drop_last, batch_size, batches, last):
    module = Synthetic(image_size=16, channels=1, batch_size=batch_size, drop_last=drop_last)
    module.setup()
    assert len(module.train_set) == 43
    loader = module.train_dataloader()
    sizes = [len(batch["image"]) for batch in loader]
    assert len(sizes) == len(loader) == module.batches_per_epoch() == batches
    assert sizes[-1] == last
    assert [len(b["image"]) for b in module.val_dataloader()] == [5]  # validation and test keep every image
