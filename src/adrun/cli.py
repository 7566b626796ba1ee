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
import traceback
import warnings
from contextlib import contextmanager
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

import adrun.resolvers  # noqa: F401  (registers ${adrun.cpus:} and co. for conf/launcher/)
from adrun.errors import UserError, check_choice

MODES = ("train", "test", "predict")

QUIET = (  # Lightning's advice that does not apply to in-memory tensor datasets or to our fixed layout
    ".*does not have many workers.*",
    ".*smaller than the logging interval.*",
    ".*Checkpoint directory .* exists and is not empty.*",
    ".*GPU available but not used.*",
    ".*`isinstance\\(treespec, LeafSpec\\)` is deprecated.*",
    ".*module\\(s\\) in eval mode at the start of training.*",  # frozen networks (teachers, G_old) are on purpose
    ".*The dirpath has changed from.*",  # mode=test restores a checkpoint made in another run dir
    ".*During `trainer.test\\(\\)`, it is recommended to use `Trainer\\(devices=1.*",  # tests gather and drop repeats
)


def config_dir() -> Path:
    """conf/ as shipped inside the wheel (adrun/conf), else the source tree's (editable installs, checkouts)."""
    shipped = Path(__file__).resolve().parent / "conf"
    return shipped if shipped.is_dir() else Path(__file__).resolve().parents[2] / "conf"


def group_choice(node: DictConfig) -> str:
    """A config group's choice from its target: `adrun.methods.ganomaly.GANomaly` → `ganomaly` (file = module)."""
    return node._target_.split(".")[-2]


def run(cfg: DictConfig, run_dir: Path | None = None) -> dict:
    """Train, test and log one method on one dataset; returns what results.json holds.

    results.json says `started` while the run is on, `ok` with the metrics at the end, or `failed` with the error (which
    is then raised again): a killed or failed run never looks like a result. Under DDP only rank 0 writes.
    """
    from hydra.core.hydra_config import HydraConfig

    from adrun import ddp, evaluation, resume, reuse

    for pattern in QUIET:
        warnings.filterwarnings("ignore", pattern)
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    if run_dir is None:
        run_dir = Path(HydraConfig.get().runtime.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    writes = ddp.global_rank() == 0
    check_choice("mode", cfg.mode, MODES)
    if cfg.mode != "train":  # the method and the preprocessing come from the checkpoint
        cfg = reuse.config_for_checkpoint(
            cfg, list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
        )
    if cfg.resume and (done := resume.finished_results(run_dir)) is not None:
        resume.check_same_config(cfg, run_dir)
        if writes:
            print(f"resume=true: {run_dir} finished before (image AUROC {done['metrics'].get('image_auroc')}); skipped")
        return done
    try:
        if writes:
            resume.remember_config(cfg, run_dir)
            evaluation.write_results(
                run_dir / "results.json", {"status": "started", **run_facts(cfg), **config_of(cfg)}
            )
        if cfg.mode == "predict":
            from adrun.predict import predict

            return predict(cfg, run_dir)
        return train_and_test(cfg, run_dir, writes)
    except Exception as error:
        if writes:
            message = one_line(error) or f"{type(error).__name__}: {error}"
            evaluation.write_results(
                run_dir / "results.json", {"status": "failed", "error": message, **run_facts(cfg), **config_of(cfg)}
            )
        raise


def run_facts(cfg: DictConfig) -> dict:
    """What identifies a run in results.json, whatever its status."""
    from hydra.core.hydra_config import HydraConfig

    hydra_run = HydraConfig.initialized()
    return {
        "method": group_choice(cfg.method),
        "data": group_choice(cfg.data),
        "hardware": HydraConfig.get().runtime.choices.hardware if hydra_run else cfg.hardware.trainer.accelerator,
        "seed": cfg.seed,
        "overrides": list(HydraConfig.get().overrides.task) if hydra_run else [],
    }


def config_of(cfg: DictConfig) -> dict:
    return {"config": OmegaConf.to_container(cfg, resolve=True)}


def train_and_test(cfg: DictConfig, run_dir: Path, writes: bool) -> dict:
    """The run itself, on this node's ranks: rank 0 is this process, the others are started here when needed."""
    import pytorch_lightning as pl
    import torch

    from adrun import ddp

    if not isinstance(cfg.seed, int):
        raise UserError(f"seed must be an integer, got {cfg.seed!r}")
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    trainer_args = OmegaConf.to_container(cfg.trainer, resolve=True) | OmegaConf.to_container(
        cfg.hardware.trainer, resolve=True
    )
    processes = ddp.local_process_count(trainer_args)
    children = ddp.start_ranks(cfg, run_dir, processes) if processes > 1 and not ddp.started_elsewhere() else []
    try:
        results = fit_and_test(cfg, run_dir, writes, trainer_args)
    except BaseException:
        ddp.stop_ranks(children, failed=True)
        raise
    ddp.stop_ranks(children, failed=False)
    return results


def fit_and_test(cfg: DictConfig, run_dir: Path, writes: bool, trainer_args: dict) -> dict:
    import pytorch_lightning as pl
    from hydra.utils import instantiate
    from pytorch_lightning.callbacks import ModelCheckpoint
    from pytorch_lightning.loggers import TensorBoardLogger

    from adrun import calibration, evaluation, resume, reuse
    from adrun.timing import Timer

    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()  # downloads where asked, before setup reads the files
    datamodule.setup("fit")
    module = instantiate(cfg.method, image_size=datamodule.image_size, channels=datamodule.channels)
    dropped = 0 if getattr(module, "uses_known_anomalies", False) else datamodule.drop_known_anomalies()
    if dropped and writes:
        method = group_choice(cfg.method)
        print(f"note: {method} trains on normals only; {dropped} known anomalies left out of training")
    module.run_config = OmegaConf.to_container(cfg, resolve=True)  # kept in every checkpoint (adrun.reuse)
    module.threshold_override = cfg.threshold
    start = reuse.checkpoint_path(cfg.ckpt) if cfg.mode == "test" else resume.start_from(cfg, run_dir)
    if start is not None:
        resume.check_fits(start, datamodule.image_size, datamodule.channels)
        if writes and cfg.mode == "train":
            print(f"continuing from {start}")
    logger = TensorBoardLogger(str(run_dir), name="tb", version="", default_hp_metric=False)
    timer = Timer()
    if len(datamodule.val_set) == 0:
        trainer_args["limit_val_batches"] = 0
    if trainer_args.get("strategy") == "ddp" and not module.automatic_optimization:
        # A GAN step backpropagates one player's loss at a time, so each backward leaves the other player's parameters
        # without gradients; DDP must be told to look for them or it stops at the first step.
        trainer_args["strategy"] = "ddp_find_unused_parameters_true"
    # checkpoints/last.ckpt, rewritten (atomically) at each epoch's end: what resume=true continues from. (Lightning's
    # save_last alone writes only when training ends if no other checkpoint is kept.)
    checkpoints = ModelCheckpoint(
        dirpath=run_dir / "checkpoints", filename="last", save_top_k=1, enable_version_counter=False
    )
    trainer = pl.Trainer(
        **trainer_args,
        **module.trainer_overrides,
        logger=logger,
        callbacks=[timer, checkpoints, resume.RandomState()],
        default_root_dir=str(run_dir),
    )
    clock = time.perf_counter()
    if cfg.mode == "train":
        trainer.fit(module, datamodule, ckpt_path=start)
        fit_seconds = time.perf_counter() - clock
        context = trainer.precision_plugin.forward_context
        module.calibration = calibration.calibrate(module, datamodule, cfg.threshold_quantile, context)
        trainer.save_checkpoint(run_dir / "checkpoints" / "last.ckpt")  # with the threshold
        trainer.test(module, datamodule, verbose=False)
    else:  # mode=test: the checkpoint's weights and threshold, no training
        fit_seconds = 0.0
        trainer.test(module, datamodule, ckpt_path=start, verbose=False)
    if not trainer.is_global_zero:
        return {}

    method, data = group_choice(cfg.method), group_choice(cfg.data)
    outputs, metrics = module.test_outputs, module.test_metrics
    evaluation.write_scores(run_dir / "scores.csv", outputs, datamodule.sample_id)
    results = {
        "status": "ok",
        **run_facts(cfg),
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
        "mode": cfg.mode,
        "threshold": {"value": module.threshold, "given": cfg.threshold is not None, "calibrated": module.calibration},
        "processes": trainer.world_size,
        "continued_from": str(start) if start else None,
        "method_notes": module.method_notes(),
        "versions": evaluation.versions(),
        **config_of(cfg),
    }
    evaluation.write_results(run_dir / "results.json", results)
    evaluation.log_hparams(logger.experiment, hparams_of(cfg, method, data, results["normal_class"]), metrics)
    logger.finalize("success")
    auroc, threshold = metrics["image_auroc"], module.threshold
    at = (
        ""
        if threshold is None
        else (
            f" · at threshold {threshold:.4g}: FPR {metrics['image_fpr_at_threshold']:.3f}, "
            f"TPR {metrics['image_tpr_at_threshold']:.3f}"
        )
    )
    print(
        f"{method} on {data} (normal: {', '.join(results['normal_class_names'])}): image AUROC {auroc:.4f}{at} · "
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
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    with user_errors_in_one_line(FULL_ERRORS):  # here too, before Hydra's job runner adds its own line
        try:
            run(cfg)
        except Exception as error:
            if HydraConfig.get().mode != RunMode.MULTIRUN:
                raise
            # one job of a sweep: its failure is recorded (results.json) and reported, and the sweep goes on
            job = HydraConfig.get().job.num
            if (message := one_line(error)) is None:
                traceback.print_exc()
                message = f"{type(error).__name__}: {error}"
            print(f"adrun: job {job} failed: {message}", file=sys.stderr)


def main() -> None:
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let composition errors reach us, to be reported in one line
    with user_errors_in_one_line(FULL_ERRORS):
        hydra_main()
    # A sweep that went on past failed jobs says so in its exit status. adrun.sweep is loaded by Hydra for its
    # callback; importing it here would load torch for every `adrun --help`.
    sweep = sys.modules.get("adrun.sweep")
    if sweep is not None and sweep.UNFINISHED:
        print(f"adrun: error: {sweep.UNFINISHED}", file=sys.stderr)
        sys.exit(1)
