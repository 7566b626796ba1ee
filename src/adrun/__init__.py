"""adrun: an experiment runner for image anomaly detection.

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
