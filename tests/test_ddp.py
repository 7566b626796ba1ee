"""DDP on a machine without GPUs (`hardware=cpu_ddp`: two processes, gloo): every method trains, the test pass gathers
both ranks' scores, a checkpoint tests to the same metrics as in one process, and only rank 0 writes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

TINY = ["data=synthetic", "data.image_size=16", "data.batch_size=8"]
METHODS = {
    "ganomaly": ["method.epochs=2"],
    "anogan": [
        "method=anogan",
        "method.epochs=2",
        "method.iterations=3",
        "method.nz=8",
        "method.ngf=8",
        "method.ndf=8",
    ],
    "fanogan": ["method=fanogan", "method.gan_epochs=1", "method.encoder_epochs=1", "method.epochs=2", "method.nz=8"],
    "ognet": ["method=ognet", "data.image_size=20", "method.width=4", "method.low_epoch=1", "method.high_epoch=2"],
    "ada": ["method=ada", "method.epochs=2"],
    "students": ["method=students", "method.patch_sizes=[17]", "method.students=2", "method.epochs=1"],
}
EXTRA = {"ognet": ["method.phase2_iterations=3"], "students": ["method.teacher_iterations=3"]}


def adrun(*args: str, cwd: Path) -> dict:
    out = subprocess.run([sys.executable, "-m", "adrun", *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_and_tests_under_ddp(method, tmp_path):
    """Manual-optimisation GANs included: each backward leaves the other player's parameters without gradients."""
    cache = [f"method.teacher_cache={tmp_path}/teachers"] if method == "students" else []
    adrun(
        *TINY, *METHODS[method], *EXTRA.get(method, []), *cache, "hardware=cpu_ddp", "hydra.run.dir=run", cwd=tmp_path
    )
    saved = results(tmp_path / "run")
    assert saved["status"] == "ok" and saved["processes"] == 2
    assert saved["counts"]["test"] == 32, "the metrics cover both ranks' test samples, each once"
    assert saved["metrics"]["image_auroc"] is not None
    writers = {path.name.split(".")[-2] for path in (tmp_path / "run" / "tb").glob("events.out.tfevents.*")}
    assert len(writers) == 1, "only rank 0 (one process id) writes TensorBoard events"


def test_a_checkpoint_tests_to_the_same_metrics_in_one_process_and_in_two(tmp_path):
    adrun(*TINY, "method.epochs=2", "hydra.run.dir=trained", cwd=tmp_path)
    for hardware in ("cpu", "cpu_ddp"):
        adrun(
            *TINY, "method.epochs=2", "ckpt=trained", f"hardware={hardware}", f"hydra.run.dir={hardware}", cwd=tmp_path
        )
    one, two = results(tmp_path / "cpu"), results(tmp_path / "cpu_ddp")
    assert (one["processes"], two["processes"]) == (1, 2)
    assert one["metrics"] == two["metrics"] == results(tmp_path / "trained")["metrics"]
    assert (tmp_path / "cpu" / "scores.csv").read_text() == (tmp_path / "cpu_ddp" / "scores.csv").read_text()
