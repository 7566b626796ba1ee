"""adrun-report: the paper-shaped table from hand-made run dirs (results.json + config.yaml as a run writes them)."""

import csv
import json
import statistics

import pytest
import yaml

from adrun.errors import UserError
from adrun.reports import build_table, main, read_run, run_dirs

DATA = {"_target_": "adrun.data.fashion_mnist.FashionMNIST", "image_size": 32, "train_subset": 1000, "channels": 1}


def fake_run(path, method, normal_class, seed, auroc, status="ok", method_config=None, data=None, **extra):
    path.mkdir(parents=True)
    results = {"status": status, "method": method, "data": "fashion_mnist", "overrides": extra.pop("overrides", [])}
    results["normal_class_names"] = [f"class{normal_class}"]
    if status == "ok":
        results["metrics"] = {"image_auroc": auroc, "image_f1_eer": auroc / 2}
    else:
        results["error"] = "non-finite loss: train/loss_g = nan"
    config = {
        "method": {"_target_": f"adrun.methods.{method}.X", "epochs": 15, **(method_config or {})},
        "data": {**DATA, "normal_class": normal_class, "seed": seed, **(data or {})},
        "seed": seed,
        **extra,
    }
    (path / "results.json").write_text(json.dumps(results))
    (path / "config.yaml").write_text(yaml.safe_dump(config))


AUROC = {  # method → seed → AUROC of classes 0, 1, 2
    "ganomaly": {0: [0.6, 0.8, 0.7], 1: [0.7, 0.9, 0.8], 2: [0.5, 1.0, 0.6]},
    "fanogan": {0: [0.9, 0.9, 0.9], 1: [0.8, 0.7, 0.9]},
}


def two_sweeps(root, failed=None):
    for method, by_seed in AUROC.items():
        job = 0
        for seed, values in by_seed.items():
            for c, value in enumerate(values):
                status = "failed" if failed == (method, seed, c) else "ok"
                fake_run(root / method / str(job), method, c, seed, value, status)
                job += 1
    return [str(root / "ganomaly"), str(root / "fanogan")]


def test_two_sweeps_give_rows_per_class_columns_per_method_and_mean_over_seeds(tmp_path):
    table = build_table([read_run(p) for p in run_dirs(two_sweeps(tmp_path))], "image_auroc")
    assert table.row == "normal_class" and table.rows == ["0", "1", "2"]
    assert table.columns == ["ganomaly", "fanogan"]
    cell = table.cells[("0", "ganomaly")]
    assert cell.n == 3 and cell.mean == pytest.approx(0.6) and cell.std == pytest.approx(0.1)  # sample std
    assert table.cells[("2", "fanogan")].n == 2 and table.cells[("2", "fanogan")].std == pytest.approx(0.0)
    per_seed = [statistics.fmean(v) for v in AUROC["ganomaly"].values()]
    mean = table.cells[("mean", "ganomaly")]
    assert mean.mean == pytest.approx(statistics.fmean(per_seed))
    assert mean.std == pytest.approx(statistics.stdev(per_seed))


def test_the_cli_writes_markdown_csv_and_png_and_marks_cells_with_fewer_seeds(tmp_path, capsys):
    out = tmp_path / "report"
    main([*two_sweeps(tmp_path / "runs", failed=("ganomaly", 1, 2)), "--out", str(out)])
    printed = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["report.csv", "report.md", "report.png"]
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    assert md.split("\n", 2)[2] in printed
    assert "| normal_class | ganomaly | fanogan |" in md
    assert "| 0 class0 | 0.600 ± 0.100 | 0.850 ± 0.071 † |" in md
    assert "| 2 class2 | 0.650 ± 0.071 † | 0.900 ± 0.000 † |" in md, "the failed job leaves n = 2 at class 2"
    assert "ganomaly: seed(s) 1 miss a row and are left out of its mean." in md
    short = "ganomaly at 2: n = 2; ganomaly at mean: n = 2; fanogan: n = 2 in every row."
    assert f"† fewer seeds than the other cells: {short}" in md, "a column short everywhere is one entry"
    assert "data.seed follows seed: each seed also draws its own data" in md
    assert "not in the table, failed:" in md and "non-finite loss" in md
    rows = list(csv.DictReader((out / "report.csv").open()))
    ganomaly_mean = next(r for r in rows if r["row"] == "mean" and r["column"] == "ganomaly")
    assert ganomaly_mean["n"] == "2" and float(ganomaly_mean["mean"]) == pytest.approx((0.7 + 0.7) / 2)


def test_another_metric_is_reported_when_asked(tmp_path):
    table = build_table([read_run(p) for p in run_dirs(two_sweeps(tmp_path))], "image_f1_eer")
    assert table.cells[("0", "ganomaly")].mean == pytest.approx(0.3)
    with pytest.raises(UserError, match="no metric 'pixel_auroc'"):
        build_table([read_run(p) for p in run_dirs([str(tmp_path / "ganomaly")])], "pixel_auroc")


@pytest.mark.parametrize(
    ("key", "value"),
    [("image_size", 64), ("train_subset", None), ("_target_", "adrun.data.mnist.MNIST"), ("noise_std", 0.1)],
)
def test_runs_of_different_protocols_are_refused_naming_the_key(tmp_path, key, value):
    paths = two_sweeps(tmp_path)
    fake_run(tmp_path / "other" / "0", "ganomaly", 0, 5, 0.5, data={key: value})
    with pytest.raises(UserError, match=rf"data\.{key} is .* but .*one report is one protocol"):
        build_table([read_run(p) for p in run_dirs([*paths, str(tmp_path / "other")])], "image_auroc")


def test_channels_and_batch_size_are_how_a_method_is_fed_not_protocol(tmp_path):
    paths = two_sweeps(tmp_path)
    fake_run(tmp_path / "rgb" / "0", "ganomaly", 0, 7, 0.5, data={"channels": 3, "batch_size": 32})
    table = build_table([read_run(p) for p in run_dirs([*paths, str(tmp_path / "rgb")])], "image_auroc")
    assert table.cells[("0", "ganomaly")].n == 4


def test_two_runs_of_one_cell_and_seed_are_refused(tmp_path):
    paths = two_sweeps(tmp_path)
    fake_run(tmp_path / "again" / "0", "ganomaly", 0, 0, 0.5)
    with pytest.raises(UserError, match="two runs of ganomaly at normal_class=0 with seed 0"):
        build_table([read_run(p) for p in run_dirs([*paths, str(tmp_path / "again" / "*")])], "image_auroc")


def test_columns_are_tagged_with_the_experiment_and_method_overrides(tmp_path):
    for i, variant in enumerate(("ada", "anovae")):
        config, overrides = {"variant": variant}, [f"method.variant={variant}", "data.normal_class=0"]
        fake_run(tmp_path / "ada" / str(i), "ada", 0, 0, 0.5, method_config=config, overrides=overrides)
    runs = [(None, {}, []), ("ganomaly_anomalib", {"adv_loss": "outputs", "init": "torch"}, [])]
    runs.append((None, {"adv_loss": "outputs"}, ["method.adv_loss=outputs"]))
    runs.append((None, {}, ["data.batch_size=32", "data.root=/elsewhere"]))  # how it trains tags; where files are, not
    runs.append((None, {}, ["data.drop_last=false"]))
    for i, (experiment, config, overrides) in enumerate(runs):
        overrides = overrides + ([f"experiment={experiment}"] if experiment else [])
        fake_run(tmp_path / "g" / str(i), "ganomaly", 0, 0, 0.7, method_config=config, overrides=overrides)
    table = build_table([read_run(p) for p in run_dirs([str(tmp_path)])], "image_auroc")
    assert table.columns == [
        "ada[ada]",
        "ada[anovae]",
        "ganomaly",
        "ganomaly[ganomaly_anomalib]",
        "ganomaly[adv_loss=outputs]",
        "ganomaly[data.batch_size=32]",
        "ganomaly[data.drop_last=false]",
    ]
    swept = ["data.drop_last=False"]  # a multirun's spelling of the same value: the same column, not a new one
    fake_run(tmp_path / "g" / "8", "ganomaly", 0, 1, 0.7, overrides=swept)
    assert build_table([read_run(p) for p in run_dirs([str(tmp_path)])], "image_auroc").columns == table.columns
    fake_run(tmp_path / "g" / "9", "ganomaly", 0, 1, 0.7, method_config={"w_con": 40.0})  # the yaml edited since
    with pytest.raises(UserError, match=r"runs of ganomaly differ in method\.w_con \(None in .*, 40\.0 in"):
        build_table([read_run(p) for p in run_dirs([str(tmp_path / "g")])], "image_auroc")


def test_a_reference_block_is_a_column_beside_ours_with_the_difference(tmp_path):
    reference = {
        "source": "A et al., Table 1",
        "metric": "image_auroc",
        "protocol": "full test set",
        "values": {0: 0.5, 1: 0.5, 2: 0.5},
        "mean": 0.5,
    }
    for c, value in enumerate((0.6, 0.8, 0.7)):
        fake_run(tmp_path / "r" / str(c), "ognet", c, 0, value, reference=reference)
    table = build_table([read_run(p) for p in run_dirs([str(tmp_path / "r")])], "image_auroc")
    from adrun.reports import markdown

    md = markdown(table)
    assert "| normal_class | ognet | ognet reference | Δ |" in md
    assert "| 1 class1 | 0.800 | 0.500 | +0.300 |" in md and "| **mean** | 0.700 | 0.500 | +0.200 |" in md
    assert "ognet reference: A et al., Table 1 (full test set)" in md
    assert build_table([read_run(p) for p in run_dirs([str(tmp_path / "r")])], "image_f1_eer").references == {}
    bad = dict(reference)
    del bad["source"]
    fake_run(tmp_path / "s" / "0", "ognet", 0, 0, 0.6, reference=bad)
    with pytest.raises(UserError, match="lacks source"):
        build_table([read_run(tmp_path / "s" / "0")], "image_auroc")


def test_bad_paths_are_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path / "nothing")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("adrun-report: error: ") and "no such run or sweep dir" in err and "\n" not in err
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit):
        main([str(tmp_path / "empty")])
    assert "no results.json under" in capsys.readouterr().err


def fake_peer_run(path, normal_class, seed, auroc, data=None):
    """A run dir as scripts/peers/ writes it: adrun's data config, the peer's settings as the method block, and
    `peer` in results.json (no peer library needed). Its method is named `ganomaly` here, as adrun's is: the column
    comes from `peer`, never from the method's name."""
    fake_run(path, "ganomaly", normal_class, seed, auroc, data=data, method_config={"batch_size": 32})
    results = json.loads((path / "results.json").read_text())
    results["peer"] = {"library": "anomalib", "version": "2.7.0", "model": "Ganomaly"}
    (path / "results.json").write_text(json.dumps(results))
    config = yaml.safe_load((path / "config.yaml").read_text())
    config["method"]["_target_"] = "anomalib.Ganomaly"
    (path / "config.yaml").write_text(yaml.safe_dump(config))


def test_a_peer_run_is_its_own_column_beside_ours_under_the_same_protocol(tmp_path):
    paths = two_sweeps(tmp_path)
    for c, value in enumerate((0.65, 0.85, 0.75)):
        fake_peer_run(tmp_path / "peers" / str(c), c, 0, value, data={"channels": 3, "batch_size": 32})
    table = build_table([read_run(p) for p in run_dirs([*paths, str(tmp_path / "peers")])], "image_auroc")
    assert table.columns == ["ganomaly", "fanogan", "anomalib:ganomaly"]
    assert table.cells[("1", "anomalib:ganomaly")].mean == pytest.approx(0.85)
    assert table.cells[("mean", "anomalib:ganomaly")].mean == pytest.approx(0.75)
    assert table.cells[("0", "ganomaly")].n == 3, "the peer's runs are not counted as ganomaly's"
    from adrun.reports import markdown

    assert "| normal_class | ganomaly | fanogan | anomalib:ganomaly |" in markdown(table)


def test_a_peer_run_of_another_protocol_is_refused(tmp_path):
    paths = two_sweeps(tmp_path)
    fake_peer_run(tmp_path / "peers" / "0", 0, 0, 0.7, data={"test_subset": 500})
    with pytest.raises(UserError, match=r"data\.test_subset is .* but .*one report is one protocol"):
        build_table([read_run(p) for p in run_dirs([*paths, str(tmp_path / "peers")])], "image_auroc")


def scored_run(path, method, normal_class, seed, scores, labels):
    """A run dir whose scores.csv holds these scores of one shared test set (the same ids for every method)."""
    from adrun.stats import auroc, split

    fake_run(path, method, normal_class, seed, float(auroc(*split(scores, labels))))
    with open(path / "scores.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["index", "id", "label", "type", "score"])
        rows = enumerate(zip(labels, scores, strict=True))
        out.writerows([i, f"img{i}", int(label), "t", score] for i, (label, score) in rows)


def test_a_baseline_gives_each_column_its_delta_interval_and_paired_tests(tmp_path):
    """Three methods, 4 classes × 3 seeds on shared test images: `strong` is far better than `base`, `same` is `base`
    with a little noise. The Δ lines, the cell marks, report.csv's p-values and the ranks picture follow."""
    import numpy as np

    rng = np.random.default_rng(0)
    for c in range(4):
        for seed in range(3):
            labels = np.r_[np.zeros(150), np.ones(50)]
            signal = np.r_[rng.normal(0, 1, 150), rng.normal(1.0, 1, 50)]
            scored_run(tmp_path / "base" / f"{c}_{seed}", "ganomaly", c, seed, signal + rng.normal(0, 1.5, 200), labels)
            scored_run(
                tmp_path / "strong" / f"{c}_{seed}", "fanogan", c, seed, signal + rng.normal(0, 0.1, 200), labels
            )
            scored_run(tmp_path / "same" / f"{c}_{seed}", "ada", c, seed, signal + rng.normal(0, 1.5, 200), labels)
    out = tmp_path / "report"
    main([str(tmp_path / d) for d in ("base", "strong", "same")] + ["--baseline", "ganomaly", "--out", str(out)])
    text = (out / "report.md").read_text()
    strong = next(line for line in text.splitlines() if line.startswith("- fanogan − ganomaly"))
    assert "over 12 (row, seed) pairs" in strong and "n = 12" in strong and "the difference holds" in strong
    same = next(line for line in text.splitlines() if line.startswith("- ada − ganomaly"))
    assert "not shown" in same
    rows = {r["column"]: r for r in csv.DictReader((out / "report.csv").open()) if r["row"] == "0"}
    assert rows["fanogan"]["baseline"] == "ganomaly" and float(rows["fanogan"]["p_holm"]) < 0.05
    assert "▲" in next(line for line in text.splitlines() if line.startswith("| 0 "))
    deltas = {r["column"]: r for r in csv.DictReader((out / "report.csv").open()) if r["row"].startswith("Δ")}
    assert float(deltas["fanogan"]["low"]) > 0 and float(deltas["ada"]["low"]) < 0 < float(deltas["ada"]["high"])
    assert "average rank over 4 rows (1 = best): fanogan 1.00" in text and "Friedman" in text
    assert (out / "report_ranks.png").stat().st_size > 1000


def test_a_design_that_cannot_reach_significance_says_so(tmp_path):
    """Three seeds of one row: the exact two-sided Wilcoxon on 3 pairs cannot go below p = 0.25, and the report says
    so instead of letting 'not significant' read as 'no difference'."""
    for seed in range(3):
        fake_run(tmp_path / "a" / str(seed), "ganomaly", 0, seed, 0.6 + 0.01 * seed)
        fake_run(tmp_path / "b" / str(seed), "fanogan", 0, seed, 0.9 + 0.01 * seed)
    out = tmp_path / "report"
    main([str(tmp_path / "a"), str(tmp_path / "b"), "--baseline", "ganomaly", "--out", str(out)])
    text = (out / "report.md").read_text()
    assert "n = 3: p = 0.25" in text and "This design cannot reach p < 0.05" in text and "add seeds" in text


def test_an_interval_that_excludes_zero_beside_a_test_that_does_not_reject_is_said(tmp_path):
    """Five rows, one seed, every difference positive: the bootstrap interval lies above 0, yet the exact Wilcoxon on
    5 pairs cannot go below p = 0.0625. The line names the disagreement and whose verdict it is."""
    for c in range(5):
        fake_run(tmp_path / "a" / str(c), "ganomaly", c, 0, 0.6)
        fake_run(tmp_path / "b" / str(c), "fanogan", c, 0, 0.6 + 0.01 * (c + 1))
    out = tmp_path / "report"
    main([str(tmp_path / "a"), str(tmp_path / "b"), "--baseline", "ganomaly", "--out", str(out)])
    line = next(x for x in (out / "report.md").read_text().splitlines() if x.startswith("- fanogan − ganomaly"))
    assert "[+0.0" in line and "not shown" in line
    assert "the interval excludes 0 but the Holm-adjusted test does not reject; the verdict is the test's" in line


def test_an_unknown_baseline_is_one_line(tmp_path, capsys):
    fake_run(tmp_path / "a" / "0", "ganomaly", 0, 0, 0.6)
    with pytest.raises(SystemExit) as stop:
        main([str(tmp_path / "a"), "--baseline", "nope", "--out", str(tmp_path / "r")])
    assert stop.value.code == 2 and "--baseline nope: no such column" in capsys.readouterr().err
