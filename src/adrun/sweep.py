"""The table at the end of a multirun: summary.csv and summary.md in the sweep dir, one row per job plus the mean
over the swept `data.normal_class` (the shape of the papers' per-class tables)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from adrun.artefacts import write_atomically
from adrun.errors import IncompleteSweep

CLASS_KEY = "data.normal_class"
NOT_A_SETTING = ("resume", "threads", "hydra.")  # overrides that say how a job ran, not what it computed
ERROR = "error"  # a failed job's one-line error: listed under the table, not in it


def job_rows(sweep_dir: Path) -> list[dict]:
    """One row per job that wrote results.json, in job order: its overrides, status and metrics."""
    paths = sorted(sweep_dir.glob("*/results.json"), key=lambda p: (len(p.parent.name), p.parent.name))
    rows = []
    for path in paths:
        results = json.loads(path.read_text())
        overrides = dict(item.split("=", 1) for item in results.get("overrides", []))
        overrides = {key: value for key, value in overrides.items() if not key.startswith(NOT_A_SETTING)}
        metrics = results.get("metrics", {})
        rows.append({"job": path.parent.name, **overrides, "status": results.get("status", "?"), **metrics})
        if "error" in results:
            rows[-1][ERROR] = results["error"]
    return rows


def failures(rows: list[dict]) -> list[dict]:
    """The jobs that did not end well: failed, or still `started` (running, or killed)."""
    return [row for row in rows if row["job"] != "mean" and row.get("status") not in ("ok", "")]


def with_means(rows: list[dict], metric_keys: list[str]) -> list[dict]:
    """After each group of jobs that differ only in `data.normal_class`, a row of their means."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        key = tuple(sorted((k, v) for k, v in row.items() if k not in {"job", "status", CLASS_KEY, *metric_keys}))
        groups.setdefault(key, []).append(row)
    out = []
    for key, members in groups.items():
        out += members
        if len(members) > 1 and any(CLASS_KEY in m for m in members):
            mean = {"job": "mean", **dict(key), CLASS_KEY: f"mean of {len(members)}", "status": ""}
            for metric in metric_keys:
                values = [m.get(metric) for m in members]
                ok = [v for v in values if isinstance(v, int | float) and not math.isnan(v)]
                mean[metric] = sum(ok) / len(ok) if len(ok) == len(values) else None
            out.append(mean)
    return out


def formatted(value) -> str:
    if value is None:
        return "–"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def write_summary(sweep_dir: Path) -> list[dict]:
    rows = job_rows(sweep_dir)
    if not rows:
        return []
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns and key != ERROR]
    metric_keys = [c for c in columns if c.startswith(("image_", "pixel_"))]
    table = with_means(rows, metric_keys)

    def write_csv(f):
        out = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        out.writeheader()
        out.writerows(table)

    shared = [c for c in columns if c not in {"job", *metric_keys} and len({str(r.get(c)) for r in table}) == 1]
    shown = [c for c in columns if c not in shared]

    def write_md(f):
        if shared:  # what every job has in common goes above the table, not in a column of repeats
            f.write(" ".join(f"`{c}={table[0][c]}`" for c in shared) + "\n\n")
        f.write("| " + " | ".join(shown) + " |\n")
        f.write("|" + "---|" * len(shown) + "\n")
        for row in table:
            f.write("| " + " | ".join(formatted(row.get(c)) for c in shown) + " |\n")
        for row in failures(rows):
            what = " ".join(f"`{c}={row[c]}`" for c in shown if c not in {"job", "status", *metric_keys} and c in row)
            error = row.get(ERROR, "no result (still running, or killed)")
            f.write(f"\n- job {row['job']} {what} {row['status']}: {error}\n")

    write_atomically(sweep_dir / "summary.csv", write_csv)
    write_atomically(sweep_dir / "summary.md", write_md)
    return table


class SweepSummary(Callback):
    """Hydra callback: writes the sweep's summary when a multirun ends; raises IncompleteSweep if jobs failed."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        table = write_summary(sweep_dir)
        if table:
            print(f"sweep summary: {sweep_dir / 'summary.md'}")
        if failed := failures(table):  # `adrun` exits 1 with this line
            first = failed[0]
            raise IncompleteSweep(
                f"{len(failed)} of {len([r for r in table if r['job'] != 'mean'])} jobs did not finish; job "
                f"{first['job']}: {first.get(ERROR, first['status'])} (all in {sweep_dir / 'summary.md'})"
            )
