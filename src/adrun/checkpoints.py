"""A trained model's checkpoint: opened once, and what adrun keeps in it beside Lightning's state.

Every checkpoint carries the run's resolved config (`RunConfig`) and the calibrated threshold (a buffer of the method,
saved with its weights), and the random generators as they were (`RandomState`), so that
- `mode=test` / `mode=predict` rebuild the method and the preprocessing from the checkpoint alone (`merged_config`:
  the command line sets the hardware, the loggers, the mode and its inputs, the threshold, and the seed if it names
  one (the training run's otherwise); `data=<other>`; single
  `method.*`, `data.*` and `trainer.*` keys on top of the checkpoint's);
- `resume=true` ends with the same scores as a run that was never stopped: Lightning restores weights, optimisers and
  loops, `RandomState` the generators (torch, CUDA, NumPy, Python) at the start of the first resumed epoch — after the
  setup hooks, which draw their own numbers, and before the epoch's shuffle and noise. On a GPU that holds with
  `trainer.deterministic=true` (deterministic cuDNN/cuBLAS algorithms; Lightning keeps the AMP scaler's state in the
  checkpoint): tests/test_gpu.py checks it where CUDA is. Without it, cuDNN may pick algorithms that add in another
  order, and a resumed run is a faithful continuation, not a bit-exact one.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.callbacks import Callback

from adrun.errors import UserError

# What a later use of a checkpoint takes from its own command line rather than from the checkpoint's config:
FROM_COMMAND_LINE = ("mode", "ckpt", "input", "threshold", "threads", "hardware", "logger", "seed", "resume")
FROM_COMMAND_LINE += ("strict", "overlay_scale")  # predict's
SINGLE_KEYS = ("method", "data", "trainer")  # `method.iterations=9`, `data.test_subset=100`: applied on top
_opened: dict[tuple[str, int], Checkpoint] = {}  # the last file opened, so the CLI and the runner read it once


def group_choice(target: str) -> str:
    """A config group's choice from its target: `adrun.methods.ganomaly.GANomaly` → `ganomaly` (file = module)."""
    return target.split(".")[-2]


class Checkpoint:
    """A checkpoint file's contents, read once (on the CPU): path, config, hyperparameters, threshold, size."""

    def __init__(self, path: Path, contents: dict):
        self.path, self.contents = path, contents

    @classmethod
    def locate(cls, ckpt) -> Path:
        """`ckpt=` as a file: a .ckpt, or a run dir's checkpoints/last.ckpt."""
        if ckpt is None:
            raise UserError("this mode uses a trained model: set ckpt=<a .ckpt file or a run dir>")
        path = Path(str(ckpt)).expanduser()
        if path.is_dir():
            path = path / "checkpoints" / "last.ckpt"
        if not path.is_file():
            raise UserError(f"ckpt={ckpt}: no checkpoint there (give a .ckpt file or a run dir with checkpoints/)")
        return path

    @classmethod
    def open(cls, ckpt) -> Checkpoint:
        path = cls.locate(ckpt)
        key = (str(path.resolve()), path.stat().st_mtime_ns)
        if key not in _opened:
            try:  # not weights-only: hyperparameters may hold OmegaConf containers, as Lightning's own loading allows
                contents = torch.load(path, map_location="cpu", weights_only=False)
            except Exception as error:
                raise UserError(f"ckpt {path}: not a readable checkpoint ({type(error).__name__})") from error
            _opened.clear()  # a sweep over many checkpoints keeps one in memory, not all
            _opened[key] = cls(path, contents)
        return _opened[key]

    @property
    def config(self) -> dict:
        config = self.contents.get("adrun", {}).get("config")
        if config is None:
            raise UserError(f"ckpt {self.path} holds no run config (made before adrun kept it); re-train")
        return config

    @property
    def method(self) -> str:
        """The method's name as its run called it (`method=tiny_ae`); for checkpoints from before it was kept, its
        config-group name from its module: `adrun.methods.anogan.AnoGAN` → `anogan`."""
        return self.contents.get("adrun", {}).get("method") or group_choice(self.config["method"]["_target_"])

    @property
    def hparams(self) -> dict:
        return self.contents.get("hyper_parameters", {})

    @property
    def image_size(self) -> int | None:
        return self.hparams.get("image_size")

    @property
    def channels(self) -> int | None:
        return self.hparams.get("channels")

    @property
    def threshold(self) -> float | None:
        state = self.contents.get("state_dict", {})
        return state["threshold"].item() if state.get("threshold_normals", 0) > 0 else None

    def check_method(self, target: str) -> None:
        saved = self.config["method"]["_target_"]
        if saved != target:
            raise UserError(
                f"ckpt {self.path} holds a {saved.split('.')[-1]} model, but method= asks for {target.split('.')[-1]}; "
                "leave method= out, or use a checkpoint of that method"
            )

    def check_fits(self, image_size: int, channels: int) -> None:
        """A checkpoint made for other images is refused in one line, before Lightning fails on tensor shapes."""
        have = (self.channels, self.image_size)
        if None not in have and have != (channels, image_size):
            raise UserError(
                f"checkpoint {self.path} was trained on {have[0]}-channel {have[1]} px images; the data give "
                f"{channels}-channel {image_size} px images (set data.channels={have[0]} data.image_size={have[1]}, "
                "or use another checkpoint)"
            )

    def merged_config(self, cfg: DictConfig, overrides: list[str]) -> DictConfig:
        """The checkpoint's config with what the command line sets (see the module's docstring)."""
        saved = OmegaConf.create(self.config)
        chosen = {item.split("=", 1)[0].lstrip("+~") for item in overrides}
        if "method" in chosen:
            self.check_method(cfg.method._target_)
        with open_dict(saved):
            for key in FROM_COMMAND_LINE:
                if key == "seed" and key not in chosen:
                    continue  # the training run's seed, unless given: results and tables pair a re-test with its run
                saved[key] = cfg.get(key)  # None where the command line removed it (`~logger`: no loggers)
            if "data" in chosen:
                saved.data = cfg.data
            for key in sorted(chosen):
                group = key.split(".")[0]
                if "." in key and group in SINGLE_KEYS and not (group == "data" and "data" in chosen):
                    OmegaConf.update(saved, key, OmegaConf.select(cfg, key), force_add=True)
        return saved


class RunConfig(Callback):
    """Puts the run's resolved config, and the method's name (`method=…`'s choice), into every checkpoint Lightning
    writes."""

    def __init__(self, config: dict, method: str | None = None):
        self.config, self.method = config, method

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint["adrun"] = {"config": self.config, "method": self.method}


class RandomState(Callback):
    """Saves the random generators with every checkpoint; restores them when training resumes. Kept as tensors and
    plain numbers, which `torch.load(weights_only=True)` (Lightning's default) accepts.

    The CUDA generator saved is the one of the GPU this process computes on, and it is restored onto the GPU the resumed
    run computes on: a local sweep's job pinned to `devices=[k]` may resume on another index (another GPU count, another
    launcher). Checkpoints made before kept every GPU's generator by index; the entry of this GPU's index is used."""

    def __init__(self) -> None:
        self.pending: dict | None = None
        self.device: torch.device | None = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.device = trainer.strategy.root_device

    @property
    def on_cuda(self) -> bool:
        return self.device is not None and self.device.type == "cuda"

    def state_dict(self) -> dict:
        name, keys, position, has_gauss, gauss = np.random.get_state()
        state = {
            "torch": torch.get_rng_state(),
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss],
            "python": random.getstate(),
        }
        if self.on_cuda:
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        self.pending = state_dict  # applied once the setup hooks are done, see on_train_epoch_start

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self.pending is None:
            return
        state, self.pending = self.pending, None
        torch.set_rng_state(state["torch"])
        name, keys, position, has_gauss, gauss = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
        version, internal, gauss_next = state["python"]
        random.setstate((version, tuple(internal), gauss_next))
        cuda = state.get("cuda")
        if cuda is not None and self.on_cuda:
            if isinstance(cuda, list | tuple):  # an older checkpoint: every GPU's generator, by index
                cuda = cuda[min(self.device.index or 0, len(cuda) - 1)]
            torch.cuda.set_rng_state(cuda, self.device)
