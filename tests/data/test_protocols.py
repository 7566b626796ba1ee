"""The papers' protocols as config keys: leave-one-out, known anomalies, test anomaly fraction, noise."""

import pytest
import torch
from sklearn.datasets import load_digits

from adrun.data.digits import Digits
from adrun.data.synthetic import Synthetic
from adrun.errors import UserError

COUNTS = torch.bincount(torch.from_numpy(load_digits().target))


def digits(**kwargs):
    module = Digits(**({"image_size": 16, "channels": 1, "val_fraction": 0.1} | kwargs))
    module.setup()
    return module


def test_leave_one_out_pools_the_normals_80_20_and_sends_every_abnormal_image_to_test():
    module = digits(abnormal_class=3, normal_class=5)  # normal_class is ignored under leave-one-out
    n_normal = int(COUNTS.sum() - COUNTS[3])
    assert len(module.train_set) + len(module.val_set) == round(0.8 * n_normal)
    test = module.test_set
    assert len(test) == n_normal - round(0.8 * n_normal) + COUNTS[3]
    assert int(test.labels.sum()) == COUNTS[3]
    ids = module.train_set.ids + module.val_set.ids
    assert not set(ids) & set(test.ids) and len(set(ids)) == len(ids)


def test_known_anomalies_join_training_with_label_one_and_leave_the_test_set():
    module = digits(normal_class=0, known_anomaly_classes=[7], known_anomaly_fraction=0.5)
    train = module.train_set
    known = train.labels == 1
    targets = torch.from_numpy(load_digits().target)
    train_7 = [int(i.split("/")[1]) for i, k in zip(train.ids, known.tolist(), strict=True) if k]
    assert known.sum() > 0 and set(targets[train_7].tolist()) == {7}
    test_targets = targets[[int(i.split("/")[1]) for i in module.test_set.ids]]
    assert 7 not in test_targets.tolist() and set(test_targets.tolist()) == set(range(10)) - {7}
    # a method that cannot use them: the same draws, the known anomalies left out of training only
    left_out = digits(normal_class=0, known_anomaly_classes=[7], known_anomaly_fraction=0.5, use_known_anomalies=False)
    assert left_out.left_out_known_anomalies == int(known.sum()) and left_out.train_set.labels.eq(0).all()
    assert left_out.train_set.ids == [i for i, k in zip(train.ids, known.tolist(), strict=True) if not k]
    assert torch.equal(left_out.test_set.images, module.test_set.images)
    noisy = {"normal_class": 0, "known_anomaly_classes": [7], "known_anomaly_fraction": 0.5, "noise_std": 0.1}
    kept, dropped = digits(**noisy), digits(**noisy, use_known_anomalies=False)
    assert torch.equal(kept.train_set.images[kept.train_set.labels == 0], dropped.train_set.images)
    assert torch.equal(kept.val_set.images, dropped.val_set.images), "the noise after them is drawn the same"


def test_test_anomaly_fraction():
    module = digits(normal_class=[0, 1, 2, 3, 4], test_anomaly_fraction=0.2)
    labels = module.test_set.labels
    assert labels.float().mean().item() == pytest.approx(0.2, abs=0.005)
    with pytest.raises(UserError, match="test_anomaly_fraction"):
        digits(normal_class=[0, 1, 2, 3, 4, 5, 6, 7, 8], test_anomaly_fraction=0.5)


def test_test_anomalies_per_class():
    full = digits(normal_class=3)
    module = digits(normal_class=3, test_anomalies_per_class=20)
    labels = module.test_set.labels
    assert int((labels == 0).sum()) == int((full.test_set.labels == 0).sum())  # every test normal kept
    split = module.split(train=False)
    target_of = dict(zip(split.ids, split.targets.tolist(), strict=True))
    anomalous = [target_of[i] for i, label in zip(module.test_set.ids, labels.tolist(), strict=True) if label]
    assert sorted(anomalous) == sorted(c for c in range(10) if c != 3 for _ in range(20))  # 20 of each other digit
    with pytest.raises(UserError, match="test_anomalies_per_class=500"):
        digits(normal_class=3, test_anomalies_per_class=500)
    with pytest.raises(UserError, match="cannot be combined"):
        digits(normal_class=3, test_anomalies_per_class=5, test_anomaly_fraction=0.2)


def test_noise_is_drawn_once_and_seeded():
    clean = digits(normal_class=0)
    noisy = digits(normal_class=0, noise_std=0.1)
    again = digits(normal_class=0, noise_std=0.1)
    assert torch.equal(noisy.test_set.images, again.test_set.images)
    difference = noisy.test_set.images.float() - clean.test_set.images.float()
    assert 15 < difference[(clean.test_set.images > 40) & (clean.test_set.images < 215)].std() < 35  # ≈ 0.1 · 255


def test_protocol_keys_a_dataset_cannot_honour_are_refused():
    with pytest.raises(UserError, match="abnormal_class"):
        Synthetic(image_size=16, channels=1, abnormal_class=1)  # a blob is a defect, not a peer category
    with pytest.raises(UserError, match="abnormal_class=11"):
        Digits(image_size=16, channels=1, abnormal_class=11)
    with pytest.raises(UserError, match="must not include a normal class"):
        Digits(image_size=16, channels=1, normal_class=2, known_anomaly_classes=[2])


def test_a_method_without_use_for_known_anomalies_trains_on_normals_and_says_so(tmp_path, capsys):
    from tests.conftest import run

    overrides = ("data.image_size=16", "method.epochs=1", "data.known_anomaly_classes=[7]", "data.normal_class=0")
    results = run(tmp_path / "run", *overrides)
    assert "known anomalies left out of training" in capsys.readouterr().out
    normals_only = digits(normal_class=0)
    assert results["counts"]["train"] == len(normals_only.train_set)


def test_a_budget_larger_than_the_data_is_used_whole_and_said(capsys):
    module = digits(normal_class=3, train_subset=5000, test_subset=100)
    have = len(module.train_set) + len(module.val_set)
    assert 0 < have < COUNTS[3]
    out = capsys.readouterr().out
    assert f"data.train_subset=5000, but there are only {have} training normals: all {have} used" in out
    assert "test_subset" not in out, "a budget the data can meet says nothing"
