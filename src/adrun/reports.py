"""`adrun-report`: the table a paper prints, from any mix of finished runs.

    adrun-report outputs/fmnist_budget/ganomaly outputs/fmnist_budget/fanogan [--metric image_auroc] [--out DIR]
        [--baseline ganomaly]

Rows are the protocol key the runs vary (`data.normal_class`, `data.category`, `data.abnormal_class`,
`data.n_inliers`) plus a `mean` row; columns are methods, tagged with the `experiment=` and `method.*` overrides a run
was made with (`ada[anovae]`, `ganomaly[ganomaly_anomalib]`, `ganomaly[adv_loss=outputs]`) and the data keys that
change how it trains (`ganomaly[data.batch_size=32]`, `data.channels`, `data.drop_last`); a cell is the mean ±
sample std over the runs that differ only in the seed. The mean row is, per seed, the mean over every row, then the
mean ± std of those over the seeds that have every row — "mean ± std over n runs" as papers report it. A column may
carry a published `reference:` block (an experiment config's; see `docs/design.md`): it is shown beside ours with the
difference.

Runs of different protocols are refused, naming the key: one table is one protocol (the data, its image size,
subsets, split and protocol keys). How a method is fed (channels, batch size, where the files are) is not protocol.
Writes report.md, report.csv and report.png to `--out` and prints the markdown. A separate console script rather than
an `adrun mode=…`: it composes nothing and trains nothing, it reads run dirs, and globs of them are its arguments.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import yaml

from adrun.artefacts import write_atomically, write_text
from adrun.errors import UserError
from adrun.tables import PROTOCOL_KEYS, Cell, Entry, aggregate, number

NOT_PROTOCOL = {"root", "cache_dir", "download", "batch_size", "channels", "num_workers", "seed", "on_device"}  # how
NOT_PROTOCOL |= {"drop_last"}  # … a method is fed, not what it is tested on
FEEDS = ("data.batch_size", "data.channels", "data.drop_last")  # of those, the keys that change what trains: a column
# is tagged with them where the command line set them
REFERENCE_KEYS = {"source", "metric"}  # required in a reference block; `values` (per row), `mean`, `protocol` optional


@dataclass
class Run:
    """One finished or failed run as the report needs it."""

    path: Path
    status: str
    method: str
    method_config: dict
    data: dict
    seed: object
    metrics: dict
    experiment: str | None = None
    method_overrides: dict = field(default_factory=dict)  # method.* keys set on the command line
    data_overrides: dict = field(default_factory=dict)  # data.* keys of FEEDS set on the command line
    row_names: dict = field(default_factory=dict)  # row value → its class name, where the data name classes
    reference: dict | None = None
    error: str | None = None
    peer: dict | None = None  # a peer library's run (scripts/peers/): {library, version, model}


def run_dirs(paths: list[str]) -> list[Path]:
    """Every run dir under the arguments (run dirs, sweep dirs, globs of either), each once, in order."""
    found: list[Path] = []
    for arg in paths:
        matches = sorted(glob.glob(arg)) if glob.has_magic(arg) else [arg]
        if not matches or not Path(matches[0]).exists():
            raise UserError(f"{arg}: no such run or sweep dir")
        for match in map(Path, matches):
            own = match / "results.json"
            results = [own] if own.exists() else sorted(match.rglob("results.json"))
            found += [r.parent for r in results if r.parent not in found]
    if not found:
        raise UserError(f"no results.json under {' '.join(paths)}: not a run or sweep dir of adrun")
    return found


def read_run(path: Path) -> Run:
    results = json.loads((path / "results.json").read_text())
    config_path = path / "config.yaml"
    if not config_path.exists() and results.get("status") != "ok":  # a job refused before it ran: listed, not tabled
        method, seed = results.get("method", "?"), results.get("seed")
        return Run(path, results.get("status", "?"), method, {}, {}, seed, {}, error=results.get("error"))
    if not config_path.exists():
        raise UserError(f"{path} has results.json but no config.yaml: a run of an older adrun, re-test it")
    config = yaml.safe_load(config_path.read_text())
    overrides = {k: spelled(v) for k, v in (o.split("=", 1) for o in results.get("overrides", []) if "=" in o)}
    names = results.get("normal_class_names")
    classes = config["data"].get("normal_class")
    row_names = {}
    if names and classes is not None and not isinstance(classes, list):
        row_names = {str(classes): names[0]}
    return Run(
        path=path,
        status=results.get("status", "?"),
        method=results.get("method") or config["method"]["_target_"].rsplit(".", 1)[1].lower(),
        method_config={k: v for k, v in config["method"].items() if k != "_target_"},
        data={"name": results.get("data", config["data"].get("_target_")), **config["data"]},
        seed=config.get("seed"),
        metrics=results.get("metrics", {}),
        experiment=overrides.get("+experiment", overrides.get("experiment")),
        method_overrides={k.removeprefix("method."): v for k, v in overrides.items() if k.startswith("method.")},
        data_overrides={k: v for k, v in overrides.items() if k in FEEDS},
        row_names=row_names,
        reference=config.get("reference"),
        error=results.get("error"),
        peer=results.get("peer"),
    )


def spelled(value: str) -> str:
    """An override's value as the command line spells it: a multirun sweep hands Hydra's Python spelling (`True`) where
    the user typed `true`, and one column must not become two."""
    return {"True": "true", "False": "false", "None": "null"}.get(value, value)


def row_key(runs: list[Run]) -> str | None:
    """The protocol key the runs vary (its name without `data.`), or None when every run has the same."""
    for key in PROTOCOL_KEYS:
        name = key.removeprefix("data.")
        if len({json.dumps(r.data.get(name)) for r in runs}) > 1:
            return name
    return None


def check_one_protocol(runs: list[Run], row: str | None) -> None:
    """Refuse runs of different protocols in one table, naming the first key that differs and two runs that differ."""
    first = runs[0]
    for run in runs[1:]:
        for key in sorted(set(first.data) | set(run.data)):
            if key in NOT_PROTOCOL or key == row:
                continue
            if json.dumps(first.data.get(key)) != json.dumps(run.data.get(key)):
                raise UserError(
                    f"runs of different protocols: data.{key} is {first.data.get(key)!r} in {first.path} but "
                    f"{run.data.get(key)!r} in {run.path}; one report is one protocol (report them separately)"
                )


def column_labels(runs: list[Run]) -> dict[Path, str]:
    """Each run's column: its method, tagged with what the run asked for beyond the method's yaml — the `experiment=`
    it ran under and its `method.*` overrides (`method.variant` by its value alone: `ada[anovae]`). Runs under one
    label must have one method config: anything else (a yaml edited between runs) is refused, naming the key. A peer
    library's run (scripts/peers/) is `<library>:<model>` (`anomalib:ganomaly`)."""
    labels, configs = {}, {}
    for run in runs:
        tags = [run.experiment] if run.experiment else []
        for key, value in sorted(run.method_overrides.items()):
            tags.append(value if key == "variant" else f"{key}={value}")
        tags += [f"{key}={value}" for key, value in sorted(run.data_overrides.items())]
        label = f"{run.method}[{', '.join(tags)}]" if tags else run.method
        if run.peer:
            label = f"{run.peer['library']}:{run.peer['model'].lower()}"
        first = configs.setdefault(label, run)
        if first.method_config != run.method_config:
            key = next(
                k
                for k in sorted(set(first.method_config) | set(run.method_config))
                if first.method_config.get(k) != run.method_config.get(k)
            )
            raise UserError(
                f"runs of {label} differ in method.{key} ({first.method_config.get(key)!r} in {first.path}, "
                f"{run.method_config.get(key)!r} in {run.path}); report them separately"
            )
        labels[run.path] = label
    return labels


@dataclass
class Table:
    metric: str
    row: str | None
    rows: list[str]  # the row key's values, as text, in order
    columns: list[str]
    cells: dict  # (row, column) → Cell; row "mean" holds the mean row
    references: dict  # column → reference block
    row_names: dict
    failed: list[Run]
    left_out_seeds: dict  # column → seeds left out of the mean row (they miss a row)
    seed_draws_data: bool = False  # data.seed = seed in every run: each seed also draws its own subsets and splits


def build_table(runs: list[Run], metric: str) -> Table:
    ok = [r for r in runs if r.status == "ok"]
    if not ok:
        raise UserError(f"none of the {len(runs)} runs finished (status ok); nothing to report")
    row = row_key(ok)
    check_one_protocol(ok, row)
    labels = column_labels(ok)
    row_text = {r.path: json.dumps(r.data.get(row)).strip('"') if row else "all" for r in ok}
    entries = []
    for run in sorted(ok, key=lambda r: sort_key(r.data.get(row))):
        if metric not in run.metrics:
            known = ", ".join(sorted(run.metrics))
            raise UserError(f"{run.path} has no metric {metric!r}; it has: {known}")
        value = number(run.metrics[metric])
        entries.append(Entry(row_text[run.path], labels[run.path], run.seed, value, run.path))
    grid = aggregate(entries, row_key=row or "row")
    columns, cells = list(dict.fromkeys(labels[r.path] for r in ok)), grid.cells
    references = {}
    for column in columns:
        blocks = {json.dumps(r.reference, sort_keys=True) for r in ok if labels[r.path] == column}
        if len(blocks) > 1:
            raise UserError(f"the runs of {column} carry different reference blocks; report them separately")
        block = json.loads(blocks.pop())
        if block:
            missing = REFERENCE_KEYS - set(block)
            if missing:
                raise UserError(f"the reference block of {column} lacks {', '.join(sorted(missing))}")
            if block["metric"] == metric:
                references[column] = block
    row_names = {k: v for r in ok for k, v in r.row_names.items()}
    failed = [r for r in runs if r.status != "ok"]
    draws = all(r.data.get("seed") == r.seed for r in ok) and len({r.seed for r in ok}) > 1
    return Table(metric, row, grid.rows, columns, cells, references, row_names, failed, grid.left_out, draws)


def sort_key(value):
    return (0, value, "") if isinstance(value, int | float) else (1, 0, json.dumps(value))


def row_label(table: Table, row: str) -> str:
    """A row's value with its class name where the data name classes (`0 T-shirt/top`), else the value alone."""
    name = table.row_names.get(row)
    return f"{row} {name}" if name and name != row else row


def short_seeds(table: Table, short: dict[str, dict[str, int]]) -> list[str]:
    """The † note's entries: one per column whose every cell has the same few seeds, else one per short cell."""
    entries = []
    for column in (c for c in table.columns if c in short):
        rows = short[column]
        every = {row for row in [*table.rows, "mean"] if (row, column) in table.cells}
        if len(set(rows.values())) == 1 and set(rows) >= every:
            entries.append(f"{column}: n = {next(iter(rows.values()))} in every row")
        else:
            entries += [f"{column} at {row}: n = {n}" for row, n in rows.items()]
    return entries


def cell_text(cell: Cell | None, digits: int = 3) -> str:
    if cell is None or cell.mean is None:
        return "–"
    if cell.std is None:
        return f"{cell.mean:.{digits}f}"
    return f"{cell.mean:.{digits}f} ± {cell.std:.{digits}f}"


def reference_value(block: dict, row: str) -> float | None:
    values = block.get("values") or {}
    value = block.get("mean") if row == "mean" else values.get(row, values.get(_int(row)))
    return number(value)


def _int(text: str):
    return int(text) if text.lstrip("-").isdigit() else text


def markdown(table: Table, comparison=None) -> str:
    header = [table.row or "row"]
    for column in table.columns:
        header.append(column)
        if column in table.references:
            header += [f"{column} reference", "Δ"]
    most = max(c.n for c in table.cells.values())
    short: dict[str, dict[str, int]] = {}  # column → row → n, for the cells with fewer seeds than `most`
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in [*table.rows, *(["mean"] if len(table.rows) > 1 else [])]:
        cells = [f"**{row}**" if row == "mean" else row_label(table, row)]
        for column in table.columns:
            cell = table.cells.get((row, column))
            text = cell_text(cell)
            tested = comparison.cells.get((row, column)) if comparison is not None else None
            if tested is not None and tested.mark:
                text += f" {tested.mark}"
            if cell is not None and cell.n < most:
                text += " †"
                short.setdefault(column, {})[row] = cell.n
            cells.append(text)
            if column in table.references:
                ref = reference_value(table.references[column], row)
                cells.append("–" if ref is None else f"{ref:.3f}")
                mean = cell.mean if cell else None
                cells.append("–" if ref is None or mean is None else f"{mean - ref:+.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    notes = [
        f"{table.metric}: cells are mean ± sample std over seeds (n = {most} unless marked †)"
        + (
            "; the mean row is, per seed, the mean over the rows, then mean ± std over the seeds that have every row."
            if len(table.rows) > 1
            else "."
        )
    ]
    if table.seed_draws_data:
        notes.append(
            "data.seed follows seed: each seed also draws its own data (subsets, validation split), so the spread "
            "is over both the training and the data drawn."
        )
    if short:
        notes.append("† fewer seeds than the other cells: " + "; ".join(short_seeds(table, short)) + ".")
    for column, seeds in table.left_out_seeds.items():
        if seeds:
            notes.append(f"{column}: seed(s) {', '.join(map(str, seeds))} miss a row and are left out of its mean.")
    for column, block in table.references.items():
        protocol = f" ({block['protocol']})" if "protocol" in block else ""
        notes.append(f"{column} reference: {block['source']}{protocol}")
    if comparison is not None:
        from adrun.comparisons import notes as comparison_notes

        notes += comparison_notes(comparison, table.metric)
    for run in table.failed:
        notes.append(f"not in the table, {run.status}: {run.path}" + (f": {run.error}" if run.error else ""))
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"


CSV_COLUMNS = ("row", "name", "column", "metric", "mean", "std", "n", "values", "reference")


def write_csv(table: Table, path: Path, comparison=None) -> None:
    """report.csv: a line per cell (mean, std, n, the seeds' values, the reference, and against the baseline the cell's
    test on the same test images), then a line per column's Δ to the baseline (its interval in `low`/`high`)."""
    baseline = comparison.baseline if comparison is not None else None

    def write(f):
        out = csv.writer(f)
        out.writerow([*CSV_COLUMNS, "baseline", "low", "high", "test", "p", "p_holm"])
        for (row, column), cell in table.cells.items():
            ref = reference_value(table.references[column], row) if column in table.references else None
            values = ";".join(f"{s}:{v:.6f}" for s, v in cell.values.items())
            tested = comparison.cells.get((row, column)) if comparison is not None else None
            test = [] if tested is None else [f"DeLong per seed, Stouffer over {tested.seeds}", tested.p, tested.p_holm]
            first = [row, table.row_names.get(row, ""), column, table.metric, cell.mean, cell.std, cell.n, values, ref]
            out.writerow([*first, baseline, "", "", *test] if test else first)
        for d in comparison.deltas if comparison is not None else []:
            test = f"{d.test.test}, n = {d.test.n}"
            first = [f"Δ vs {baseline}", "", d.column, table.metric, d.mean, "", d.pairs, "", ""]
            out.writerow([*first, baseline, d.low, d.high, test, d.test.p, d.p_holm])

    write_atomically(path, write)


def write_report(paths: list[str], metric: str, out: Path, baseline: str | None = None) -> str:
    from adrun.comparisons import compare

    table = build_table([read_run(p) for p in run_dirs(paths)], metric)
    comparison = compare(table, baseline)
    text = markdown(table, comparison)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "report.md", f"# {metric}\n\n" + text)
    write_csv(table, out / "report.csv", comparison)
    from adrun.figures import ranks_figure, report_figure, save_png

    if comparison.ranks is not None:
        r = comparison.ranks
        save_png(ranks_figure(r.columns, r.average, r.critical_difference, r.rows, r.p), out / "report_ranks.png")

    labels = [*table.rows, *(["mean"] if len(table.rows) > 1 else [])]
    means = [[_mean(table.cells.get((r, c))) for r in labels] for c in table.columns]
    stds = [[_std(table.cells.get((r, c))) for r in labels] for c in table.columns]
    names = [row_label(table, r) for r in labels]
    save_png(report_figure(names, table.columns, means, stds, metric), out / "report.png")
    return text


def _mean(cell: Cell | None) -> float:
    return float("nan") if cell is None or cell.mean is None else cell.mean


def _std(cell: Cell | None) -> float:
    return 0.0 if cell is None or cell.std is None else cell.std


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="adrun-report", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="run dirs, sweep dirs, or globs of them")
    parser.add_argument("--metric", default="image_auroc", help="a key of results.json's metrics (image_auroc)")
    parser.add_argument("--out", type=Path, help="where report.md/.csv/.png go (outputs/report/<timestamp>)")
    parser.add_argument(
        "--baseline", help="a column to compare every other with: Δ, its interval, paired tests (adrun.comparisons)"
    )
    args = parser.parse_args(argv)
    out = args.out or Path("outputs/report") / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    try:
        text = write_report(args.paths, args.metric, out, args.baseline)
    except UserError as error:
        print(f"adrun-report: error: {error}", file=sys.stderr)
        sys.exit(2)
    print(text)
    print(f"report: {out.resolve() / 'report.md'} (.csv, .png)")
