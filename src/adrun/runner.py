"""One way through a run: `prepare(cfg, run_dir) -> Plan` decides everything once, `execute(plan)` carries it out.

prepare: the mode, the final config (the command line merged with a checkpoint's), the resume verdict, the checkpoint
opened once, the Trainer's arguments; then the method is built, and the data knowing what the method needs, and set
up. Every error a user can cause is raised here, before anything is written into the run dir.

execute: on rank 0 it records the start (config.yaml, results.json `started`), starts this node's extra DDP ranks
(`python -m adrun.runner <plan file>`: they enter here, at `execute`, from the very plan rank 0 made), then fits,
calibrates the threshold on the validation normals and tests — or only tests, or predicts — and records the results.
A failure after prepare is recorded as `failed` in results.json and raised again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from adrun import ddp
from adrun.artefacts import RunDir, versions
from adrun.checkpoints import Checkpoint, RandomState, RunConfig, group_choice
from adrun.errors import UserError, check_choice, one_line
from adrun.hardware import ChannelsLast, apply_switches, check_precision, check_switches
from adrun.resolvers import MODES

# A resumed run may differ from the first in how it runs, not in what it computes:
MAY_CHANGE = ("resume", "ckpt", "threads", "hardware", "launcher", "data.num_workers", "data.on_device")
RUNNER_OWNS = ("max_epochs", "logger", "callbacks", "default_root_dir")  # Trainer arguments the runner sets itself
QUIET = (  # Lightning's advice that does not apply to in-memory tensor datasets or to our fixed layout
    ".*does not have many workers.*",
    ".*smaller than the logging interval.*",
    ".*Checkpoint directory .* exists and is not empty.*",
    ".*GPU available but not used.*",
    ".*`isinstance\\(treespec, LeafSpec\\)` is deprecated.*",
    ".*module\\(s\\) in eval mode at the start of training.*",  # frozen networks (teachers, G_old) are on purpose
    ".*The dirpath has changed from.*",  # mode=test restores a checkpoint made in another run dir
    ".*During `trainer.test\\(\\)`, it is recommended to use `Trainer\\(devices=1.*",  # tests gather and drop repeats
    ".*recommended to use `self.log\\('test/.*sync_dist=True.*",  # test metrics come from every rank's gathered scores
)
log = logging.getLogger("adrun")


@dataclass
class Plan:
    """What prepare decided; saved as JSON for the extra DDP ranks (without the built objects)."""

    mode: str
    config: dict  # resolved: the command line, merged with the checkpoint's config in test and predict modes
    run_dir: str
    facts: dict  # method, data, hardware, seed, overrides: what identifies the run in results.json
    trainer_args: dict  # the Trainer's arguments: config, hardware profile and the method's needs, merged once
    start: str | None = None  # the checkpoint to start from: resume's, ckpt= (train), the model (test, predict)
    finished: dict | None = None  # resume=true on a finished run: its results, and nothing to do
    built: tuple | None = field(default=None, repr=False, compare=False)  # (method, datamodule), built in prepare

    @property
    def cfg(self) -> DictConfig:
        return OmegaConf.create(self.config)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({k: v for k, v in asdict(self).items() if k != "built"}))

    @classmethod
    def load(cls, path: Path) -> Plan:
        return cls(**json.loads(path.read_text()))


# ---- prepare ------------------------------------------------------------------------------------------------------
def prepare(cfg: DictConfig, run_dir: Path, overrides: list[str] = (), hardware: str | None = None) -> Plan:
    """Decides the run and builds what it needs; raises a UserError for anything the user can fix, writing nothing."""
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
    plan = Plan(cfg.mode, config, str(run_dir), facts_of(cfg, overrides, hardware), trainer_arguments(cfg))
    plan.start = str(checkpoint.path) if checkpoint is not None else None
    plan.finished = resume_verdict(plan, RunDir(run_dir))
    if plan.finished is None and plan.mode == "predict":
        from adrun.predict import input_files

        input_files(cfg.input)
    if plan.finished is None:
        plan.built = build(plan, checkpoint)
    return plan


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


def facts_of(cfg: DictConfig, overrides: list[str], hardware: str | None) -> dict:
    """What identifies a run in results.json, whatever its status."""
    return {
        "method": group_choice(cfg.method._target_),
        "data": group_choice(cfg.data._target_),
        "hardware": hardware or cfg.hardware.trainer.accelerator,
        "seed": cfg.seed,
        "overrides": list(overrides),
    }


def record_failure(cfg: DictConfig, run_dir: Path, overrides: list[str], hardware: str | None, error: Exception):
    """A sweep job that failed its preparation: results.json says so, for the sweep's summary — unless the job's dir
    holds a run already (a sweep started again without resume=true), whose record is kept."""
    run = RunDir(run_dir)
    if run.results.exists():
        return
    run.path.mkdir(parents=True, exist_ok=True)
    run.write_results({"status": "failed", "error": describe(error), **facts_of(cfg, overrides, hardware)})


def check_top_level(cfg: DictConfig) -> None:
    """The root config's own keys, which no constructor checks."""
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
    from hydra.utils import get_class

    args = OmegaConf.to_container(cfg.trainer, resolve=True) | OmegaConf.to_container(
        cfg.hardware.trainer, resolve=True
    )
    for key in RUNNER_OWNS:
        if key in args:
            what = "the method's epoch keys (method.epochs, or its phases')" if key == "max_epochs" else "adrun"
            raise UserError(f"trainer.{key} is set by {what}; leave trainer.{key} out")
    method = group_choice(cfg.method._target_)
    for key, needed in get_class(cfg.method._target_).trainer_overrides.items():
        if key in args and args[key] != needed:
            raise UserError(
                f"trainer.{key}={args[key]!r} is set, but {method} needs {key}={needed!r}; leave trainer.{key} out"
            )
        args[key] = needed
    check_precision(args.get("precision", "32-true"), str(args.get("accelerator")))
    return args


def resume_verdict(plan: Plan, run: RunDir) -> dict | None:
    """The results of a finished run to skip (resume=true), None to run; a run dir that holds another run or another
    config is refused. Sets `plan.start` to the run dir's own checkpoint when resuming."""
    cfg = plan.cfg
    before = run.read_results()
    if not cfg.resume:
        if before is not None:
            raise UserError(
                f"{run.path} already holds a run (status {before.get('status')}); resume=true continues it (or skips "
                "it if it finished), or choose another hydra.run.dir"
            )
        return None
    check_same_config(plan, run)
    if before is not None and before.get("status") == "ok":
        return before
    if plan.mode == "train":
        if run.checkpoint.exists():
            plan.start = str(run.checkpoint)
        else:
            log.info(f"resume=true: no checkpoint in {run.checkpoints} yet; starting from the beginning")
    return None


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


def check_same_config(plan: Plan, run: RunDir) -> None:
    before = run.read_config()
    if before is None:
        return
    changed = config_differences(before, plan.config)
    if changed:
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        raise UserError(
            f"resume=true: {run.path} holds a run with another config ({shown} differ); resume it as it was"
        )


def build(plan: Plan, checkpoint=None) -> tuple:
    """Seeded: the method first (it says what it needs), then the data, built knowing it and set up. In test and
    predict modes the method takes the checkpoint's weights (and threshold) here."""
    import pytorch_lightning as pl
    import torch
    from hydra.utils import instantiate

    cfg = plan.cfg
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    module = instantiate(cfg.method, image_size=int(cfg.data.image_size), channels=int(cfg.data.channels))
    if plan.mode != "train":
        checkpoint = checkpoint or Checkpoint.open(plan.start)
        module.on_load_checkpoint(checkpoint.contents)
        module.load_state_dict(checkpoint.contents["state_dict"])
    apply_switches(module, cfg.hardware)
    if plan.mode == "predict":
        return module, None
    datamodule = instantiate(cfg.data, use_known_anomalies=module.uses_known_anomalies)
    datamodule.prepare_data()  # downloads where asked, before setup reads the files
    datamodule.setup("fit")
    return module, datamodule


# ---- execute ------------------------------------------------------------------------------------------------------
def execute(plan: Plan) -> dict:
    """Carries out the plan on this node's ranks; returns what results.json holds (rank 0; {} on the others)."""
    for pattern in QUIET:
        warnings.filterwarnings("ignore", pattern)
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    run, writes = RunDir(plan.run_dir), ddp.global_rank() == 0
    if plan.finished is not None:
        image_auroc = plan.finished.get("metrics", {}).get("image_auroc")
        log.info(f"resume=true: {run.path} finished before (image AUROC {image_auroc}); skipped")
        return plan.finished
    if plan.built is None:  # an extra DDP rank, from the plan file
        plan.built = build(plan)
    if writes:
        run.path.mkdir(parents=True, exist_ok=True)
    with run.log() if writes else contextlib.nullcontext():
        try:
            if writes:
                if not (plan.cfg.resume and run.config.exists()):  # a resumed run keeps the config it began with
                    run.write_config(plan.config)
                run.write_results({"status": "started", **plan.facts})
            return on_every_rank(plan, run, writes)
        except Exception as error:
            if writes:
                run.write_results({"status": "failed", "error": describe(error), **plan.facts})
            raise


def describe(error: BaseException) -> str:
    return one_line(error) or f"{type(error).__name__}: {error}"


def on_every_rank(plan: Plan, run: RunDir, writes: bool) -> dict:
    """Rank 0 is this process; the node's other ranks are started here when the run needs them and nothing else did."""
    processes = ddp.local_process_count(plan.trainer_args) if plan.mode != "predict" else 1
    children, plan_file = [], None
    if processes > 1 and not ddp.started_elsewhere():
        handle, name = tempfile.mkstemp(prefix="adrun-plan-", suffix=".json")
        os.close(handle)
        plan_file = Path(name)
        plan.save(plan_file)
        children = ddp.start_ranks([sys.executable, "-m", "adrun.runner", str(plan_file)], processes)
    try:
        results = predict(plan, run) if plan.mode == "predict" else fit_and_test(plan, run, writes)
    except BaseException:
        ddp.stop_ranks(children, failed=True)
        raise
    finally:
        if plan_file is not None:
            plan_file.unlink(missing_ok=True)
    ddp.stop_ranks(children, failed=False)
    return results


def build_trainer(plan: Plan, run: RunDir, callbacks: list, module, **args):
    """The one Trainer of every mode: the plan's arguments, the runner's own (`args`), TensorBoard in the run dir."""
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import TensorBoardLogger

    logger = TensorBoardLogger(str(run.path), name="tb", version="", default_hp_metric=False)
    trainer_args = plan.trainer_args | args
    if plan.cfg.hardware.get("channels_last", False):
        callbacks = [*callbacks, ChannelsLast()]
    if str(trainer_args.get("strategy")) == "ddp" and not module.automatic_optimization:
        # A GAN step backpropagates one player's loss at a time, so each backward leaves the other player's parameters
        # without gradients; DDP must be told to look for them or it stops at the first step.
        trainer_args["strategy"] = "ddp_find_unused_parameters_true"
    return pl.Trainer(**trainer_args, logger=logger, callbacks=callbacks, default_root_dir=str(run.path))


def shorter_keys(plan: Plan) -> str:
    """What shortens a long fit: the method's epoch keys, the data budget, a GPU."""
    epochs = [f"method.{k}" for k in plan.config["method"] if k.endswith("epochs") or k.endswith("epoch")]
    keys = ", ".join([*epochs, "data.train_subset", "data.image_size"])
    gpu = "" if plan.trainer_args.get("accelerator") == "gpu" else "; or run it on a GPU (hardware=gpu)"
    return f"shorten it with {keys}{gpu}"


def shorter_test_keys(plan: Plan) -> str:
    """What shortens a long test pass: the test budget, the method's per-image work (AnoGAN's Γ), a GPU."""
    work = [f"method.{k}" for k in ("iterations", "patch_sizes") if k in plan.config["method"]]
    gpu = "" if plan.trainer_args.get("accelerator") == "gpu" else "; or run it on a GPU (hardware=gpu)"
    return f"shorten it with {', '.join(['data.test_subset', *work])}{gpu}"


def fit_and_test(plan: Plan, run: RunDir, writes: bool) -> dict:
    from pytorch_lightning.callbacks import ModelCheckpoint

    from adrun.calibration import calibrate
    from adrun.eta import LongRunWarning
    from adrun.evaluation import Evaluator
    from adrun.timing import Timer

    module, datamodule = plan.built
    cfg = plan.cfg
    if writes and datamodule.left_out_known_anomalies:
        log.info(
            f"note: {plan.facts['method']} trains on normals only; {datamodule.left_out_known_anomalies} known "
            "anomalies left out of training"
        )
    if writes and plan.mode == "train" and plan.start:
        log.info(f"continuing from {plan.start}")
    timer, evaluator = Timer(), Evaluator(cfg.threshold)
    # checkpoints/last.ckpt, rewritten (atomically) at each epoch's end: what resume=true continues from. (Lightning's
    # save_last alone writes only when training ends if no other checkpoint is kept.)
    checkpoints = ModelCheckpoint(dirpath=run.checkpoints, filename="last", save_top_k=1, enable_version_counter=False)
    world = ddp.local_process_count(plan.trainer_args) * plan.trainer_args.get("num_nodes", 1)
    epochs = module.trainer_epochs(datamodule.batches_per_epoch(world))
    trainer = build_trainer(
        plan,
        run,
        [
            timer,
            evaluator,
            checkpoints,
            RandomState(),
            RunConfig(plan.config),
            LongRunWarning(shorter_keys(plan), shorter_test_keys(plan)),
        ],
        module,
        max_epochs=epochs,
        **({} if datamodule.has_validation else {"limit_val_batches": 0}),
    )
    clock = time.perf_counter()
    if plan.mode == "train":
        trainer.fit(module, datamodule, ckpt_path=plan.start)
        fit_seconds = time.perf_counter() - clock
        calibrate(module, datamodule, cfg.threshold_quantile, trainer.precision_plugin.forward_context)
        trainer.save_checkpoint(run.checkpoint)  # with the threshold
    else:  # mode=test: the checkpoint's weights and threshold (loaded in build), no training
        fit_seconds = 0.0
    trainer.test(module, datamodule, verbose=False)
    if not trainer.is_global_zero:
        return {}
    return record(plan, run, trainer, evaluator, fit_seconds, timer.rates())


def record(plan: Plan, run: RunDir, trainer, evaluator, fit_seconds: float, rates: dict) -> dict:
    """scores.csv, results.json, the HParams record and the run's last line."""
    from adrun.artefacts import log_hparams
    from adrun.calibration import threshold_facts

    module, datamodule = plan.built
    outputs, metrics = evaluator.outputs, evaluator.metrics
    run.write_scores(outputs, datamodule.sample_id, datamodule.sample_type)
    normal_class = list(datamodule.normal_classes)  # as the protocol resolved it (leave-one-out, Caltech)
    results = {
        "status": "ok",
        **plan.facts,
        "normal_class": normal_class,
        "normal_class_names": [datamodule.classes[c] for c in normal_class],
        "metrics": {key: None if value != value else value for key, value in metrics.items()},  # NaN → null
        "counts": {
            "train": len(datamodule.train_set),
            "val": len(datamodule.val_set),
            "test": len(outputs.labels),
            "test_anomalous": int(outputs.labels.sum()),
        },
        "timings": {"fit_s": fit_seconds, **rates},
        "mode": plan.mode,
        "threshold": threshold_facts(module, plan.config["threshold"], plan.config["threshold_quantile"]),
        "processes": trainer.world_size,
        "continued_from": plan.start,
        "method_notes": module.method_notes(),
        "versions": versions(),
    }
    run.write_results(results)
    log_hparams(trainer.logger.experiment, hparams_of(plan, normal_class), metrics)
    trainer.logger.finalize("success")
    threshold = evaluator.threshold
    at = (
        ""
        if threshold is None
        else (
            f" · at threshold {threshold:.4g}: FPR {metrics['image_fpr_at_threshold']:.3f}, "
            f"TPR {metrics['image_tpr_at_threshold']:.3f}"
        )
    )
    pixel = "".join(
        f" · {name} {metrics[key]:.4f}"
        for key, name in (("pixel_auroc", "pixel AUROC"), ("pixel_aupro", "AUPRO"))
        if metrics.get(key) == metrics.get(key) and key in metrics  # present and not NaN
    )
    log.info(
        f"{plan.facts['method']} on {plan.facts['data']} (normal: {datamodule.normal_description(normal_class)}): "
        f"image AUROC {metrics['image_auroc']:.4f}{pixel}{at} · results in {run.path} · view: tensorboard --logdir "
        f"{run.tb}"
    )
    return results


def hparams_of(plan: Plan, normal_class: list[int]) -> dict:
    """What the HParams tab compares: the choices, the seed, the protocol, and the method's scalar hyperparameters."""
    cfg = plan.cfg
    params = {"method": plan.facts["method"], "data": plan.facts["data"], "seed": cfg.seed}
    params |= {"normal_class": str(normal_class), "data.image_size": cfg.data.image_size}
    for key in ("train_subset", "test_subset"):
        params[f"data.{key}"] = str(cfg.data[key])
    params["data.channels"] = cfg.data.channels
    for key, value in plan.config["method"].items():
        if key != "_target_" and isinstance(value, int | float | str | bool):
            params[f"method.{key}"] = value
    return params


def predict(plan: Plan, run: RunDir) -> dict:
    from adrun import predict as predicting

    module, _ = plan.built
    trainer = build_trainer(plan, run, [], module, devices=1, num_nodes=1, strategy="auto", enable_progress_bar=False)
    return predicting.predict(plan.cfg, module, trainer, run, plan.start)


def run(cfg: DictConfig, run_dir: Path, overrides: list[str] = (), hardware: str | None = None) -> dict:
    """prepare, then execute: what tests and the CLI call."""
    return execute(prepare(cfg, Path(run_dir), overrides, hardware))


if __name__ == "__main__":  # an extra DDP rank: `python -m adrun.runner <plan file>`
    execute(Plan.load(Path(sys.argv[1])))
