"""The examples, run as a researcher runs them: examples/tiny_ae (a method of one's own, benchmarked beside GANomaly by
its one script, then re-tested and used from its checkpoint alone, without its config dir) and
examples/quickstart.ipynb, executed top to bottom."""

import csv
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from PIL import Image

from tests.fixtures.idx import write_mnist

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TINY_AE = EXAMPLES / "tiny_ae"
# The budget protocol shrunk: 2 classes, 1 seed, 1 epoch, 16 px, 20 training normals and 60 test images of the fixture.
SHRINK = (
    "data.normal_class=0,1",
    "seed=0",
    "method.epochs=1",
    "data.train_subset=20",
    "data.test_subset=60",
    "data.image_size=16",
)

# torch's threads in the fresh processes (the sweep, the notebook's kernel): tiny models gain nothing from two, and two
# spin-waiting threads on a core another process holds cost ten times the CPU time.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def benched(tmp_path_factory) -> Path:
    """examples/tiny_ae/benchmark.sh, shrunk, on a Fashion-MNIST fixture (the published IDX files' format) found
    through ADRUN_DATA as a user's would be; returns the dir holding data/, cache/ and sweep/."""
    tmp = tmp_path_factory.mktemp("benchmark")
    write_mnist(tmp / "data" / "fashion-mnist", n_train=200, n_test=60)
    paths = {"ADRUN_DATA": tmp / "data", "ADRUN_CACHE": tmp / "cache", "SWEEP_DIR": tmp / "sweep"}
    env = os.environ | {name: str(path) for name, path in paths.items()} | ONE_THREAD
    done = subprocess.run(
        ["bash", str(TINY_AE / "benchmark.sh"), *SHRINK],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "| normal_class | tiny_ae[epochs=1] | ganomaly[epochs=1] |" in done.stdout, "the report, printed"
    return tmp


def tiny_ae_run(benched: Path, normal_class: int = 0) -> Path:
    """The sweep's tiny_ae run dir for that class."""
    for results in sorted((benched / "sweep").glob("*/results.json")):
        config = yaml.safe_load((results.parent / "config.yaml").read_text())
        if config["method"]["_target_"] == "tiny_ae.TinyAE" and config["data"]["normal_class"] == normal_class:
            return results.parent
    raise AssertionError(f"no tiny_ae run for class {normal_class} in {benched / 'sweep'}")


def test_the_benchmark_puts_tiny_ae_beside_ganomaly_in_the_report(benched):
    rows = list(csv.DictReader((benched / "sweep" / "report" / "report.csv").open()))
    cells = {(row["row"], row["column"]): float(row["mean"]) for row in rows}
    assert sorted({column for _, column in cells}) == ["ganomaly[epochs=1]", "tiny_ae[epochs=1]"]
    assert sorted({row for row, _ in cells}) == ["0", "1", "mean"]
    assert len(cells) == 6 and all(0 <= value <= 1 for value in cells.values()), cells
    assert (benched / "sweep" / "report" / "report.png").stat().st_size > 1000
    run_dir = tiny_ae_run(benched)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "ok" and results["method"] == "tiny_ae"
    assert cells[("0", "tiny_ae[epochs=1]")] == pytest.approx(results["metrics"]["image_auroc"])
    assert (run_dir / "checkpoints" / "last.ckpt").exists()


@pytest.fixture
def own_module_importable(benched, monkeypatch):
    """PYTHONPATH=examples/tiny_ae for a run in this process (sys.path), the data found as the benchmark found it,
    and no config dir anywhere."""
    monkeypatch.syspath_prepend(str(TINY_AE))
    monkeypatch.setenv("ADRUN_DATA", str(benched / "data"))
    monkeypatch.setenv("ADRUN_CACHE", str(benched / "cache"))


def test_mode_test_retests_the_own_method_from_its_checkpoint_alone(benched, own_module_importable, adrun_here):
    run_dir = tiny_ae_run(benched)
    out_dir = benched / "retest"
    code, out, err = adrun_here("mode=test", f"ckpt={run_dir}", f"hydra.run.dir={out_dir}", cwd=benched)
    assert code == 0, out[-2000:] + err[-2000:]
    retest = json.loads((out_dir / "results.json").read_text())
    trained = json.loads((run_dir / "results.json").read_text())
    assert retest["status"] == "ok" and retest["method"] == "tiny_ae"
    assert retest["metrics"]["image_auroc"] == pytest.approx(trained["metrics"]["image_auroc"], abs=1e-6), (
        "the same weights on the same test set"
    )


def test_mode_predict_scores_new_images_with_the_own_method(benched, own_module_importable, adrun_here):
    images = benched / "new_images"
    images.mkdir(exist_ok=True)
    for i in range(3):
        Image.new("L", (28, 28), color=40 + 80 * i).save(images / f"item{i}.png")
    out_dir = benched / "predict"
    run_dir = tiny_ae_run(benched)
    code, out, err = adrun_here(
        "mode=predict", f"ckpt={run_dir}", f"input={images}", f"hydra.run.dir={out_dir}", cwd=benched
    )
    assert code == 0, out[-2000:] + err[-2000:]
    rows = list(csv.DictReader((out_dir / "predictions.csv").open()))
    assert sorted(Path(row["path"]).name for row in rows) == ["item0.png", "item1.png", "item2.png"]
    assert all(row["decision"] in ("normal", "anomalous") for row in rows)
    assert len({row["score"] for row in rows}) == 3, "three different images, three scores"


def test_the_quickstart_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(EXAMPLES / "quickstart.ipynb", as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code), "committed with outputs cleared"
    monkeypatch.setenv("ADRUN_CACHE", str(tmp_path / "cache"))  # the kernel inherits this process's environment
    monkeypatch.setenv("OMP_NUM_THREADS", ONE_THREAD["OMP_NUM_THREADS"])
    # kernel python3: jupyter_client starts it with this interpreter (its argv's `python` is sys.executable)
    where = {"metadata": {"path": str(tmp_path)}}  # the kernel's working dir
    client = NotebookClient(notebook, timeout=120, kernel_name="python3", resources=where)
    client.execute()

    def output_of(tag: str) -> list:
        (cell,) = [cell for cell in code if tag in cell.metadata.get("tags", [])]
        return cell.outputs

    text = "".join(output.get("text", "") for output in output_of("report"))
    header = next(line for line in text.splitlines() if line.startswith("| "))
    assert "ganomaly" in header and "ada" in header, text
    lines = text.splitlines()
    row = lines[lines.index(header) + 2]  # one row: the runs share their protocol and normal class
    assert all(0 <= float(cell) <= 1 for cell in row.strip("|").split("|")[1:]), text
    assert any("image/png" in output.get("data", {}) for output in output_of("figure")), "the histogram, drawn"
    (loaded,) = [output for output in code[-1].outputs if output.output_type == "execute_result"]
    assert loaded["data"]["text/plain"] == "('adrun.methods.ada.ADA', True)", "adrun.load reads the run back"
    made = sorted(json.loads(path.read_text())["method"] for path in tmp_path.rglob("results.json"))
    assert made == ["ada", "ganomaly"], "the runs went to the notebook's working dir"
