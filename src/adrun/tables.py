"""How runs become a paper's table, for the sweep's summary (sweep.py) and adrun-report (reports.py) alike.

A run is an `Entry`: its row (the value of the protocol key the runs vary, e.g. a normal class), its column (a method,
or a setting), its repeat (the seed) and its value. `aggregate` makes the table:
- a cell is the runs at one row and column, which differ only in the repeat: mean ± sample std (n − 1) over those with
  a value (a failed run, or a NaN metric, has none);
- with two or more rows, the `mean` row is, per repeat, the mean over every row, then the mean ± std of those means
  over the repeats that have every row ("mean ± std over n runs", as papers compute it); a repeat that misses a row is
  left out of its column's mean and named, never averaged over fewer classes.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from adrun.errors import UserError

PROTOCOL_KEYS = ("data.normal_class", "data.category", "data.abnormal_class", "data.n_inliers")
MEAN = "mean"  # the row `aggregate` adds


def number(value) -> float | None:
    return value if isinstance(value, int | float) and value == value else None  # NaN and null are not numbers


def spread(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (None below two values)."""
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


@dataclass(frozen=True)
class Entry:
    row: str
    column: str
    repeat: object  # the seed (a tuple where several keys repeat a run)
    value: float | None  # None: the run failed, or its metric is missing or NaN
    path: object = None  # the run dir, for tests on the run's own scores


@dataclass
class Cell:
    values: dict  # repeat → value, runs with a value only
    mean: float | None = None
    std: float | None = None
    paths: dict = field(default_factory=dict)  # repeat → run dir, every run of the cell (with a value or not)

    def __post_init__(self):
        self.mean, self.std = spread(list(self.values.values()))

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def runs(self) -> int:
        return max(len(self.paths), self.n)


@dataclass
class Grid:
    rows: list[str]  # in the order of the entries
    columns: list[str]
    cells: dict  # (row, column) → Cell; row MEAN holds the mean row (with two or more rows)
    left_out: dict  # column → repeats left out of its mean (they miss a row)


def aggregate(entries: list[Entry], row_key: str = "row", repeat_key: str = "seed") -> Grid:
    """The table of `entries`; two runs at one row, column and repeat are refused (which one would count?)."""
    rows = list(dict.fromkeys(e.row for e in entries))
    columns = list(dict.fromkeys(e.column for e in entries))
    members: dict[tuple, dict] = {}  # (row, column) → repeat → its entry
    for e in entries:
        runs = members.setdefault((e.row, e.column), {})
        if e.repeat in runs:
            raise UserError(
                f"two runs of {e.column} at {row_key}={e.row} with {repeat_key} {e.repeat}: {runs[e.repeat].path} and "
                f"{e.path}; pass one of them"
            )
        runs[e.repeat] = e
    cells = {}
    for r in rows:
        for c in columns:
            if runs := members.get((r, c)):
                values = {s: e.value for s, e in runs.items() if e.value is not None}
                cells[(r, c)] = Cell(values, paths={s: e.path for s, e in runs.items()})
    left_out: dict[str, list] = {}
    if len(rows) > 1:
        for c in columns:
            for r in rows:
                cells.setdefault((r, c), Cell({}))  # a row this column has no run of: an empty cell
            repeats = set().union(*(cells[(r, c)].values for r in rows))
            complete = [s for s in sorted(repeats, key=str) if all(s in cells[(r, c)].values for r in rows)]
            left_out[c] = sorted(repeats - set(complete), key=str)
            cells[(MEAN, c)] = Cell({s: statistics.fmean(cells[(r, c)].values[s] for r in rows) for s in complete})
    return Grid(rows, columns, cells, left_out)
