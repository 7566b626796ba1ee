"""Your own folders: normal train/test images, one folder per anomaly type, masks matched by file stem."""

import csv
import math

import pytest
import torch
from PIL import Image

from adrun.data.folder import Folder
from adrun.errors import UserError
from tests.conftest import one_line_error, run_on_fixture
from tests.fixtures.folder import ANOMALIES, SIZE, draw, write_folders


def folder(root, tmp_path, masks=True, **kwargs):
    return Folder(
        train_dir=str(root / "train" / "good"),
        test_normal_dir=str(root / "test" / "good"),
        test_anomaly_dirs=[str(root / "test" / name) for name in ANOMALIES],
        mask_dir=str(root / "ground_truth") if masks else None,
        cache_dir=str(tmp_path / "cache"),
        **({"image_size": SIZE, "channels": 3} | kwargs),
    )


def expected_mask(cells) -> torch.Tensor:
    mask = torch.zeros(1, SIZE, SIZE, dtype=torch.uint8)
    r0, r1, c0, c1 = cells
    mask[:, r0:r1, c0:c1] = 1
    return mask


def test_classes_counts_and_labels(tmp_path):
    module = folder(write_folders(tmp_path / "parts"), tmp_path, val_fraction=0.25)
    assert module.classes == ("normal", "scratch", "dent") and module.has_masks
    test = module.load_split(train=False)
    assert test.targets.tolist() == [0] * 4 + [1] * 3 + [2] * 2
    assert [p.rsplit("/", 2)[1] for p in test.ids] == ["good"] * 4 + ["scratch"] * 3 + ["dent"] * 2
    module.setup()
    assert (len(module.train_set), len(module.val_set)) == (9, 3)
    assert all("/train/good/" in i for i in module.train_set.ids + module.val_set.ids)
    assert module.test_set.labels.tolist() == [0] * 4 + [1] * 5


def test_masks_are_aligned_with_their_images(tmp_path):
    module = folder(write_folders(tmp_path / "parts"), tmp_path, channels=1)
    test = module.load_split(train=False)
    assert test.masks.shape == (9, 1, SIZE, SIZE) and test.masks.dtype == torch.uint8
    assert test.masks[:4].sum() == 0, "normal images get empty masks"
    cells = [cells for files in ANOMALIES.values() for cells in files.values()]
    for image, mask, cell in zip(test.images[4:], test.masks[4:], cells, strict=True):
        assert torch.equal(mask, expected_mask(cell))
        inside, outside = image[mask.bool()], image[~mask.bool()]
        assert inside.min() > 128 and outside.max() < 128, "the bright square is where the mask is"


def test_channels_are_converted_whatever_the_files_hold(tmp_path):
    root = write_folders(tmp_path / "parts")
    rgb = folder(root, tmp_path, channels=3).load_split(train=True)
    assert rgb.images.shape == (12, 3, SIZE, SIZE)
    assert torch.equal(rgb.images[1, 0], rgb.images[1, 1]), "a grey file is replicated to three channels"
    assert not torch.equal(rgb.images[0, 0], rgb.images[0, 1]), "an RGB file keeps its colour"
    grey = folder(root, tmp_path, channels=1).load_split(train=True)
    assert grey.images.shape == (12, 1, SIZE, SIZE) and grey.masks is None


def test_masks_in_per_class_folders_allow_shared_file_names(tmp_path):
    root = write_folders(tmp_path / "parts", masks="per_class")
    (root / "test" / "dent" / "d0.jpg").rename(root / "test" / "dent" / "s0.jpg")  # same stem as scratch/s0.png
    (root / "ground_truth" / "dent" / "d0_mask.png").rename(root / "ground_truth" / "dent" / "s0_mask.png")
    test = folder(root, tmp_path).load_split(train=False)
    assert test.ids[7].endswith("dent/d1.png") and test.ids[8].endswith("dent/s0.jpg")
    assert torch.equal(test.masks[8], expected_mask(ANOMALIES["dent"]["d0.jpg"]))
    assert torch.equal(test.masks[4], expected_mask(ANOMALIES["scratch"]["s0.png"]))


def test_without_mask_dir_there_are_no_masks(tmp_path):
    module = folder(write_folders(tmp_path / "parts", masks=None), tmp_path, masks=False)
    assert not module.has_masks
    module.setup()
    assert module.test_set.masks is None and len(module.test_set) == 9


def test_a_single_anomaly_folder_may_be_given_as_a_string(tmp_path):
    root = write_folders(tmp_path / "parts")
    module = Folder(
        train_dir=str(root / "train" / "good"),
        test_normal_dir=str(root / "test" / "good"),
        test_anomaly_dirs=str(root / "test" / "dent"),
        image_size=SIZE,
        channels=3,
        cache_dir=str(tmp_path / "cache"),
    )
    assert module.classes == ("normal", "dent")
    assert module.load_split(train=False).targets.tolist() == [0] * 4 + [1] * 2


def test_changing_a_test_folder_rebuilds_the_cache(tmp_path):
    root = write_folders(tmp_path / "parts")
    folder(root, tmp_path).setup()
    draw(root / "test" / "dent" / "d2.png", 0, (1, 3, 1, 3), mask_path=root / "ground_truth" / "d2.png")
    module = folder(root, tmp_path)
    module.setup()
    assert len(module.test_set) == 10 and module.test_set.ids[-1].endswith("dent/d2.png")
    assert torch.equal(module.test_set.masks[-1], expected_mask((1, 3, 1, 3)))


def test_a_missing_folder_is_named(tmp_path):
    root = write_folders(tmp_path / "parts")
    message = one_line_error(
        lambda: Folder(
            train_dir=str(root / "train" / "good"),
            test_normal_dir=str(root / "test" / "ok"),
            test_anomaly_dirs=[str(root / "test" / "dent")],
            image_size=SIZE,
            channels=3,
        )
    )
    assert f"data.test_normal_dir {root / 'test' / 'ok'} is missing" in message and "data.train_dir" in message


def test_unset_folders_are_named(tmp_path):
    message = one_line_error(lambda: Folder(train_dir=str(tmp_path), image_size=SIZE, channels=3))
    assert message.startswith("data.test_normal_dir, data.test_anomaly_dirs not set")


def test_an_empty_anomaly_folder_is_refused(tmp_path):
    root = write_folders(tmp_path / "parts", masks=None)
    for path in (root / "test" / "dent").iterdir():
        path.unlink()
    message = one_line_error(lambda: folder(root, tmp_path, masks=False))
    assert f"{root / 'test' / 'dent'} holds no images" in message


def test_a_folder_of_folders_is_pointed_one_level_down(tmp_path):
    root = write_folders(tmp_path / "parts")
    message = one_line_error(
        lambda: Folder(
            train_dir=str(root / "train"),
            test_normal_dir=str(root / "test" / "good"),
            test_anomaly_dirs=[str(root / "test" / "dent")],
            image_size=SIZE,
            channels=3,
        )
    )
    assert f"data.train_dir {root / 'train'} holds folders (good) but no images" in message


def test_a_corrupt_image_is_named(tmp_path):
    root = write_folders(tmp_path / "parts")
    bad = root / "test" / "scratch" / "s1.jpg"
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    message = one_line_error(lambda: folder(root, tmp_path).setup())
    assert str(bad) in message


def test_a_missing_mask_is_named(tmp_path):
    root = write_folders(tmp_path / "parts")
    (root / "ground_truth" / "s1.png").unlink()
    message = one_line_error(lambda: folder(root, tmp_path))
    assert f"no mask for anomalous image {root / 'test' / 'scratch' / 's1.jpg'}" in message


def test_a_mask_without_its_image_is_refused(tmp_path):
    root = write_folders(tmp_path / "parts")
    draw(root / "elsewhere" / "x.png", 0, (0, 2, 0, 2), mask_path=root / "ground_truth" / "x9_mask.png")
    message = one_line_error(lambda: folder(root, tmp_path))
    assert "masks without matching images" in message and str(root / "ground_truth" / "x9_mask.png") in message


def test_one_flat_mask_for_two_anomaly_folders_is_refused(tmp_path):
    root = write_folders(tmp_path / "parts")
    (root / "test" / "dent" / "d1.png").rename(root / "test" / "dent" / "s0.png")  # scratch/s0.png's mask matches
    message = one_line_error(lambda: folder(root, tmp_path))
    assert "matches both" in message and "ground_truth/<folder name>/" in message


def test_a_mask_of_another_shape_is_refused(tmp_path):
    root = write_folders(tmp_path / "parts")
    Image.new("L", (64, 16), 0).save(root / "ground_truth" / "d1.png")  # d1.png is 64×32
    message = one_line_error(lambda: folder(root, tmp_path).setup())
    assert "ground_truth/d1.png is 64×16" in message


@pytest.mark.parametrize(
    ("protocol", "expected"),
    [
        ({"abnormal_class": 1}, "not peer categories"),
        ({"known_anomaly_classes": [2]}, "not peer categories"),
        ({"normal_class": 1}, "normal_class must be 0"),
    ],
)
def test_only_the_normal_folder_can_be_normal(tmp_path, protocol, expected):
    root = write_folders(tmp_path / "parts")
    assert expected in one_line_error(lambda: folder(root, tmp_path, **protocol))


def test_the_same_folder_for_training_and_test_normals_is_refused(tmp_path):
    root = write_folders(tmp_path / "parts")

    def make():
        return Folder(
            train_dir=str(root / "train" / "good"),
            test_normal_dir=str(root / "test" / ".." / "train" / "good"),
            test_anomaly_dirs=[str(root / "test" / "dent")],
            image_size=SIZE,
            channels=3,
        )

    assert "same folder" in one_line_error(make)


def test_end_to_end_run_with_pixel_metrics(tmp_path):
    root = write_folders(tmp_path / "parts")
    anomaly_dirs = ",".join(f"'{root / 'test' / name}'" for name in ANOMALIES)
    results = run_on_fixture(
        tmp_path,
        "data=folder",
        f"data.train_dir='{root / 'train' / 'good'}'",
        f"data.test_normal_dir='{root / 'test' / 'good'}'",
        f"data.test_anomaly_dirs=[{anomaly_dirs}]",
        f"data.mask_dir='{root / 'ground_truth'}'",
        f"data.cache_dir='{tmp_path}/cache'",
    )
    for key in ("image_auroc", "pixel_auroc", "pixel_aupro"):
        value = results["metrics"][key]
        assert isinstance(value, float) and not math.isnan(value) and 0 <= value <= 1, key
    assert results["counts"] == {"train": 11, "val": 1, "test": 9, "test_anomalous": 5}
    assert str(root / "test" / "dent" / "d1.png") in (tmp_path / "run" / "scores.csv").read_text()
    assert {f"image_auroc/{name}" for name in ANOMALIES} <= set(results["metrics"]), "an AUROC per anomaly folder"
    rows = list(csv.DictReader((tmp_path / "run" / "scores.csv").open()))
    assert {r["type"] for r in rows if r["label"] == "1"} == set(ANOMALIES)
    assert {r["type"] for r in rows if r["label"] == "0"} == {"normal"}
    last = (tmp_path / "run" / "adrun.log").read_text().splitlines()[-1]
    assert f"ganomaly on folder (normal: {root / 'train' / 'good'}): image AUROC" in last, "not 'normal: normal'"


def test_the_command_line_without_folders_is_one_line_and_exit_2(tmp_path, adrun_here):
    code, _, err = adrun_here("data=folder", cwd=tmp_path)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("adrun: error: data.train_dir"), err
    assert "data.test_anomaly_dirs" in lines[0]


def test_channels_auto_is_one_for_grey_files_and_three_when_any_is_colour(tmp_path, capsys):
    from omegaconf import OmegaConf

    from adrun.plan import auto_channels

    grey, mixed = tmp_path / "grey", tmp_path / "mixed"
    for folder in (grey, mixed):
        folder.mkdir()
        for i in range(3):
            Image.new("L", (8, 8), color=40 * i).save(folder / f"{i}.png")
    Image.new("RGB", (8, 8), color=(9, 90, 200)).save(mixed / "3.png")
    assert auto_channels(OmegaConf.create({"train_dir": str(grey)})) == 1
    assert "the 3 training images in" in capsys.readouterr().out
    assert auto_channels(OmegaConf.create({"train_dir": str(mixed)})) == 3
    with pytest.raises(UserError, match="it is for data=folder"):
        auto_channels(OmegaConf.create({"root": "x"}))
