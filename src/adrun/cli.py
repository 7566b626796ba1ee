"""`adrun`: a thin Hydra entry point over `run(cfg) -> dict`, which tests call directly.

Errors a user can cause (unknown method, a typo in a key, a missing data root, …) end in one line on stderr and exit
status 2; anything else is a bug and keeps its traceback. HYDRA_FULL_ERROR=1 shows Hydra's own report instead.
"""

from __future__ import annotations

import difflib
import logging
import os
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

import adrun.resolvers  # noqa: F401  (registers ${adrun.cpus:} and co. for conf/launcher/)
from adrun.errors import UserError

QUIET = (  # Lightning's advice that does not apply to in-memory tensor datasets or to our fixed layout
    ".*does not have many workers.*",
    ".*smaller than the logging interval.*",
    ".*Checkpoint directory .* exists and is not empty.*",
    ".*GPU available but not used.*",
    ".*`isinstance\\(treespec, LeafSpec\\)` is deprecated.*",
    ".*module\\(s\\) in eval mode at the start of training.*",  # frozen networks (teachers, G_old) are on purpose
)


def config_dir() -> Path:
    """conf/ as shipped inside the wheel (adrun/conf), else the source tree's (editable installs, checkouts)."""
    shipped = Path(__file__).resolve().parent / "conf"
    return shipped if shipped.is_dir() else Path(__file__).resolve().parents[2] / "conf"


def group_choice(node: DictConfig) -> str:
    """A config group's choice from its target: `adrun.methods.ganomaly.GANomaly` → `ganomaly` (file = module)."""
    return node._target_.split(".")[-2]


def run(cfg: DictConfig, run_dir: Path | None = None) -> dict:
    """Train, test and log one method on one dataset; returns what results.json holds."""
    import pytorch_lightning as pl
    import torch
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate
    from pytorch_lightning.callbacks import ModelCheckpoint
    from pytorch_lightning.loggers import TensorBoardLogger

    from adrun import evaluation
    from adrun.timing import Timer

    for pattern in QUIET:
        warnings.filterwarnings("ignore", pattern)
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    hydra_run = HydraConfig.initialized()
    if run_dir is None:
        run_dir = Path(HydraConfig.get().runtime.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    if not isinstance(cfg.seed, int):
        raise UserError(f"seed must be an integer, got {cfg.seed!r}")
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()  # downloads where asked, before setup reads the files
    datamodule.setup("fit")
    module = instantiate(cfg.method, image_size=datamodule.image_size, channels=datamodule.channels)
    if not getattr(module, "uses_known_anomalies", False) and (dropped := datamodule.drop_known_anomalies()):
        print(
            f"note: {group_choice(cfg.method)} trains on normals only; {dropped} known anomalies left out of training"
        )
    logger = TensorBoardLogger(str(run_dir), name="tb", version="", default_hp_metric=False)
    timer = Timer()
    trainer_args = OmegaConf.to_container(cfg.trainer, resolve=True) | OmegaConf.to_container(
        cfg.hardware.trainer, resolve=True
    )
    if len(datamodule.val_set) == 0:
        trainer_args["limit_val_batches"] = 0
    trainer = pl.Trainer(
        **trainer_args,
        **module.trainer_overrides,
        logger=logger,
        callbacks=[timer, ModelCheckpoint(dirpath=run_dir / "checkpoints", save_last=True, save_top_k=0)],
        default_root_dir=str(run_dir),
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule)
    fit_seconds = time.perf_counter() - start
    trainer.test(module, datamodule, verbose=False)

    method, data = group_choice(cfg.method), group_choice(cfg.data)
    outputs, metrics = module.test_outputs, module.test_metrics
    evaluation.write_scores(run_dir / "scores.csv", outputs, datamodule.sample_id)
    results = {
        "status": "ok",
        "method": method,
        "data": data,
        "hardware": HydraConfig.get().runtime.choices.hardware if hydra_run else cfg.hardware.trainer.accelerator,
        "seed": cfg.seed,
        "normal_class": list(datamodule.normal_classes),  # as the protocol resolved it (leave-one-out, Caltech)
        "normal_class_names": [datamodule.classes[c] for c in datamodule.normal_classes],
        "metrics": {key: None if value != value else value for key, value in metrics.items()},  # NaN → null
        "counts": {
            "train": len(datamodule.train_set),
            "val": len(datamodule.val_set),
            "test": len(outputs.labels),
            "test_anomalous": int(outputs.labels.sum()),
        },
        "timings": {"fit_s": fit_seconds, **timer.rates()},
        "method_notes": module.method_notes(),
        "overrides": list(HydraConfig.get().overrides.task) if hydra_run else [],
        "versions": evaluation.versions(),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    evaluation.write_results(run_dir / "results.json", results)
    evaluation.log_hparams(logger.experiment, hparams_of(cfg, method, data, results["normal_class"]), metrics)
    logger.finalize("success")
    auroc = metrics["image_auroc"]
    print(
        f"{method} on {data} (normal: {', '.join(results['normal_class_names'])}): image AUROC {auroc:.4f} · "
        f"results in {run_dir} · view: tensorboard --logdir {run_dir / 'tb'}"
    )
    return results


def hparams_of(cfg: DictConfig, method: str, data: str, normal_class: list[int]) -> dict:
    """What the HParams tab compares: the choices, the seed, the protocol, and the method's scalar hyperparameters."""
    params = {"method": method, "data": data, "seed": cfg.seed, "normal_class": str(normal_class)}
    params |= {"data.image_size": cfg.data.image_size, "data.train_subset": str(cfg.data.train_subset)}
    for key, value in OmegaConf.to_container(cfg.method, resolve=True).items():
        if key != "_target_" and isinstance(value, int | float | str | bool):
            params[f"method.{key}"] = value
    return params


def one_line(error: BaseException) -> str | None:
    """The message for an error the user can fix, or None for a bug (which keeps its traceback)."""
    from hydra.errors import (
        ConfigCompositionException,
        InstantiationException,
        MissingConfigException,
        OverrideParseException,
    )
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, UserError):
            return str(cause)
        cause = cause.__cause__ or cause.__context__
    if isinstance(error, MissingConfigException) and (error.missing_cfg_file or "").startswith("hydra/launcher/"):
        plugin = error.missing_cfg_file.rsplit("/", 1)[1]  # launcher=local|slurm without its Hydra plugin
        return f'the {plugin} launcher is not installed; pip install -e ".[cluster]" (Hydra\'s launcher plugins)'
    if isinstance(error, MissingConfigException) and error.missing_cfg_file and "/" in error.missing_cfg_file:
        group, name = error.missing_cfg_file.split("/", 1)
        options = ", ".join(error.options or [])
        return f"unknown {group} '{name}'; choose one of: {options}"
    if isinstance(error, ConfigCompositionException) and isinstance(
        error.__cause__, ConfigKeyError | ConfigAttributeError
    ):
        key_error = error.__cause__
        known = list(key_error.parent_node.keys()) if key_error.parent_node is not None else []
        close = difflib.get_close_matches(str(key_error.key), [str(k) for k in known], n=1)
        parent = str(key_error.full_key).rpartition(".")[0]
        hint = f" (did you mean '{parent + '.' if parent else ''}{close[0]}'?)" if close else ""
        return f"unknown key '{key_error.full_key}'{hint}; `adrun --cfg job` lists every key"
    if isinstance(error, OSError) and error.filename:  # the environment's fault: a dir that cannot be made or written
        return f"cannot use {error.filename}: {error.strerror}"
    if isinstance(error, ConfigCompositionException | OverrideParseException | InstantiationException):
        return " ".join(str(error).split())
    return None


@contextmanager
def user_errors_in_one_line(full_errors: bool):
    """Errors the user can fix leave as one line on stderr and exit status 2; others propagate untouched."""
    try:
        yield
    except Exception as error:
        message = None if full_errors else one_line(error)
        if message is None:
            raise
        print(f"adrun: error: {message}", file=sys.stderr)
        sys.exit(2)


FULL_ERRORS = os.environ.get("HYDRA_FULL_ERROR") == "1"  # the user asked for Hydra's full report


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def hydra_main(cfg: DictConfig) -> None:
    with user_errors_in_one_line(FULL_ERRORS):  # here too, before Hydra's job runner adds its own line
        run(cfg)


def main() -> None:
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let composition errors reach us, to be reported in one line
    with user_errors_in_one_line(FULL_ERRORS):
        hydra_main()
