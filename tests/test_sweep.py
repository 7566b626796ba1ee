"""The multirun summary: one row per job and the mean over the swept data.normal_class."""

import csv
import json

import pytest

from adrun.sweep import write_summary


def fake_job(sweep_dir, job, overrides, auroc):
    (sweep_dir / str(job)).mkdir(parents=True)
    results = {"status": "ok", "overrides": overrides, "metrics": {"image_auroc": auroc, "image_f1": 0.5}}
    (sweep_dir / str(job) / "results.json").write_text(json.dumps(results))


def test_ten_classes_give_ten_rows_and_their_mean(tmp_path):
    for c in range(10):
        fake_job(tmp_path, c, [f"data.normal_class={c}"], auroc=c / 10)
    rows = list(csv.DictReader((tmp_path / "summary.csv").open())) if write_summary(tmp_path) else []
    assert [r["job"] for r in rows] == [str(c) for c in range(10)] + ["mean"]
    assert float(rows[-1]["image_auroc"]) == pytest.approx(0.45)
    markdown = (tmp_path / "summary.md").read_text().splitlines()
    assert len(markdown) == 2 + 11 and "| mean | mean of 10 |" in markdown[-1] and "0.4500" in markdown[-1]


def test_means_are_taken_per_setting_of_the_other_overrides(tmp_path):
    job = 0
    for method in ("a", "b"):
        for c in range(3):
            fake_job(tmp_path, job, [f"method={method}", f"data.normal_class={c}"], auroc=0.5 if method == "a" else 0.9)
            job += 1
    table = write_summary(tmp_path)
    means = [row for row in table if row["job"] == "mean"]
    assert [(m["method"], m["image_auroc"]) for m in means] == [("a", 0.5), ("b", 0.9)]


def test_a_real_sweep_writes_the_table(tmp_path, adrun_here):
    code, _, err = adrun_here(
        "-m",
        "data.normal_class=range(3)",
        "method.epochs=1",
        "data.image_size=16",
        f"hydra.sweep.dir={tmp_path}/sweep",
        cwd=tmp_path,
    )
    assert code == 0, err[-2000:]
    rows = list(csv.DictReader((tmp_path / "sweep" / "summary.csv").open()))
    assert [r["data.normal_class"] for r in rows] == ["0", "1", "2", "mean of 3"]
    aurocs = [float(r["image_auroc"]) for r in rows]
    assert aurocs[3] == pytest.approx(sum(aurocs[:3]) / 3)
