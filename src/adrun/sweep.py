"""The table at the end of a multirun: summary.csv and summary.md in the sweep dir.

- one row per job (its method, data and overrides, status and metrics), failed jobs included;
- jobs that differ only in a key of `summary.repeat_over` (default: `seed`) are also one row, `mean ± std`: the mean,
  the sample standard deviation and n over the jobs that finished (a failed one is excluded and said);
- jobs that differ only in a protocol key (`data.normal_class`, `data.category`, `data.abnormal_class`,
  `data.n_inliers`) get a `mean` row — the shape of the papers' per-class tables. With repeats it is the mean ± std
  over the repeats of each repeat's mean over the classes ("mean ± std over 3 runs", as papers compute it), over the
  repeats that finished every class.
Cells and means are tables.aggregate's, as adrun-report's are: a change to how runs are grouped is made there.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from adrun.artefacts import write_atomically
from adrun.errors import IncompleteSweep, UserError
from adrun.tables import MEAN, PROTOCOL_KEYS, Entry, aggregate, number

REPEAT_OVER = ("seed",)
NOT_A_SETTING = ("resume", "threads", "hydra.")  # overrides that say how a job ran, not what it computed
ERROR = "error"  # a failed job's one-line error: listed under the table, not in it
GROUPED = ("mean ± std", "mean")  # the `job` of the rows this module adds


def job_rows(sweep_dir: Path) -> list[dict]:
    """One row per job that wrote results.json, in job order: method, data, overrides, status and metrics."""
    paths = sorted(sweep_dir.glob("*/results.json"), key=lambda p: (len(p.parent.name), p.parent.name))
    rows = []
    for path in paths:
        results = json.loads(path.read_text())
        overrides = dict(item.split("=", 1) for item in results.get("overrides", []))
        overrides = {key: value for key, value in overrides.items() if not key.startswith(NOT_A_SETTING)}
        facts = {key: results[key] for key in ("method", "data") if key in results}
        metrics = results.get("metrics", {})
        rows.append({"job": path.parent.name, **facts, **overrides, "status": results.get("status", "?"), **metrics})
        if "error" in results:
            rows[-1][ERROR] = results["error"]
    return rows


def failures(rows: list[dict]) -> list[dict]:
    """The jobs that did not end well: failed, or still `started` (running, or killed)."""
    return [row for row in rows if row["job"] not in GROUPED and row.get("status") != "ok"]


def settings(row: dict, metric_keys: list[str]) -> dict:
    """A job's row without what is not its setting: job number, status, error, metrics."""
    return {k: v for k, v in row.items() if k not in {"job", "status", ERROR, *metric_keys}}


def grouped_rows(rows: list[dict], metric_keys: list[str], repeat_over: tuple[str, ...]) -> tuple[list, list]:
    """The `mean ± std` rows (jobs that differ only in the repeat keys) and the `mean` rows (over the protocol key the
    jobs vary), as tables.aggregate makes every table's cells."""
    swept = [k for k in PROTOCOL_KEYS if len({r.get(k) for r in rows if k in r}) > 1]
    protocol = swept[0] if swept else None
    places = []  # each job's (row, column, repeat): the same for every metric
    for r in rows:
        setting = settings(r, metric_keys)
        column = tuple(sorted((k, v) for k, v in setting.items() if k != protocol and k not in repeat_over))
        places.append((str(r.get(protocol)), column, tuple(r.get(k) for k in repeat_over)))
    grids = {}
    for metric in metric_keys:
        values = [number(r.get(metric)) if r.get("status") == "ok" else None for r in rows]
        entries = [Entry(*place, value, r["job"]) for place, value, r in zip(places, values, rows, strict=True)]
        grids[metric] = aggregate(entries, row_key=protocol or "row", repeat_key="/".join(repeat_over))
    repeats, means = [], []
    if not metric_keys:
        return repeats, means
    first = grids[metric_keys[0]]
    has_repeats = any(k in r for r in rows for k in repeat_over)
    for column in first.columns:
        present = [row for row in first.rows if (row, column) in first.cells and first.cells[(row, column)].runs]
        if has_repeats:
            for row in present:
                cell = first.cells[(row, column)]
                out = {"job": GROUPED[0], **dict(column), **({protocol: row} if protocol else {}), "status": ""}
                out["n"] = cell.n
                out[repeat_over[0]] = f"{cell.n} of {cell.runs}" if cell.n < cell.runs else f"{cell.n} runs"
                for metric in metric_keys:
                    c = grids[metric].cells[(row, column)]
                    out[metric], out[f"{metric}_std"] = c.mean, c.std
                repeats.append(out)
        if protocol and len(present) > 1:
            failed = sum(first.cells[(row, column)].runs - first.cells[(row, column)].n for row in present)
            label = f"mean of {len(present)}" + (f", {failed} failed" if failed else "")
            mean = first.cells[(MEAN, column)]
            out = {"job": GROUPED[1], **dict(column), protocol: label, "status": "", "n": mean.n}
            for metric in metric_keys:
                c = grids[metric].cells[(MEAN, column)]
                out[metric], out[f"{metric}_std"] = c.mean, c.std
            means.append(out)
    return repeats, means


def formatted(value, std=None) -> str:
    if value is None:
        return "–"
    if not isinstance(value, float):
        return str(value)
    return f"{value:.4f}" if std is None else f"{value:.4f} ± {std:.4f}"


def write_summary(sweep_dir: Path, repeat_over: tuple[str, ...] = REPEAT_OVER) -> list[dict]:
    rows = job_rows(sweep_dir)
    if not rows:
        return []
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns and key != ERROR]
    metric_keys = [c for c in columns if c.startswith(("image_", "pixel_"))]
    try:
        repeats, means = grouped_rows(rows, metric_keys, repeat_over)
        unsummed = None
    except UserError as error:  # e.g. jobs that differ only in how they ran (threads=1,2): every job is still listed
        repeats, means, unsummed = [], [], str(error)
    added = repeats + means
    table = rows + added
    csv_columns = columns + (["n"] + [f"{m}_std" for m in metric_keys] if added else [])
    for row in added:  # a repeat key that a grouped row summarises needs its column
        csv_columns += [k for k in row if k not in csv_columns]

    def write_csv(f):
        out = csv.DictWriter(f, fieldnames=csv_columns, extrasaction="ignore")
        out.writeheader()
        out.writerows(table)

    shown_rows = added if repeats else table  # with repeats the table shows the groups; every job is in summary.csv
    settings = [c for c in csv_columns if c not in {"job", "n", *metric_keys} and not c.endswith("_std")]
    shared = [c for c in settings if len({str(r.get(c)) for r in table if c in r or r["job"] not in GROUPED}) == 1]
    shown = [c for c in csv_columns if c not in shared and not c.endswith("_std") and (c != "n" or repeats)]

    def write_md(f):
        if shared:  # what every job has in common goes above the table, not in a column of repeats
            f.write(" ".join(f"`{c}={table[0][c]}`" for c in shared) + "\n\n")
        if unsummed:
            f.write(f"No mean rows: {unsummed}.\n\n")
        if repeats:
            f.write(
                f"Cells: mean ± sample std over the runs that differ only in {', '.join(repeat_over)} (n runs); a "
                "`mean` row is the mean ± std over those runs of each run's mean over the swept classes (a run "
                "that misses a class is left out of it). Every job's own row is in summary.csv.\n\n"
            )
        f.write("| " + " | ".join(shown) + " |\n")
        f.write("|" + "---|" * len(shown) + "\n")
        for row in shown_rows:
            cells = [formatted(row.get(c), row.get(f"{c}_std")) for c in shown]
            f.write("| " + " | ".join(cells) + " |\n")
        for row in failures(rows):
            what = " ".join(f"`{c}={row[c]}`" for c in settings if c not in shared and c in row and c != "status")
            error = row.get(ERROR, "no result (still running, or killed)")
            f.write(f"\n- job {row['job']} {what} {row['status']}: {error}\n")

    write_atomically(sweep_dir / "summary.csv", write_csv)
    write_atomically(sweep_dir / "summary.md", write_md)
    return table


class SweepSummary(Callback):
    """Hydra callback: writes the sweep's summary when a multirun ends; raises IncompleteSweep if jobs failed."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        repeat_over = tuple(config.get("summary", {}).get("repeat_over", REPEAT_OVER))
        table = write_summary(sweep_dir, repeat_over)
        if table:
            print(f"sweep summary: {(sweep_dir / 'summary.md').resolve()}")  # absolute, as the runs' paths are
        if failed := failures(table):  # `adrun` exits 1 with this line
            first = failed[0]
            raise IncompleteSweep(
                f"{len(failed)} of {len([r for r in table if r['job'] not in GROUPED])} jobs did not finish; job "
                f"{first['job']}: {first.get(ERROR, first['status'])} (all in {(sweep_dir / 'summary.md').resolve()})"
            )
