"""Data start-up: the first `setup()` of a dataset (decode + resize + write the cache) against a cached one.

Writes two stand-ins in their published formats into a temporary directory: a full-size CIFAR10 (60,000 × 32 × 32 × 3,
the python pickle batches) and an MVTec AD category (400 PNGs of 900 × 900 like the real `bottle`, decoded to 256 px,
with ground-truth masks). Prints a table.

    python scripts/bench_data_startup.py
"""

import hashlib
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np
import torchvision
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from PIL import Image

from adrun.cli import config_dir


def write_cifar10(root: Path) -> None:
    """Random batches in the published pickle format; torchvision's MD5 table is pointed at them (it checks all)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (10000, 3072), dtype=np.uint8), "labels": list(range(10)) * 1000}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names}, f)
    tv = torchvision.datasets.CIFAR10

    def md5(name: str) -> str:
        return hashlib.md5((folder / name).read_bytes()).hexdigest()

    tv.train_list = [[name, md5(name)] for name, _ in tv.train_list]
    tv.test_list = [["test_batch", md5("test_batch")]]
    tv.meta = tv.meta | {"md5": md5("batches.meta")}


def write_mvtec(root: Path, n_train=280, n_good=40, defects=("broken", "contamination"), per_defect=40) -> None:
    yy, xx = np.mgrid[0:900, 0:900]
    base = ((np.sin(xx / 60) + np.cos(yy / 45)) * 60 + 128).astype(np.uint8)

    def save(path: Path, spot: bool) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        image = np.stack([base, base[::-1], base.T], axis=-1).copy()
        if spot:
            image[400:500, 400:500] = 255
        Image.fromarray(image).save(path, compress_level=1)

    for i in range(n_train):
        save(root / "bottle" / "train" / "good" / f"{i:03d}.png", False)
    for i in range(n_good):
        save(root / "bottle" / "test" / "good" / f"{i:03d}.png", False)
    mask = np.zeros((900, 900), np.uint8)
    mask[400:500, 400:500] = 255
    for defect in defects:
        for i in range(per_defect):
            save(root / "bottle" / "test" / defect / f"{i:03d}.png", True)
            path = root / "bottle" / "ground_truth" / defect / f"{i:03d}_mask.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask).save(path)


def setup_seconds(overrides: list[str]) -> tuple[float, int]:
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    start = time.perf_counter()
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    return time.perf_counter() - start, len(datamodule.train_set) + len(datamodule.val_set) + len(datamodule.test_set)


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_cifar10(tmp / "cifar10")
        write_mvtec(tmp / "mvtec")
        for name, overrides in (
            ("CIFAR10 60,000 × 32 px", ["data=cifar10", f"data.root={tmp / 'cifar10'}"]),
            ("MVTec bottle 400 × 900 px → 256", ["data=mvtec", f"data.root={tmp / 'mvtec'}", "data.category=bottle"]),
        ):
            overrides.append(f"data.cache_dir={tmp / 'cache'}")
            first, n = setup_seconds(overrides)
            again, _ = setup_seconds(overrides)
            rows.append((name, n, first, again))
    print("\n| stand-in | images in the run | first setup s | cached setup s |\n|---|---|---|---|")
    for name, n, first, again in rows:
        print(f"| {name} | {n} | {first:.2f} | {again:.2f} |")


if __name__ == "__main__":
    main()
