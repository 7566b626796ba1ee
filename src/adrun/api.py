"""adrun from Python: `run(overrides) -> Run`, `load(run_dir) -> Run`, `report(paths) -> str`.

    import adrun
    a = adrun.run(["method=ganomaly", "method.epochs=3"])       # what `adrun method=ganomaly method.epochs=3` does
    a.metrics["image_auroc"], a.run_dir, a.scores["score"]
    print(adrun.report([a.run_dir, b.run_dir]))                   # what `adrun-report` prints

The same code path as the CLI: Hydra composes the same configs with the same overrides (its compose API; config
search paths with `hydra.searchpath=[file://DIR]`), then `plan.prepare` → `runner.execute`; the overrides are recorded
in results.json as the CLI records them. Errors a user can fix raise `adrun.UserError` carrying the CLI's one-line
message, and a refused run leaves no run dir. Single runs only: sweeps are the CLI's (`adrun -m`, Hydra's launchers).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from adrun.errors import UserError, one_line


@dataclass(frozen=True)
class Run:
    """A run dir, read: its results.json (`results`, `metrics`), its resolved config and its per-sample scores."""

    run_dir: Path
    results: dict
    config: dict

    @property
    def metrics(self) -> dict:
        return self.results.get("metrics", {})

    @cached_property
    def scores(self) -> dict:
        """scores.csv as columns (numpy arrays): index, id, label, type, score, score_<variant>."""
        from adrun.artefacts import RunDir

        scores = RunDir(self.run_dir).read_scores()
        if scores is None:
            raise UserError(f"{self.run_dir} has no scores.csv (status {self.results.get('status')})")
        return scores


def run(overrides: list[str] = (), run_dir: str | Path | None = None) -> Run:
    """One run, as `adrun <overrides>` makes it (in `run_dir`, else where the CLI would put it); returns it read."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import HydraException
    from omegaconf import open_dict

    from adrun import runner
    from adrun.artefacts import RunDir
    from adrun.cli import with_checkpoint_method

    overrides = list(overrides)
    try:
        with with_checkpoint_method(overrides) as composing:
            cfg = compose(composing)
    except (HydraException, ValueError) as error:
        raise UserError(one_line(error) or str(error)) from error
    choices = cfg.hydra.runtime.choices
    if run_dir is None:  # conf/config.yaml's hydra.run.dir, resolved as Hydra's app resolves it for this run
        HydraConfig.instance().set_config(cfg)
        run_dir = cfg.hydra.run.dir
    with open_dict(cfg):
        del cfg["hydra"]
    run_dir = Path(run_dir)
    fresh = RunDir(run_dir).is_fresh()
    try:
        runner.run(cfg, run_dir, overrides, choices.get("hardware"), choices.get("method"))
    except Exception as error:
        if fresh and RunDir(run_dir).is_fresh():  # refused before anything was written: no dir left behind
            RunDir(run_dir).remove_refused()
        message = one_line(error)
        if message is None or isinstance(error, UserError):
            raise
        raise UserError(message) from error
    return load(run_dir)


def compose(overrides: list[str]):
    """adrun's config, composed as the CLI composes it (with Hydra's own node, for the groups' choices)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import adrun.resolvers  # noqa: F401  (registers ${adrun.cpus:} and co.)
    from adrun.cli import config_dir

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            return hydra_compose(config_name="config", overrides=overrides, return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()


def load(run_dir: str | Path) -> Run:
    """A finished (or failed) run dir, read."""
    from omegaconf import OmegaConf

    path = Path(run_dir)
    if not (path / "results.json").exists():
        raise UserError(f"{path} holds no run (no results.json)")
    config = OmegaConf.to_container(OmegaConf.load(path / "config.yaml")) if (path / "config.yaml").exists() else {}
    return Run(path, json.loads((path / "results.json").read_text()), config)


def report(
    paths: list[str | Path], metric: str = "image_auroc", out: str | Path | None = None, baseline: str | None = None
) -> str:
    """The markdown table `adrun-report` prints for these run or sweep dirs (with `baseline`, each column compared with
    it); with `out`, its report.md, .csv and .png are written there too."""
    from adrun import reports
    from adrun.comparisons import compare

    names = [str(p) for p in paths]
    if out is not None:
        return reports.write_report(names, metric, Path(out), baseline)
    table = reports.build_table([reports.read_run(p) for p in reports.run_dirs(names)], metric)
    return reports.markdown(table, compare(table, baseline))
