"""`adrun`: the Hydra entry point. It composes the config, hands it to the runner, and turns errors into exit codes.

Errors a user can cause (unknown method, a typo in a key, a missing data root, …) end in one line on stderr and exit
status 2, and a run that fails its preparation leaves no run dir; anything else is a bug and keeps its traceback.
HYDRA_FULL_ERROR=1 shows Hydra's own report instead. In a sweep a failed job is recorded and reported, the sweep goes
on, and `adrun` exits 1 at its end.
"""

from __future__ import annotations

import os
import shutil
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
    overrides, hardware = list(hydra_cfg.overrides.task), hydra_cfg.runtime.choices.hardware
    with user_errors_in_one_line(FULL_ERRORS):  # here too, before Hydra's job runner adds its own line
        fresh = RunDir(run_dir).is_fresh()
        try:
            plan = runner.prepare(cfg, run_dir, overrides, hardware)
        except Exception as error:
            if not sweeping:
                if fresh:  # nothing of a run: no dir left behind
                    shutil.rmtree(run_dir, ignore_errors=True)
                raise
            runner.record_failure(cfg, run_dir, overrides, hardware, error)
            return report_job_failure(hydra_cfg.job.num, error)
        try:
            runner.execute(plan)
        except Exception as error:  # execute has recorded it in results.json
            if not sweeping:
                raise
            report_job_failure(hydra_cfg.job.num, error)


def report_job_failure(job: int, error: Exception) -> None:
    """One job of a sweep failed: said on stderr (a bug with its traceback), and the sweep goes on."""
    if (message := one_line(error)) is None:
        traceback.print_exc()
        message = f"{type(error).__name__}: {error}"
    print(f"adrun: job {job} failed: {message}", file=sys.stderr)


def with_checkpoint_method(argv: list[str]) -> list[str]:
    """`mode=test|predict ckpt=…` without `method=`: the checkpoint's method, so that its keys (`method.iterations`)
    are known when Hydra composes."""
    keys = dict(arg.split("=", 1) for arg in argv if "=" in arg and not arg.startswith("-"))
    if keys.get("mode") not in ("test", "predict") or "method" in keys or "," in keys.get("ckpt", ","):
        return argv  # not a later use of one checkpoint (a sweep over several gives method= itself)
    from adrun.checkpoints import Checkpoint

    return [*argv, f"method={Checkpoint.open(keys['ckpt']).method}"]


def main() -> None:
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let composition errors reach us, to be reported in one line
    try:
        with user_errors_in_one_line(FULL_ERRORS):
            sys.argv[1:] = with_checkpoint_method(sys.argv[1:])
            hydra_main()
    except IncompleteSweep as incomplete:
        print(f"adrun: error: {incomplete.message}", file=sys.stderr)
        sys.exit(1)
