"""Runner overhead: `adrun`'s training images/s against a bare loop of the same module's training step.

The bare loop is the method's own update (`module.update(images, *optimisers, backward)`) on the same batches, held
in a list: no Lightning, no loader, no logging. Both start from the same seed and run the same number of epochs, and
each is run REPEATS times, alternating, keeping its best (the machine's noise only ever slows a run down).

    python scripts/bench_overhead.py [hydra overrides…]      e.g. data=fashion_mnist data.root=… data.train_subset=1000
"""

import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from adrun.cli import config_dir
from adrun.runner import run

REPEATS = 2


def bare_images_per_s(cfg) -> float:
    pl.seed_everything(cfg.seed, verbose=False)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    module = instantiate(cfg.method, image_size=datamodule.image_size, channels=datamodule.channels).train()
    optimisers = module.configure_optimizers()
    train = datamodule.train_set
    batches = [train.__getitems__(idx.tolist()) for idx in torch.randperm(len(train)).split(datamodule.batch_size)]
    batches = [b for b in batches if len(b["image"]) > 1]
    images = 0
    start = time.perf_counter()
    for _ in range(cfg.method.epochs):
        for batch in batches:
            module.update(batch["image"], *optimisers, backward=lambda loss: loss.backward())
            images += len(batch["image"])
    return images / (time.perf_counter() - start)


def main(overrides: list[str]) -> None:
    overrides = ["method.epochs=3", *overrides]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    runner = bare = 0.0
    for _ in range(REPEATS):
        bare = max(bare, bare_images_per_s(cfg))
        with tempfile.TemporaryDirectory() as run_dir:
            results = run(cfg, Path(run_dir) / "run", overrides)
            runner = max(runner, results["timings"]["train_images_per_s"])
    print("\n| overrides | runner images/s | bare loop images/s | overhead |\n|---|---|---|---|")
    print(f"| {' '.join(overrides)} | {runner:.1f} | {bare:.1f} | {100 * (bare / runner - 1):+.1f}% |")


if __name__ == "__main__":
    main(sys.argv[1:])
