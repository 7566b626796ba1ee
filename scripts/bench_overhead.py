"""Runner overhead: `adrun`'s training images/s against a bare loop of the same module's training step.

The bare loop is the method's own `training_step` with Lightning's services replaced by the plainest equivalents
(`bare_step`): its optimisers called directly, `loss.backward()`, logging dropped; on the same batches, cut once and
held in a list on the device (`device_batches`): no Lightning, no loader, no logging. Both start from the same seed;
the bare loop's figure is its best epoch after one warm-up epoch (adrun.timing.best_seconds), the runner's is what its
results.json says, the best of REPEATS runs (the machine's noise only ever slows a run down).
scripts/bench_gpu.py uses the same pieces on a GPU.

    python scripts/bench_overhead.py [hydra overrides…]      e.g. data=fashion_mnist data.root=… data.train_subset=1000
"""

import contextlib
import sys
import tempfile
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from adrun.cli import config_dir
from adrun.hardware import ChannelsLast, apply_switches
from adrun.runner import run
from adrun.timing import best_seconds

REPEATS = 2
AUTOCAST = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}


def composed(overrides: list[str]):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def bare_step(module):
    """`step(batch)`: one training step of `module` as its training_step does it, without a Trainer. (The bare step
    under 16-mixed has no GradScaler: the runner's figure includes its cost.)"""
    optimisers = module.configure_optimizers()
    optimisers = list(optimisers) if isinstance(optimisers, list | tuple) else [optimisers]
    module.optimizers = lambda: optimisers if len(optimisers) > 1 else optimisers[0]
    module.manual_backward = lambda loss, *args, **kwargs: loss.backward(*args, **kwargs)
    module.log = module.log_dict = lambda *args, **kwargs: None

    def step(batch: dict) -> None:
        loss = module.training_step(batch, 0)
        if module.automatic_optimization:
            optimisers[0].zero_grad()
            loss.backward()
            optimisers[0].step()

    return step


def device_batches(datamodule, device, channels_last: bool = False) -> list[dict]:
    """One epoch of the training loader's batches, moved once to `device` (two images at least, as BatchNorm needs)."""
    batches = []
    for batch in datamodule.train_dataloader():
        batch = {key: value.to(device) for key, value in batch.items()}
        if channels_last:
            ChannelsLast.convert(batch)
        if len(batch["image"]) > 1:
            batches.append(batch)
    return batches


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_images_per_s(cfg, device: str = "cpu", repeats: int = 3) -> float:
    """The bare loop's training images/s: the method and data `cfg` composes, the profile's switches and precision."""
    device = torch.device(device)
    pl.seed_everything(cfg.seed, verbose=False)
    module = instantiate(cfg.method, image_size=int(cfg.data.image_size), channels=int(cfg.data.channels))
    module = module.to(device).train()
    apply_switches(module, cfg.hardware)
    datamodule = instantiate(cfg.data, use_known_anomalies=module.uses_known_anomalies)
    datamodule.setup("fit")
    batches = device_batches(datamodule, device, cfg.hardware.get("channels_last", False))
    step = bare_step(module)
    dtype = AUTOCAST.get(str(cfg.hardware.trainer.precision))

    def epoch() -> None:
        with torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext():
            for batch in batches:
                step(batch)
        synchronise(device)

    return sum(len(b["image"]) for b in batches) / best_seconds(epoch, repeats, warmup=True)


def runner_timings(cfg, overrides: list[str]) -> dict:
    """A whole adrun run of `cfg` in a temporary dir: its results.json timings (train and test images/s, fit s)."""
    with tempfile.TemporaryDirectory() as run_dir:
        return run(cfg, Path(run_dir) / "run", overrides)["timings"]


def main(overrides: list[str]) -> None:
    overrides = ["method.epochs=3", *overrides]
    cfg = composed(overrides)
    runner = bare = 0.0
    for _ in range(REPEATS):
        bare = max(bare, bare_images_per_s(cfg))
        runner = max(runner, runner_timings(cfg, overrides)["train_images_per_s"])
    print("\n| overrides | runner images/s | bare loop images/s | overhead |\n|---|---|---|---|")
    print(f"| {' '.join(overrides)} | {runner:.1f} | {bare:.1f} | {100 * (bare / runner - 1):+.1f}% |")


if __name__ == "__main__":
    main(sys.argv[1:])
