"""`execute(plan)`: a prepared run carried out — build, fit, calibrate, test, record — on every rank of this node.

`adrun.plan.prepare` decided everything; here the method is built first (it says what it needs: uses_known_anomalies,
trainer_overrides, trainer_epochs), then the data knowing it, seeded, by one path for rank 0 and for the extra DDP ranks
(`python -m adrun.runner <plan file>`, started here from the very plan rank 0 holds). Nothing is written before the
build succeeds, so a refused run leaves no run dir; after it, a failure is recorded as `failed` in results.json and
raised again. The results' layout and the run's last line are `adrun.results`'.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from pathlib import Path

from omegaconf import DictConfig

from adrun import ddp
from adrun.artefacts import RunDir
from adrun.checkpoints import Checkpoint, RandomState, RunConfig
from adrun.errors import epoch_keys, one_line
from adrun.hardware import ChannelsLast, apply_switches
from adrun.plan import Plan, facts_of, prepare

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


def execute(plan: Plan) -> dict:
    """Carries out the plan on this node's ranks; returns what results.json holds (rank 0; {} on the others)."""
    quiet_lightning()
    run, writes = RunDir(plan.run_dir), ddp.global_rank() == 0
    if plan.finished is not None:
        image_auroc = plan.finished.get("metrics", {}).get("image_auroc")
        log.info(f"resume=true: {run.path} finished before (image AUROC {image_auroc}); skipped")
        return plan.finished
    module, datamodule = build(plan)  # a user's error here leaves nothing behind
    if writes:
        record_start(plan, run)
    trainer = None
    with run.log() if writes else contextlib.nullcontext():
        try:
            with extra_ranks(plan):
                if plan.mode == "predict":
                    return predict(plan, run, module, datamodule)
                timer, evaluator = timing_and_evaluation(plan)
                trainer = build_trainer(plan, run, module, fit_callbacks(plan, run, timer, evaluator), datamodule)
                say_what_trains(plan, datamodule, writes)
                fit_seconds = 0.0  # mode=test: the checkpoint's weights and threshold, no training
                if plan.mode == "train":
                    clock = time.perf_counter()
                    trainer.fit(module, datamodule, ckpt_path=plan.start)
                    fit_seconds = time.perf_counter() - clock
                    calibrate(plan, module, datamodule, trainer)
                elif recalibrates(plan):
                    calibrate(plan, module, datamodule, trainer)
                trainer.test(module, datamodule, verbose=False)
                if not trainer.is_global_zero:
                    return {}
                from adrun.results import record

                return record(plan, run, trainer, evaluator, (module, datamodule), fit_seconds, timer.rates())
        except Exception as error:
            if writes:
                run.write_results({"status": "failed", "error": describe(error), **plan.facts})
            if trainer is not None:  # the loggers' runs end as failed, not left open for the next run in this process
                with contextlib.suppress(Exception):
                    from adrun import loggers

                    loggers.finish(trainer, "failed")
            raise


def run(
    cfg: DictConfig, run_dir: Path, overrides: list[str] = (), hardware: str | None = None, method: str | None = None
) -> dict:
    """prepare, then execute: the whole run, as the CLI and `adrun.run` do it."""
    return execute(prepare(cfg, Path(run_dir), overrides, hardware, method))


def quiet_lightning() -> None:
    for pattern in QUIET:
        warnings.filterwarnings("ignore", pattern)
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)


def build(plan: Plan) -> tuple:
    """Seeded: the method first (it says what it needs), then the data, built knowing it and set up. In test and
    predict modes the method takes the checkpoint's weights (and threshold) here. A user's own method is asked to score
    two images before anything trains, so a broken score contract is one line now rather than after training."""
    import pytorch_lightning as pl
    import torch
    from hydra.utils import instantiate

    from adrun import contract

    cfg = plan.cfg
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    module = instantiate(cfg.method, image_size=int(cfg.data.image_size), channels=int(cfg.data.channels))
    if plan.mode != "train":
        checkpoint = Checkpoint.open(plan.start)
        module.on_load_checkpoint(checkpoint.contents)
        module.load_state_dict(checkpoint.contents["state_dict"])
    apply_switches(module, cfg.hardware)
    if plan.mode == "predict" and not recalibrates(plan):
        return module, None
    datamodule = instantiate(cfg.data, use_known_anomalies=module.uses_known_anomalies)
    datamodule.prepare_data()  # downloads where asked, before setup reads the files
    datamodule.setup("fit")
    if not cfg.method._target_.startswith(contract.BUILT_IN):
        contract.probe(module, datamodule, plan.facts["method"])
    return module, datamodule


def record_start(plan: Plan, run: RunDir) -> None:
    """The run dir, its config (a resumed run keeps the one it began with) and results.json `started`."""
    run.path.mkdir(parents=True, exist_ok=True)
    if not (plan.cfg.resume and run.config.exists()):
        run.write_config(plan.config)
    run.write_results({"status": "started", **plan.facts})


def describe(error: BaseException) -> str:
    return one_line(error) or f"{type(error).__name__}: {error}"


def record_failure(cfg: DictConfig, run_dir: Path, overrides: list[str], hardware: str | None, error: Exception):
    """A sweep job refused before it ran: results.json says so, for the sweep's summary — unless the job's dir holds a
    run already (a sweep started again without resume=true), whose record is kept."""
    run = RunDir(run_dir)
    if run.results.exists():
        return
    run.path.mkdir(parents=True, exist_ok=True)
    facts = facts_of(cfg, overrides, hardware) if "method" in cfg and "_target_" in cfg.method else {}
    run.write_results({"status": "failed", "error": describe(error), **facts})


@contextlib.contextmanager
def extra_ranks(plan: Plan):
    """This node's other DDP ranks, started from the plan (as JSON) when the run needs them and nothing else started
    them; stopped when the block ends, as failed if it raised."""
    processes = ddp.local_process_count(plan.trainer_args) if plan.mode != "predict" else 1
    if processes <= 1 or ddp.started_elsewhere():
        yield
        return
    children = ddp.start_ranks("adrun.runner:execute_json", plan.to_json(), processes)
    try:
        yield
    except BaseException:
        ddp.stop_ranks(children, failed=True)
        raise
    ddp.stop_ranks(children, failed=False)


def timing_and_evaluation(plan: Plan) -> tuple:
    from adrun.evaluation import Evaluator
    from adrun.timing import Timer

    return Timer(), Evaluator(plan.config["threshold"])


def fit_callbacks(plan: Plan, run: RunDir, timer, evaluator) -> list:
    """Timing, evaluation, checkpoints/last.ckpt (rewritten atomically at each epoch's end: what resume=true continues
    from; Lightning's save_last alone writes only at the end when no other checkpoint is kept), the random state and
    the config in every checkpoint, and the long-run estimate."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    from adrun.eta import LongRunWarning

    checkpoints = ModelCheckpoint(dirpath=run.checkpoints, filename="last", save_top_k=1, enable_version_counter=False)
    eta = LongRunWarning(shorter_keys(plan), shorter_test_keys(plan))
    return [timer, evaluator, checkpoints, RandomState(), RunConfig(plan.config, plan.facts["method"]), eta]


def build_trainer(plan: Plan, run: RunDir, module, callbacks: list, datamodule=None, **args):
    """The one Trainer of every mode: the plan's arguments, the runner's own (`args`; with data, max_epochs from the
    method), the loggers `logger=` chose (adrun.loggers)."""
    import pytorch_lightning as pl

    from adrun.loggers import build_loggers

    logger = build_loggers(plan.config, run.path)  # logger= (conf/logger/): TensorBoard in <run dir>/tb by default
    trainer_args = plan.trainer_args | args
    if datamodule is not None:
        world = ddp.local_process_count(plan.trainer_args) * plan.trainer_args.get("num_nodes", 1)
        trainer_args["max_epochs"] = module.trainer_epochs(datamodule.batches_per_epoch(world))
        if not datamodule.has_validation:
            trainer_args["limit_val_batches"] = 0
    if plan.cfg.hardware.get("channels_last", False):
        callbacks = [*callbacks, ChannelsLast()]
    if str(trainer_args.get("strategy")) == "ddp" and not module.automatic_optimization:
        # A GAN step backpropagates one player's loss at a time, so each backward leaves the other player's parameters
        # without gradients; DDP must be told to look for them or it stops at the first step.
        trainer_args["strategy"] = "ddp_find_unused_parameters_true"
    return pl.Trainer(**trainer_args, logger=logger, callbacks=callbacks, default_root_dir=str(run.path))


def say_what_trains(plan: Plan, datamodule, writes: bool) -> None:
    if writes and datamodule.left_out_known_anomalies:
        log.info(
            f"note: {plan.facts['method']} trains on normals only; {datamodule.left_out_known_anomalies} known "
            "anomalies left out of training"
        )
    if writes and plan.mode == "train" and plan.start:
        log.info(f"continuing from {plan.start}")
    args = plan.trainer_args
    ddp_asked = str(args.get("strategy", "")).startswith("ddp") and args.get("num_nodes", 1) == 1
    if writes and ddp_asked and ddp.local_process_count(args) == 1 and not ddp.started_elsewhere():
        log.info(
            f"note: hardware={plan.facts['hardware']} asks for DDP, but this run has one device, so it trains in one "
            "process (launcher=local gives each job one device)"
        )


def recalibrates(plan: Plan) -> bool:
    """A re-test or predict whose method keys change the score (`method.score_norm=mse`) takes the threshold again from
    the training data's validation normals: the checkpoint's was a quantile of the other score. Predict with a given
    `threshold=` needs no calibrated one, so it does not read the training data."""
    return bool(plan.rescored) and (plan.mode == "test" or plan.config.get("threshold") is None)


def calibrate(plan: Plan, module, datamodule, trainer) -> None:
    """The threshold from the validation normals: after training, saved with the weights in checkpoints/last.ckpt;
    in test and predict modes where `recalibrates`, taken again as training took it."""
    from adrun.calibration import calibrate as calibrated

    module.to(trainer.strategy.root_device)  # where fit left it; a re-test's module has not been moved yet
    calibrated(module, datamodule, plan.config["threshold_quantile"], trainer.precision_plugin.forward_context)
    if plan.mode == "train":
        trainer.save_checkpoint(RunDir(plan.run_dir).checkpoint)
        return
    keys = ", ".join(f"method.{k}" for k in plan.rescored)
    normals = int(module.threshold_normals)
    log.info(f"{keys} unlike the checkpoint's: the threshold is calibrated again on its {normals} validation normals")


def shorter_keys(plan: Plan) -> str:
    """What shortens a long fit: the method's epoch keys, the data budget, a GPU."""
    epochs = [f"method.{k}" for k in epoch_keys(plan.config["method"])]
    keys = ", ".join([*epochs, "data.train_subset", "data.image_size"])
    gpu = "" if plan.trainer_args.get("accelerator") == "gpu" else "; or run it on a GPU (hardware=gpu)"
    return f"shorten it with {keys}{gpu}"


def shorter_test_keys(plan: Plan) -> str:
    """What shortens a long test pass: the test budget, the method's per-image work (AnoGAN's Γ), a GPU."""
    work = [f"method.{k}" for k in ("iterations", "patch_sizes") if k in plan.config["method"]]
    gpu = "" if plan.trainer_args.get("accelerator") == "gpu" else "; or run it on a GPU (hardware=gpu)"
    return f"shorten it with {', '.join(['data.test_subset', *work])}{gpu}"


def predict(plan: Plan, run: RunDir, module, datamodule) -> dict:
    from adrun import predict as predicting

    trainer = build_trainer(plan, run, module, [], devices=1, num_nodes=1, strategy="auto", enable_progress_bar=False)
    if datamodule is not None:  # recalibrates: the training data's validation normals, read for the new score
        calibrate(plan, module, datamodule, trainer)
    return predicting.predict(plan.cfg, module, trainer, run, plan.start)


def execute_json(plan: str) -> dict:
    """An extra DDP rank's entry (`ddp.start_ranks`): the plan rank 0 made, as JSON."""
    return execute(Plan.from_json(plan))
