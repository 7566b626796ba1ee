"""adrun: an experiment runner for image anomaly detection.

The stable public names (semantic versioning applies to these, and to nothing else):
- for a method of your own: `AnomalyModule` (subclass it), `Scores` (what its `score(batch)` returns), `Count` (the
  annotation of an epoch or iteration count: an integer ≥ 1, checked before the run), `UserError` (raise it for a
  setting the user can fix: the CLI prints its message in one line, exit status 2);
- from Python or a notebook: `run(overrides, run_dir=None) -> Run`, `load(run_dir) -> Run`, `report(paths, metric=…)`.
They are imported on first use, so `import adrun` stays cheap (no torch until a name needs it).

adrun's lines go through the `adrun` logger: printed plainly on stdout, and, while a run executes, kept with their
times in its run dir's adrun.log (adrun.runner). Hydra's own job logging is off (conf/config.yaml).
"""

import logging
import sys

__version__ = "0.1.0"


class _Stdout(logging.StreamHandler):
    """A handler on whatever sys.stdout is when a line is written (a test's capture, a launcher's redirect), through
    tqdm so that a line said while a progress bar runs gets a line of its own above the bar."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stdout)
        except Exception:
            self.handleError(record)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:
        pass


_log = logging.getLogger("adrun")
_log.setLevel(logging.INFO)
_log.addHandler(_Stdout())
_log.propagate = False


_PUBLIC = {
    "AnomalyModule": "adrun.methods.base",
    "Scores": "adrun.scores",
    "UserError": "adrun.errors",
    "Count": "adrun.contract",
    "Run": "adrun.api",
    "run": "adrun.api",
    "load": "adrun.api",
    "report": "adrun.api",
}
__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name: str):
    """The public names, imported when first asked for (PEP 562)."""
    if name not in _PUBLIC:
        raise AttributeError(f"module 'adrun' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_PUBLIC[name]), name)
