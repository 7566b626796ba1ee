"""A run dir and everything written into it; no torch import, so the sweep callback can use it cheaply.

    <run dir>/.hydra/             Hydra's record of the composition (overrides, hydra.yaml)
              config.yaml         the run's resolved config, the one adrun reads back (resume checks against it)
              adrun.log           what the run printed, with times
              results.json        status started | ok | failed; metrics, counts, timings, versions
              scores.csv          one row per test sample (train and test modes)
              predictions.csv     one row per input image (predict mode), overlays/ beside it
              checkpoints/last.ckpt   rewritten at each epoch's end; carries the config and the threshold
              figures/<tag>.png   every figure the run drew ('/' in its tag as '__'), whichever loggers were chosen
              tb/                 TensorBoard (logger=tensorboard, the default); csv/, mlflow.db + mlartifacts/,
                                  wandb/ for the other loggers' stores in the run dir (adrun/loggers.py)

Every file is written through a temporary file and renamed: a half-written file never looks like a result.
"""

from __future__ import annotations

import csv
import json
import logging
import platform
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path

from omegaconf import OmegaConf

from adrun.atomic import write_via

HYDRA_OWN = {".hydra"}  # what Hydra makes in a run dir before adrun's code runs


def write_atomically(path: Path, write: Callable) -> None:
    """Write through a temporary file and rename, so a half-written file never looks like a result."""

    def opened(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            write(f)

    write_via(path, opened)


def write_text(path: Path, text: str) -> None:
    write_atomically(path, lambda f: f.write(text))


def write_json(path: Path, content: dict) -> None:
    write_atomically(path, lambda f: json.dump(content, f, indent=2, default=str))


class RunDir:
    def __init__(self, path: Path | str):
        self.path = Path(path)

    results = property(lambda self: self.path / "results.json")
    config = property(lambda self: self.path / "config.yaml")
    scores = property(lambda self: self.path / "scores.csv")
    predictions = property(lambda self: self.path / "predictions.csv")
    overlays = property(lambda self: self.path / "overlays")
    checkpoints = property(lambda self: self.path / "checkpoints")
    checkpoint = property(lambda self: self.path / "checkpoints" / "last.ckpt")
    tb = property(lambda self: self.path / "tb")
    figures = property(lambda self: self.path / "figures")

    @contextmanager
    def log(self):
        """adrun's lines, with their times, appended to adrun.log while the block runs."""
        handler = logging.FileHandler(self.path / "adrun.log", delay=True)
        handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s] %(message)s"))
        logger = logging.getLogger("adrun")
        logger.addHandler(handler)
        try:
            yield
        finally:
            logger.removeHandler(handler)
            handler.close()

    def is_fresh(self) -> bool:
        """Nothing of adrun's here yet: the dir is absent or holds only what Hydra made for this very run."""
        return not self.path.exists() or all(p.name in HYDRA_OWN for p in self.path.iterdir())

    def remove_refused(self) -> None:
        """A run refused before anything was written: its dir goes, and the empty folders made for it up to the
        working dir (outputs/runs/<method>/<data>/), so nothing looks like a run."""
        import shutil

        shutil.rmtree(self.path, ignore_errors=True)
        stop, parent = Path.cwd().resolve(), self.path.resolve().parent
        while parent != stop and stop in parent.parents and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent

    def read_results(self) -> dict | None:
        return json.loads(self.results.read_text()) if self.results.exists() else None

    def write_results(self, results: dict) -> None:
        write_json(self.results, results)

    def read_config(self) -> dict | None:
        return OmegaConf.to_container(OmegaConf.load(self.config)) if self.config.exists() else None

    def write_config(self, config: dict) -> None:
        write_text(self.config, OmegaConf.to_yaml(OmegaConf.create(config)))

    def write_scores(self, outputs, sample_id: Callable[[int], str], sample_type: Callable[[int], str]) -> None:
        """scores.csv: index, id (path or id), label, type (the sample's class: an anomaly type, or the normal class),
        score, score_<name> per variant (an evaluation.TestOutputs)."""

        def write(f):
            out = csv.writer(f)
            out.writerow(["index", "id", "label", "type", "score", *(f"score_{name}" for name in outputs.variants)])
            columns = [outputs.scores, *outputs.variants.values()]
            for i, label, *scores in zip(
                outputs.index.tolist(), outputs.labels.tolist(), *(c.tolist() for c in columns), strict=True
            ):
                out.writerow([i, sample_id(i), label, sample_type(i), *(f"{score:.8g}" for score in scores)])

        write_atomically(self.scores, write)

    def read_scores(self) -> dict | None:
        """scores.csv as columns (numpy arrays): index, id, label, type, score, score_<variant>; None without one."""
        import numpy as np

        if not self.scores.exists():
            return None
        with open(self.scores, newline="") as f:
            rows = list(csv.DictReader(f))
        names = rows[0].keys() if rows else ["index", "id", "label", "type", "score"]
        kinds = {"index": int, "label": int, "id": str, "type": str}
        return {name: np.array([kinds.get(name, float)(row[name]) for row in rows]) for name in names}

    def write_predictions(self, rows: Iterable[tuple]) -> None:
        """predictions.csv: path, score, decision, error (an unreadable file's)."""

        def write(f):
            out = csv.writer(f)
            out.writerow(["path", "score", "decision", "error"])
            out.writerows(rows)

        write_atomically(self.predictions, write)


def versions() -> dict[str, str]:
    """The versions a result depends on, for results.json."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:  # e.g. adrun run from a source tree on PYTHONPATH
            return "not installed"

    names = ("adrun", "torch", "torchvision", "pytorch-lightning", "torchmetrics", "hydra-core")
    return {"python": platform.python_version()} | {name: installed(name) for name in names}


def log_hparams(writer, hparams: dict, metrics: dict[str, float]) -> None:
    """The HParams-tab record: these hyperparameters beside the final `test/*` metrics (already logged as scalars)."""
    from torch.utils.tensorboard.summary import hparams as hparams_summary

    experiment, session_start, session_end = hparams_summary(hparams, {f"test/{k}": v for k, v in metrics.items()})
    file_writer = writer._get_file_writer()
    for summary in (experiment, session_start, session_end):
        file_writer.add_summary(summary)
