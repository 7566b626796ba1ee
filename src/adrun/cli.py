"""`adrun`: the Hydra entry point. It composes the config, hands it to the runner, and turns errors into exit codes.

Errors a user can cause (unknown method, a typo in a key, a missing data root, …) end in one line on stderr and exit
status 2, and a run that fails its preparation leaves no run dir; anything else is a bug and keeps its traceback.
HYDRA_FULL_ERROR=1 shows Hydra's own report instead. In a sweep a failed job is recorded and reported, the sweep goes
on, and `adrun` exits 1 at its end.
"""

from __future__ import annotations

import os
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path

import hydra
from omegaconf import DictConfig

import adrun.resolvers  # noqa: F401  (registers ${adrun.cpus:} and co. for conf/)
from adrun.errors import IncompleteSweep, one_line

FULL_ERRORS = os.environ.get("HYDRA_FULL_ERROR") == "1"  # the user asked for Hydra's full report


def config_dir() -> Path:
    """conf/ as shipped inside the wheel (adrun/conf), else the source tree's (editable installs, checkouts)."""
    shipped = Path(__file__).resolve().parent / "conf"
    return shipped if shipped.is_dir() else Path(__file__).resolve().parents[2] / "conf"


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


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def hydra_main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from adrun import runner
    from adrun.artefacts import RunDir

    hydra_cfg = HydraConfig.get()
    run_dir, sweeping = Path(hydra_cfg.runtime.output_dir), hydra_cfg.mode == RunMode.MULTIRUN
    overrides, choices = list(hydra_cfg.overrides.task), hydra_cfg.runtime.choices
    with user_errors_in_one_line(FULL_ERRORS):  # here too, before Hydra's job runner adds its own line
        fresh = RunDir(run_dir).is_fresh()
        try:
            runner.run(cfg, run_dir, overrides, choices.get("hardware"), choices.get("method"))
        except Exception as error:  # once the run has started, execute has recorded it in results.json
            refused = RunDir(run_dir).is_fresh()
            if not sweeping:
                if fresh and refused:  # nothing of a run: no dir left behind
                    RunDir(run_dir).remove_refused()
                raise
            if refused:
                runner.record_failure(cfg, run_dir, overrides, choices.get("hardware"), error)
            report_job_failure(hydra_cfg.job.num, error)


def report_job_failure(job: int, error: Exception) -> None:
    """One job of a sweep failed: said on stderr (a bug with its traceback), and the sweep goes on."""
    if (message := one_line(error)) is None:
        traceback.print_exc()
        message = f"{type(error).__name__}: {error}"
    print(f"adrun: job {job} failed: {message}", file=sys.stderr)


@contextmanager
def with_checkpoint_method(argv: list[str]):
    """`mode=test|predict ckpt=…` without `method=`: the checkpoint's method, so that its keys (`method.iterations`)
    are known when Hydra composes. A method that is not one of adrun's own (a user's) is composed from the config the
    checkpoint carries, put in Hydra's config store while the block runs: its yaml is not needed again, only its
    importable class. Yields the arguments to compose with."""
    keys = dict(arg.split("=", 1) for arg in argv if "=" in arg and not arg.startswith("-"))
    if keys.get("mode") not in ("test", "predict") or "method" in keys or "," in keys.get("ckpt", ","):
        yield argv  # not a later use of one checkpoint (a sweep over several gives method= itself)
        return
    from hydra.core.config_store import ConfigStore

    from adrun.checkpoints import Checkpoint

    checkpoint = Checkpoint.open(keys["ckpt"])
    stored = not (config_dir() / "method" / f"{checkpoint.method}.yaml").exists()
    if stored:
        ConfigStore.instance().store(group="method", name=checkpoint.method, node=checkpoint.config["method"])
    try:
        yield [*argv, f"method={checkpoint.method}"]
    finally:
        if stored:
            ConfigStore.instance().repo["method"].pop(f"{checkpoint.method}.yaml", None)


def main() -> None:
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let composition errors reach us, to be reported in one line
    try:
        with user_errors_in_one_line(FULL_ERRORS), with_checkpoint_method(sys.argv[1:]) as argv:
            sys.argv[1:] = argv
            hydra_main()
    except IncompleteSweep as incomplete:
        print(f"adrun: error: {incomplete.message}", file=sys.stderr)
        sys.exit(1)
