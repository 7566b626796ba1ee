"""The run's loggers, and what reaches them: `logger=` (conf/logger/) built into Lightning loggers, and the figures,
text and hyperparameters a run sends to every one of them through that logger's own API.

`build_loggers(config, run_dir)` instantiates each entry of `config["logger"]` (name → {_target_, …}; none when the
key is absent, `~logger`) and fills what depends on the run dir when left null:
- TensorBoard: `<run dir>/tb`; CSV: `<run dir>/csv/metrics.csv` and `hparams.yaml`;
- MLflow: `tracking_uri` null (and no $MLFLOW_TRACKING_URI, read by conf/logger/mlflow.yaml) is a store in the run
  dir, `sqlite:///<run dir>/mlflow.db` with the artifacts in `<run dir>/mlartifacts` (MLflow 3 refuses a plain file
  store unless MLFLOW_ALLOW_FILE_STORE=true); the run is named `<method>/<data>/seed=<seed>`;
- W&B: `save_dir` the run dir, the same run name, and `offline` null means offline unless the user is logged in
  ($WANDB_API_KEY, or `wandb login`'s netrc entry) or $WANDB_MODE decides.
mlflow and wandb are optional extras: a missing one is a one-line UserError naming it.

Every figure (`log_figure`) is first saved as `<run dir>/figures/<tag, '/' as '__'>.png` whatever the loggers, then
sent to TensorBoard as an image, to MLflow as an artifact (`figures/<name>.png`), to W&B as a `wandb.Image`; CSV has no
image API: the PNG is its record. Rank 0 only: the other DDP ranks' loggers are Lightning's dummies anyway (and they
build no MLflow logger at all: its client opens, and may create, the store as it is made).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pytorch_lightning.loggers import CSVLogger, Logger, MLFlowLogger, TensorBoardLogger, WandbLogger

from adrun import ddp
from adrun.errors import UserError

log = logging.getLogger("adrun")

EXTRAS = ((MLFlowLogger, "mlflow"), (WandbLogger, "wandb"))  # logger class → the package (= the extra) it needs


# ---- building ------------------------------------------------------------------------------------------------------
def build_loggers(config: dict, run_dir: Path) -> list[Logger]:
    """The loggers `config["logger"]` names, their run-dir paths filled in; [] when it names none."""
    from hydra.utils import instantiate

    run_dir = Path(run_dir)
    built = []
    for name, entry in (config.get("logger") or {}).items():
        if entry is None:  # logger.csv=null: that one left out
            continue
        cls = logger_class(name, entry)
        check_package(name, cls)
        if issubclass(cls, MLFlowLogger) and ddp.global_rank() != 0:
            continue  # its client opens (and may create) the store when made: rank 0's alone, which logs anyway
        arguments = {**entry, **run_dir_defaults(cls, entry, run_dir, run_name(config))}
        built.append(instantiate(arguments, _convert_="all"))  # plain dicts (MLflow's tags) rather than DictConfigs
    return built


def check_extras(config: dict) -> None:
    """What `build_loggers` would refuse for a missing extra, without building anything: for a check before a run dir
    is written."""
    for name, entry in (config.get("logger") or {}).items():
        if entry is not None:
            check_package(name, logger_class(name, entry))


def logger_class(name: str, entry: dict) -> type:
    """The class an entry names (`_target_`), or one line saying what is wrong with it."""
    from hydra.utils import get_class

    if "_target_" not in entry:
        raise UserError(f"logger.{name} has no _target_ (a Lightning logger class, e.g. see conf/logger/csv.yaml)")
    try:
        cls = get_class(entry["_target_"])
    except Exception as error:
        reason = " ".join(str(error).split())
        raise UserError(f"logger.{name}._target_={entry['_target_']}: cannot import it ({reason})") from None
    if not (isinstance(cls, type) and issubclass(cls, Logger)):
        raise UserError(f"logger.{name}._target_={entry['_target_']} is not a Lightning logger class")
    return cls


def check_package(name: str, cls: type) -> None:
    """A logger whose package is an extra that is not installed: one line naming the extra."""
    for logger_class, package in EXTRAS:
        if issubclass(cls, logger_class):
            try:
                __import__(package)
            except ImportError:
                raise UserError(f'logger={name} needs the {package} package: pip install -e ".[{package}]"') from None


def run_name(config: dict) -> str:
    """`<method>/<data>/seed=<seed>`: what a tracker's run list shows."""
    method, data = (
        str((config.get(key) or {}).get("_target_", f"{key}.")).split(".")[-2] for key in ("method", "data")
    )
    return f"{method}/{data}/seed={config.get('seed')}"


def run_dir_defaults(cls: type, entry: dict, run_dir: Path, name: str) -> dict:
    """The arguments of `cls` left null that the run dir decides (a value the user set is kept)."""
    unset = {key for key, value in entry.items() if value is None}
    if issubclass(cls, TensorBoardLogger | CSVLogger):
        return {"save_dir": str(run_dir)} if "save_dir" in unset or "save_dir" not in entry else {}
    if issubclass(cls, MLFlowLogger):
        filled = {"run_name": name} if "run_name" in unset else {}
        quiet_mlflow_setup()
        if entry.get("tracking_uri") is None:
            filled["tracking_uri"] = f"sqlite:///{run_dir.resolve() / 'mlflow.db'}"
            if entry.get("artifact_location") is None:
                filled["artifact_location"] = str(run_dir.resolve() / "mlartifacts")
        return filled
    if issubclass(cls, WandbLogger):
        filled = {"name": name} if "name" in unset else {}
        if entry.get("save_dir") is None:
            filled["save_dir"] = str(run_dir)
        offline = entry.get("offline")
        if offline is None and not os.environ.get("WANDB_MODE"):
            offline = not wandb_logged_in()
        # wandb.init(mode="offline") rather than WandbLogger(offline=True), which sets WANDB_MODE for the whole process
        filled["offline"] = False
        if offline:
            filled["mode"] = "offline"
        return filled
    return {}


def quiet_mlflow_setup() -> None:
    """A new store in every run dir: MLflow's table creation and Lightning's "experiment … not found. Creating it." are
    what is expected, not news."""
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    logging.getLogger("pytorch_lightning.loggers.mlflow").addFilter(not_creating_news)  # the same filter: added once


def not_creating_news(record: logging.LogRecord) -> bool:
    return "not found. Creating it." not in record.getMessage()


def wandb_logged_in() -> bool:
    """$WANDB_API_KEY, or the netrc entry `wandb login` writes for the W&B host."""
    import netrc
    from urllib.parse import urlparse

    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


# ---- what reaches them ---------------------------------------------------------------------------------------------
def figure_path(run_dir: Path | str, tag: str) -> Path:
    """Where a figure's PNG is kept: `<run dir>/figures/<tag, '/' as '__'>.png`."""
    from adrun.artefacts import RunDir

    return RunDir(run_dir).figures / f"{tag.replace('/', '__')}.png"


def log_figure(trainer, tag: str, figure, step: int) -> Path | None:
    """A matplotlib Figure saved as a PNG in the run dir (always), then sent to every logger; rank 0 only. Returns
    the PNG's path (None on other ranks)."""
    from adrun import figures

    if not trainer.is_global_zero:
        return None
    path = figure_path(trainer.default_root_dir, tag)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas = figures.save_png(figure, path)
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(tag, figures.image(figure, drawn=canvas), step)  # drawn once, for the PNG
        elif isinstance(logger, MLFlowLogger):
            logger.experiment.log_artifact(logger.run_id, str(path), "figures")
        elif isinstance(logger, WandbLogger):
            logger.log_image(key=tag, images=[str(path)], step=step)
        # CSV (and a logger without an image API): the PNG in the run dir is the record
    return path


def log_pr_curve(trainer, tag: str, labels, scores01, step: int) -> None:
    """TensorBoard's own interactive PR curve (its threshold axis is `scores01`, scores mapped into [0, 1]); the other
    loggers have no such record and get the PR figure (`figures.pr_figure`) instead."""
    if trainer.is_global_zero:
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_pr_curve(tag, labels, scores01, step)


def log_text(trainer, tag: str, text: str, step: int) -> None:
    """A note (the PR curve's threshold axis) to every logger with a text record; rank 0 only."""
    if not trainer.is_global_zero:
        return
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_text(tag, text, step)
        elif isinstance(logger, MLFlowLogger):
            logger.experiment.log_text(logger.run_id, text, f"text/{tag.replace('/', '__')}.txt")
        elif isinstance(logger, WandbLogger):
            logger.experiment.summary[tag] = text


def log_hparams(trainer, hparams: dict, metrics: dict[str, float]) -> None:
    """The run's hyperparameters beside its final metrics: TensorBoard's HParams record (artefacts.log_hparams); for
    the others `log_hyperparams` (their `test/*` metrics were logged as Lightning logged them)."""
    from adrun.artefacts import log_hparams as tensorboard_hparams

    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            tensorboard_hparams(logger.experiment, hparams, metrics)
        else:
            logger.log_hyperparams(hparams)


def finish(trainer, status: str = "success") -> None:
    """Every logger finalised (CSV writes its files, MLflow ends its run); a W&B run is finished too, so that the next
    run in this process starts its own, and an offline one says how to upload it."""
    for logger in trainer.loggers:
        logger.finalize(status)
        if isinstance(logger, WandbLogger) and trainer.is_global_zero:
            run = logger.experiment
            offline = getattr(getattr(run, "settings", None), "mode", "") in ("offline", "dryrun")
            run_dir = getattr(run, "dir", None)
            run.finish(exit_code=0 if status == "success" else 1)
            if offline and run_dir:
                log.info(f"W&B ran offline: upload with `wandb sync {Path(run_dir).parent}`")


def where(loggers: list[Logger]) -> str:
    """How to look at what the loggers hold, for a run's last line: `view: tensorboard --logdir …` and co."""
    shown = []
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            shown.append(f"tensorboard --logdir {Path(logger.log_dir)}")
        elif isinstance(logger, CSVLogger):
            shown.append(str(Path(logger.log_dir) / "metrics.csv"))
        elif isinstance(logger, MLFlowLogger):
            uri = logger._tracking_uri
            shown.append(f"mlflow ui --backend-store-uri {uri}" if not uri.startswith("http") else uri)
        elif isinstance(logger, WandbLogger):
            shown.append("W&B")
    return "; ".join(shown)
