"""`prepare(cfg, run_dir) -> Plan`: everything a run decides before it does anything, as plain JSON data.

The mode; the final config (the command line merged with a checkpoint's, `checkpoints.Checkpoint`, opened once); the
method's class checked against the contract and its values against its constructor's annotations (`contract`); the
resume verdict; the Trainer's arguments (config ∪ hardware ∪ the method's needs; a conflict is one line). Every error a
user can cause by what they typed is raised here, and nothing is written. `runner.execute(plan)` carries the plan out;
extra DDP ranks read the very same plan from a file.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from adrun import contract
from adrun.artefacts import RunDir
from adrun.checkpoints import Checkpoint, group_choice
from adrun.errors import UserError, check_choice, epoch_keys
from adrun.hardware import check_precision, check_switches
from adrun.loggers import check_extras
from adrun.resolvers import MODES

# A resumed run may differ from the first in how it runs, not in what it computes:
MAY_CHANGE = ("resume", "ckpt", "threads", "hardware", "launcher", "logger", "data.num_workers", "data.on_device")
MAY_CHANGE += ("trainer.enable_progress_bar",)
RUNNER_OWNS = ("max_epochs", "logger", "callbacks", "default_root_dir")  # Trainer arguments the runner sets itself
ROOT_KEYS = {"method", "data", "hardware", "logger", "seed", "mode", "input", "threshold", "overlay_scale", "strict"}
ROOT_KEYS |= {"threshold_quantile", "resume", "ckpt", "threads", "summary", "trainer", "reference", "launcher"}
log = logging.getLogger("adrun")


@dataclass(frozen=True)
class Plan:
    """What prepare decided, JSON only: what execute carries out, and what the extra DDP ranks read from a file."""

    mode: str
    config: dict  # resolved: the command line, merged with the checkpoint's config in test and predict modes
    run_dir: str
    facts: dict  # method, data, hardware, seed, overrides: what identifies the run in results.json
    trainer_args: dict  # the Trainer's arguments: config, hardware profile and the method's needs, merged once
    start: str | None = None  # the checkpoint to start from: resume's, ckpt= (train), the model (test, predict)
    finished: dict | None = None  # resume=true on a finished run: its results, and nothing to do
    rescored: list = field(default_factory=list)  # test/predict: method keys set unlike the checkpoint's (a new score)

    @property
    def cfg(self) -> DictConfig:
        return OmegaConf.create(self.config)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Plan:
        return cls(**json.loads(text))


def prepare(
    cfg: DictConfig, run_dir: Path, overrides: list[str] = (), hardware: str | None = None, method: str | None = None
) -> Plan:
    """Decides the run; raises a UserError for anything the user can fix. Reads, never writes. `hardware` and `method`
    are the config groups' choices, where Hydra made them (the names results and tables use)."""
    check_choice("mode", cfg.mode, MODES)
    check_top_level(cfg)
    checkpoint = None
    if cfg.mode != "train":
        checkpoint = Checkpoint.open(cfg.ckpt)
        cfg = checkpoint.merged_config(cfg, list(overrides))
    elif cfg.ckpt is not None:
        checkpoint = Checkpoint.open(cfg.ckpt)
        checkpoint.check_method(cfg.method._target_)
    if cfg.data.get("channels") == "auto":
        cfg.data.channels = auto_channels(cfg.data)
    if checkpoint is not None:
        checkpoint.check_fits(int(cfg.data.image_size), int(cfg.data.channels))
    check_accelerator(cfg)
    check_switches(cfg.hardware)
    config = OmegaConf.to_container(cfg, resolve=True)
    contract.check_method_config(config["method"])
    check_extras(config)  # logger=mlflow without its package: one line, before a run dir is made
    trainer_args = trainer_arguments(cfg)
    run = RunDir(run_dir)
    finished = resume_verdict(cfg, config, run)
    start = str(checkpoint.path) if checkpoint is not None else None
    if cfg.resume and finished is None and cfg.mode == "train":
        if run.checkpoint.exists():
            start = str(run.checkpoint)
        else:
            log.info(f"resume=true: no checkpoint in {run.checkpoints} yet; starting from the beginning")
    if finished is None and cfg.mode == "predict":
        from adrun.predict import input_files

        input_files(cfg.input)
    facts = facts_of(cfg, overrides, hardware, method)
    rescored = []
    if cfg.mode != "train":
        now, trained = config["method"], checkpoint.config["method"]
        rescored = sorted(k for k in now.keys() | trained.keys() if now.get(k) != trained.get(k))
    return Plan(cfg.mode, config, str(run_dir), facts, trainer_args, start, finished, rescored)


def auto_channels(data: DictConfig) -> int:
    """`data.channels=auto` (data=folder): 1 when every training image is grey, else 3; said in one line."""
    from adrun.data.images import all_grey, list_images

    train_dir = Path(str(data.get("train_dir") or "")).expanduser()
    if "train_dir" not in data:
        raise UserError("data.channels=auto reads the training folder's files: it is for data=folder; set 1 or 3")
    if not train_dir.is_dir():
        return 3  # the folder's own check names the problem when the data are built
    files = list_images(train_dir)
    channels = 1 if all_grey(files) else 3
    kind = "all grey" if channels == 1 else "in colour (some or all)"
    log.info(
        f"data.channels=auto: the {len(files)} training images in {train_dir} are {kind}, so {channels} channel(s)"
    )
    return channels


def method_name(cfg: DictConfig, choice: str | None = None) -> str:
    """The method's name in run dirs, results and tables: its config-group choice (`method=tiny_ae`), else its
    module's name (`+method._target_=mine.TinyAE` → `mine`)."""
    return choice or group_choice(cfg.method._target_)


def facts_of(cfg: DictConfig, overrides: list[str], hardware: str | None, method: str | None = None) -> dict:
    """What identifies a run in results.json, whatever its status."""
    return {
        "method": method_name(cfg, method),
        "data": group_choice(cfg.data._target_),
        "hardware": hardware or cfg.hardware.trainer.accelerator,
        "seed": cfg.seed,
        "overrides": list(overrides),
    }


def check_top_level(cfg: DictConfig) -> None:
    """The root config's own keys, which no constructor checks; a key nothing reads (`+foo=1`) is refused."""
    unknown = sorted(set(cfg.keys()) - ROOT_KEYS)
    if unknown:
        raise UserError(
            f"unknown key '{unknown[0]}': nothing reads it (a + adds a key adrun does not know); "
            "`adrun --cfg job` lists every key"
        )
    if not isinstance(cfg.seed, int) or isinstance(cfg.seed, bool):
        raise UserError(f"seed must be an integer, got {cfg.seed!r}")
    if cfg.threshold is not None and (isinstance(cfg.threshold, bool) or not isinstance(cfg.threshold, int | float)):
        raise UserError(f"threshold must be a number (a score) or null for the calibrated one, got {cfg.threshold!r}")
    quantile = cfg.threshold_quantile
    if isinstance(quantile, bool) or not isinstance(quantile, int | float) or not 0 < quantile <= 1:
        raise UserError(f"threshold_quantile must be in (0, 1] (0.99 = the 99th percentile), got {quantile!r}")
    check_choice("overlay_scale", cfg.get("overlay_scale", "normals"), ("normals", "call"))
    if cfg.threads is not None and (not isinstance(cfg.threads, int) or cfg.threads < 1):
        raise UserError(f"threads must be a positive integer or null, got {cfg.threads!r}")


def check_accelerator(cfg: DictConfig) -> None:
    import torch

    if cfg.hardware.trainer.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise UserError(
            "this hardware profile needs a CUDA GPU and torch sees none (torch.cuda.is_available() is False); "
            "use hardware=cpu, or install a CUDA build of torch"
        )


def trainer_arguments(cfg: DictConfig) -> dict:
    """`trainer` under the hardware profile's `trainer`, then what the method needs; a conflict is one line."""
    args = OmegaConf.to_container(cfg.trainer, resolve=True) | OmegaConf.to_container(
        cfg.hardware.trainer, resolve=True
    )
    method = contract.method_class(cfg.method._target_)
    for key in RUNNER_OWNS:
        if key in args:
            what = "adrun (choose loggers with logger=tensorboard|csv|mlflow|wandb)" if key == "logger" else "adrun"
            if key == "max_epochs":
                keys = epoch_keys(contract.parameters(method))
                what = f"the method's epoch keys ({', '.join(f'method.{k}' for k in keys)})"
            raise UserError(f"trainer.{key} is set by {what}; leave trainer.{key} out")
    name = group_choice(cfg.method._target_)
    for key, needed in method.trainer_overrides.items():
        if key in args and args[key] != needed:
            raise UserError(
                f"trainer.{key}={args[key]!r} is set, but {name} needs {key}={needed!r}; leave trainer.{key} out"
            )
        args[key] = needed
    check_precision(args.get("precision", "32-true"), str(args.get("accelerator")))
    return args


def resume_verdict(cfg: DictConfig, config: dict, run: RunDir) -> dict | None:
    """The results of a finished run to skip (resume=true), None to run; a run dir that holds another run or another
    config is refused."""
    before = run.read_results()
    if not cfg.resume:
        if before is not None:
            raise UserError(
                f"{run.path} already holds a run (status {before.get('status')}); resume=true continues it (or skips "
                "it if it finished), or choose another hydra.run.dir"
            )
        return None
    check_same_config(config, run)
    return before if before is not None and before.get("status") == "ok" else None


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


def check_same_config(config: dict, run: RunDir) -> None:
    before = run.read_config()
    if before is None:
        return
    changed = config_differences(before, config)
    if changed:
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        raise UserError(
            f"resume=true: {run.path} holds a run with another config ({shown} differ); resume it as it was"
        )
