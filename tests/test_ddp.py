"""DDP on a machine without GPUs (`hardware=cpu_ddp`: two processes, gloo): every method trains, the test pass gathers
both ranks' scores, a checkpoint tests — on other data too — to the same scores in one process and in two (the extra
rank runs the very plan rank 0 made), several DDP runs follow each other in one process, and only rank 0 writes."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from adrun.runner import say_what_trains
from tests.conftest import METHODS, RUN_DIR, SMALL, run, tiny


def results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


@pytest.fixture(scope="module")
def under_ddp(tmp_path_factory) -> Path:
    """Every method's tiny run under DDP, one after another with this process as rank 0 (as a sweep runs them): each
    run's process group must be gone before the next one makes its own."""
    runs = tmp_path_factory.mktemp("ddp")
    for method in METHODS:
        run(runs / method, *tiny(method, "hardware=cpu_ddp"))
    return runs


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_and_tests_under_ddp(method, under_ddp):
    """Manual-optimisation GANs included: each backward leaves the other player's parameters without gradients."""
    run_dir = under_ddp / method
    saved = results(run_dir)
    assert saved["status"] == "ok" and saved["processes"] == 2
    assert saved["counts"]["test"] == 32, "the metrics cover both ranks' test samples, each once"
    assert saved["metrics"]["image_auroc"] is not None
    writers = {path.name.split(".")[-2] for path in (run_dir / "tb").glob("events.out.tfevents.*")}
    assert len(writers) == 1, "only rank 0 (one process id) writes TensorBoard events"
    assert sorted(p.name for p in run_dir.iterdir()) == RUN_DIR, (
        "the plan reached the other rank as an argument, nothing of it in the run dir"
    )


def test_a_checkpoint_tests_on_other_data_to_the_same_scores_in_one_process_and_in_two(tmp_path, adrun_here):
    run(tmp_path / "trained", *SMALL, "method.epochs=2")  # the digits, normal class 0
    test = ("mode=test", f"ckpt={tmp_path / 'trained'}", "data.test_subset=100")
    code, _, err = adrun_here(
        "-m", *test, "data.normal_class=0,3", "hardware=cpu_ddp", "hydra.sweep.dir=ddp", cwd=tmp_path
    )
    assert code == 0, err[-3000:]
    for job, normal_class in enumerate((0, 3)):
        one = run(tmp_path / f"cpu{job}", *test, f"data.normal_class={normal_class}")
        two = results(tmp_path / "ddp" / str(job))
        assert (one["processes"], two["processes"]) == (1, 2)
        assert two["normal_class"] == [normal_class] and two["counts"]["test"] == 100, "rank 1 tested these data too"
        assert one["metrics"] == two["metrics"]
        cpu, ddp = (
            path.read_text()
            for path in (tmp_path / f"cpu{job}" / "scores.csv", tmp_path / "ddp" / str(job) / "scores.csv")
        )
        assert cpu == ddp


@pytest.mark.parametrize("devices, says", [(1, True), (2, False)])
def test_a_ddp_profile_left_with_one_device_says_it_trains_in_one_process(devices, says, caplog):
    """launcher=local gives each job one device: hardware=cpu_ddp then trains in one process, and the run says so."""
    args = {"accelerator": "cpu", "strategy": "ddp", "devices": devices}
    plan = SimpleNamespace(trainer_args=args, facts={"hardware": "cpu_ddp"}, mode="train", start=None)
    with caplog.at_level("INFO", logger="adrun"):
        say_what_trains(plan, SimpleNamespace(left_out_known_anomalies=0), writes=True)
    assert ("hardware=cpu_ddp asks for DDP, but this run has one device" in caplog.text) is says
