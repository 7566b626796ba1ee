"""Continuing a run: `resume=true` in the same run dir, or `ckpt=<file>` to start from another run's checkpoint.

A resumed run must end where an uninterrupted one would. Lightning restores weights, optimisers and loop counters from
`checkpoints/last.ckpt` (written at each epoch's end); `RandomState` adds the random generators (torch, CUDA, NumPy,
Python) as they were when the checkpoint was written, and puts them back at the start of the first resumed epoch — after
the setup hooks, which draw their own numbers, and before the epoch's shuffle and noise. A run that finished
(`results.json` status ok) is not run again; a run dir that holds another config is refused rather than mixed.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback

from adrun.errors import UserError
from adrun.reuse import checkpoint_path, read_checkpoint

RUN_CONFIG = "run_config.yaml"  # the resolved config a run dir belongs to, written when the run starts
# A resumed run may differ from the first in how it runs, not in what it computes:
MAY_CHANGE = ("resume", "ckpt", "threads", "hardware", "launcher", "data.num_workers")


class RandomState(Callback):
    """Saves the random generators with every checkpoint; restores them when training resumes. Kept as tensors and
    plain numbers, which `torch.load(weights_only=True)` (Lightning's default) accepts."""

    def __init__(self) -> None:
        self.pending: dict | None = None

    def state_dict(self) -> dict:
        name, keys, position, has_gauss, gauss = np.random.get_state()
        state = {
            "torch": torch.get_rng_state(),
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss],
            "python": random.getstate(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
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
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def flat(config: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        out |= flat(value, f"{name}.") if isinstance(value, dict) else {name: value}
    return out


def config_differences(before: dict, now: dict) -> list[str]:
    """Keys whose values differ between two resolved configs, leaving out those a resumed run may change."""
    a, b = flat(before), flat(now)
    changed = sorted(key for key in a.keys() | b.keys() if a.get(key, "<unset>") != b.get(key, "<unset>"))
    return [key for key in changed if not any(key == k or key.startswith(f"{k}.") for k in MAY_CHANGE)]


def remember_config(cfg: DictConfig, run_dir: Path) -> None:
    """The config a run dir belongs to (a new run's; a resumed run keeps the first): resuming is checked against it."""
    from adrun.evaluation import write_atomically

    path = run_dir / RUN_CONFIG
    if not (cfg.resume and path.exists()):
        write_atomically(path, lambda f: f.write(OmegaConf.to_yaml(cfg, resolve=True)))


def check_same_config(cfg: DictConfig, run_dir: Path) -> None:
    path = run_dir / RUN_CONFIG
    if not path.exists():
        return
    before = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    changed = config_differences(before, OmegaConf.to_container(cfg, resolve=True))
    if changed:
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        raise UserError(f"resume=true: {run_dir} holds a run with another config ({shown} differ); resume it as it was")


def finished_results(run_dir: Path) -> dict | None:
    """The results of a run that ended well in run_dir, if it did."""
    path = run_dir / "results.json"
    if not path.exists():
        return None
    results = json.loads(path.read_text())
    return results if results.get("status") == "ok" else None


def last_checkpoint(run_dir: Path) -> Path | None:
    path = run_dir / "checkpoints" / "last.ckpt"
    return path if path.exists() else None


def start_from(cfg: DictConfig, run_dir: Path) -> Path | None:
    """The checkpoint training continues from: the run dir's own when resuming, else `ckpt=`, else none."""
    if cfg.resume:
        check_same_config(cfg, run_dir)
        if (last := last_checkpoint(run_dir)) is not None:
            return last
        print(f"resume=true: no checkpoint in {run_dir / 'checkpoints'} yet; starting from the beginning")
    return None if cfg.ckpt is None else checkpoint_path(cfg.ckpt)


def check_fits(path: Path, image_size: int, channels: int) -> None:
    """A checkpoint made for other images is refused in one line, before Lightning fails on tensor shapes."""
    saved = read_checkpoint(path).get("hyper_parameters", {})
    have = (saved.get("channels"), saved.get("image_size"))
    if None not in have and have != (channels, image_size):
        raise UserError(
            f"checkpoint {path} was trained on {have[0]}-channel {have[1]} px images; the data give {channels}-channel "
            f"{image_size} px images (set data.channels={have[0]} data.image_size={have[1]}, or use another checkpoint)"
        )
