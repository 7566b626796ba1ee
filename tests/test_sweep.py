"""The multirun summary: one row per job and the mean over the swept data.normal_class."""

import csv
import json

import pytest

from adrun.sweep import write_summary


def fake_job(sweep_dir, job, overrides, auroc, status="ok"):
    (sweep_dir / str(job)).mkdir(parents=True)
    results = {"status": status, "method": "ganomaly", "data": "mvtec", "overrides": overrides}
    if status == "ok":
        results["metrics"] = {"image_auroc": auroc, "image_f1": 0.5}
    else:
        results["error"] = "non-finite loss: train/loss_g = nan"
    (sweep_dir / str(job) / "results.json").write_text(json.dumps(results))


def test_ten_classes_give_ten_rows_and_their_mean(tmp_path):
    for c in range(10):
        fake_job(tmp_path, c, [f"data.normal_class={c}"], auroc=c / 10)
    rows = list(csv.DictReader((tmp_path / "summary.csv").open())) if write_summary(tmp_path) else []
    assert [r["job"] for r in rows] == [str(c) for c in range(10)] + ["mean"]
    assert float(rows[-1]["image_auroc"]) == pytest.approx(0.45)
    markdown = (tmp_path / "summary.md").read_text().splitlines()
    assert markdown[0] == "`method=ganomaly` `data=mvtec`" and markdown[1] == ""  # named even as defaults
    assert len(markdown) == 2 + 2 + 11 and "| mean | mean of 10 |" in markdown[-1] and "0.4500" in markdown[-1]


def test_means_are_taken_per_setting_of_the_other_overrides(tmp_path):
    job = 0
    for method in ("a", "b"):
        for c in range(3):
            fake_job(tmp_path, job, [f"method={method}", f"data.normal_class={c}"], auroc=0.5 if method == "a" else 0.9)
            job += 1
    table = write_summary(tmp_path)
    means = [row for row in table if row["job"] == "mean"]
    assert [(m["method"], m["image_auroc"]) for m in means] == [("a", 0.5), ("b", 0.9)]


def test_a_real_sweep_writes_the_table_and_adrun_report_reads_it(tmp_path, adrun_here, capsys):
    code, out, err = adrun_here(
        "-m",
        "data.normal_class=range(3)",
        "method.epochs=1",
        "data.image_size=16",
        "+reference.source=a test",
        "+reference.metric=image_auroc",
        "+reference.mean=0.5",
        "hydra.sweep.dir=sweep",
        cwd=tmp_path,
    )
    assert code == 0, err[-2000:]
    assert f"sweep summary: {(tmp_path / 'sweep' / 'summary.md').resolve()}" in out, "absolute, as the runs' paths"
    rows = list(csv.DictReader((tmp_path / "sweep" / "summary.csv").open()))
    assert [r["data.normal_class"] for r in rows] == ["0", "1", "2", "mean of 3"]
    aurocs = [float(r["image_auroc"]) for r in rows]
    assert aurocs[3] == pytest.approx(sum(aurocs[:3]) / 3)
    from adrun.reports import main as report

    report([str(tmp_path / "sweep"), "--out", str(tmp_path / "report")])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| normal_class | ganomaly[epochs=1] | ganomaly[epochs=1] reference | Δ |"
    assert lines[-3] == "- ganomaly[epochs=1] reference: a test" and lines[-1].startswith("report: ")
    mean = f"| **mean** | {aurocs[3]:.3f} | 0.500 | {aurocs[3] - 0.5:+.3f} |"
    assert mean in lines and lines[2].startswith("| 0 |")


SEEDS = {0: [0.6, 0.8], 1: [0.7, 0.9], 2: [0.5, 1.0]}  # seed → AUROC of category bottle, cable


def seeded_sweep(sweep_dir, failed=None):
    job = 0
    for seed, aurocs in SEEDS.items():
        for category, auroc in zip(("bottle", "cable"), aurocs, strict=True):
            status = "failed" if (seed, category) == failed else "ok"
            fake_job(sweep_dir, job, [f"data.category={category}", f"seed={seed}"], auroc, status)
            job += 1


def test_seeds_become_mean_and_sample_std_and_the_category_mean_is_over_per_seed_means(tmp_path):
    import statistics

    seeded_sweep(tmp_path)
    table = write_summary(tmp_path)
    grouped = {r["data.category"]: r for r in table if r["job"] == "mean ± std"}
    assert grouped["bottle"]["image_auroc"] == pytest.approx(0.6)
    assert grouped["bottle"]["image_auroc_std"] == pytest.approx(statistics.stdev([0.6, 0.7, 0.5]))  # n − 1
    assert grouped["cable"]["n"] == 3 and grouped["cable"]["seed"] == "3 runs"
    (mean,) = [r for r in table if r["job"] == "mean"]
    per_seed = [statistics.fmean(a) for a in SEEDS.values()]  # 0.7, 0.8, 0.75
    assert mean["data.category"] == "mean of 2" and mean["n"] == 3
    assert mean["image_auroc"] == pytest.approx(0.75) and mean["image_auroc_std"] == pytest.approx(
        statistics.stdev(per_seed)
    )
    markdown = (tmp_path / "summary.md").read_text()
    assert markdown.startswith("`method=ganomaly` `data=mvtec`"), "the header names the method and data, defaults too"
    assert "| mean ± std | bottle | 3 runs |" in markdown and "0.6000 ± 0.1000" in markdown
    assert "| mean | mean of 2 |" in markdown and "mean ± sample std" in markdown
    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert len(rows) == 6 + 2 + 1 and {"n", "image_auroc_std"} <= set(rows[0]), "every job's row stays in the csv"


def test_a_failed_job_is_excluded_and_said_not_a_vanished_mean(tmp_path):
    seeded_sweep(tmp_path, failed=(1, "cable"))
    table = write_summary(tmp_path)
    cable = next(r for r in table if r["job"] == "mean ± std" and r["data.category"] == "cable")
    assert cable["n"] == 2 and cable["seed"] == "2 of 3" and cable["image_auroc"] == pytest.approx(0.9)
    (mean,) = [r for r in table if r["job"] == "mean"]
    assert mean["data.category"] == "mean of 2, 1 failed" and mean["n"] == 2, "seed 1 misses cable: left out"
    assert mean["image_auroc"] == pytest.approx((0.7 + 0.75) / 2), "as adrun-report's mean row (tables.aggregate)"
    assert "- job 3 `data.category=cable` `seed=1` failed: non-finite loss" in (tmp_path / "summary.md").read_text()


def test_jobs_that_differ_only_in_how_they_ran_are_listed_without_means(tmp_path):
    for job, threads in enumerate((1, 2)):
        fake_job(tmp_path, job, [f"threads={threads}", "data.category=bottle", "seed=0"], auroc=0.7)
    table = write_summary(tmp_path)
    assert [r["job"] for r in table] == ["0", "1"]
    assert "No mean rows: two runs of " in (tmp_path / "summary.md").read_text()
