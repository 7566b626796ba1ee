"""A trained model used later (`mode=test`, `mode=predict`): its config comes from the checkpoint, not the command line.

Every checkpoint carries the run's resolved config (`AnomalyModule.on_save_checkpoint`). A later use rebuilds the method
and the preprocessing from it, so `adrun mode=predict ckpt=<run> input=<dir>` needs nothing else. What the command line
does set is kept: the hardware, the mode and its inputs, the threshold; `data=<other>` (test the model on other data);
and single keys, `data.test_subset=100` or `method.iterations=100`, applied on top of the checkpoint's.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from adrun.errors import UserError

FROM_COMMAND_LINE = ("mode", "ckpt", "input", "threshold", "threshold_quantile", "threads", "hardware", "seed")


def checkpoint_path(ckpt) -> Path:
    """`ckpt=` as a file: a .ckpt, or a run dir's checkpoints/last.ckpt."""
    if ckpt is None:
        raise UserError("this mode uses a trained model: set ckpt=<a .ckpt file or a run dir>")
    path = Path(str(ckpt)).expanduser()
    if path.is_dir():
        path = path / "checkpoints" / "last.ckpt"
    if not path.is_file():
        raise UserError(f"ckpt={ckpt}: no checkpoint there (give a .ckpt file or a run dir with checkpoints/)")
    return path


def read_checkpoint(path: Path) -> dict:
    """A checkpoint's contents on the CPU, or a one-line error. Not weights-only: hyperparameters may hold OmegaConf
    containers, as Lightning's own loading allows."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise UserError(f"ckpt {path}: not a readable checkpoint ({type(error).__name__})") from error


def saved_config(path: Path) -> dict:
    config = read_checkpoint(path).get("adrun", {}).get("config")
    if config is None:
        raise UserError(f"ckpt {path} holds no run config (made before adrun kept it); re-train, or use ckpt= to train")
    return config


def config_for_checkpoint(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """The checkpoint's config with what the command line sets (see the module's docstring)."""
    saved = OmegaConf.create(saved_config(checkpoint_path(cfg.ckpt)))
    chosen = {item.split("=", 1)[0] for item in overrides}
    if "method" in chosen and cfg.method._target_ != saved.method._target_:
        raise UserError(f"ckpt holds a {saved.method._target_.split('.')[-1]} model; leave method= out of a {cfg.mode}")
    with open_dict(saved):
        for key in FROM_COMMAND_LINE:
            saved[key] = cfg[key]
        if "data" in chosen:
            saved.data = cfg.data
        for key in chosen:
            group = key.split(".")[0]
            if "." in key and group in ("method", "data") and not (group == "data" and "data" in chosen):
                OmegaConf.update(saved, key, OmegaConf.select(cfg, key), force_add=True)
    return saved
