"""Never lose or fake a result: a run killed with SIGKILL resumes to the metrics of an uninterrupted run, a sweep run
again with resume=true skips finished jobs and resumes the others, and the same seed gives the same run."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import run, tiny

# Long enough (≈ 11 steps, 0.3–0.6 s an epoch here) that the kill, sent within 20 ms of the first checkpoint, lands
# inside training: two epochs are left to resume.
SLOW = tiny("ganomaly", "data.n_train=96", "method.epochs=3")


def adrun(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "adrun", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def status(run_dir: Path) -> str:
    return json.loads((run_dir / "results.json").read_text())["status"]


def test_a_killed_run_resumes_to_the_same_metrics(tmp_path, adrun_here):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    victim = adrun(*SLOW, f"hydra.run.dir={killed}", cwd=tmp_path)
    checkpoint = killed / "checkpoints" / "last.ckpt"
    while not checkpoint.exists() and victim.poll() is None:
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    assert status(killed) == "started", "the kill came too late to test anything"
    assert not (killed / "scores.csv").exists()
    epoch = torch.load(checkpoint, weights_only=True)["epoch"]
    assert epoch < 2

    run(whole, *SLOW)  # uninterrupted, in this process
    code, out, err = adrun_here(*SLOW, f"hydra.run.dir={killed}", "resume=true", cwd=tmp_path)
    assert code == 0, err
    assert f"continuing from {checkpoint}" in out
    resumed, whole_results = (json.loads((d / "results.json").read_text()) for d in (killed, whole))
    assert resumed["status"] == "ok" and resumed["continued_from"] == str(checkpoint)
    assert resumed["metrics"] == whole_results["metrics"]
    assert (killed / "scores.csv").read_text() == (whole / "scores.csv").read_text()


def test_resume_true_skips_a_finished_run_and_refuses_another_config(tmp_path):
    from adrun.errors import UserError

    first = run(tmp_path, *tiny())
    stamp = (tmp_path / "results.json").stat().st_mtime_ns
    again = run(tmp_path, *tiny("ganomaly", "resume=true"))
    assert again["metrics"] == first["metrics"] and (tmp_path / "results.json").stat().st_mtime_ns == stamp

    (tmp_path / "results.json").unlink()  # as if it had been killed during its test pass
    with pytest.raises(UserError, match=r"holds a run with another config \(method.w_con differ\)"):
        run(tmp_path, *tiny("ganomaly", "resume=true", "method.w_con=10"))
    with pytest.raises(UserError, match=r"already holds a run \(status started\); resume=true continues it"):
        (tmp_path / "results.json").write_text('{"status": "started"}')
        run(tmp_path, *tiny())


def test_a_sweep_run_again_with_resume_skips_finished_jobs_and_resumes_the_others(tmp_path, adrun_here):
    sweep = [*tiny("ganomaly", "method.epochs=2"), "data.normal_class=0,1", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    code, _, err = adrun_here("-m", *sweep, cwd=tmp_path)
    assert code == 0, err
    job0, job1 = tmp_path / "sweep" / "0", tmp_path / "sweep" / "1"
    stamp = (job0 / "results.json").stat().st_mtime_ns
    killed = json.loads((job1 / "results.json").read_text()) | {"status": "started"}  # what a killed job leaves
    (job1 / "results.json").write_text(json.dumps(killed))
    (job1 / "scores.csv").unlink()

    code, out, err = adrun_here("-m", *sweep, "resume=true", cwd=tmp_path)
    assert code == 0, err
    assert f"{job0} finished before" in out and f"continuing from {job1 / 'checkpoints' / 'last.ckpt'}" in out
    assert (job0 / "results.json").stat().st_mtime_ns == stamp
    assert status(job1) == "ok"
    summary = (tmp_path / "sweep" / "summary.md").read_text()
    assert "resume" not in summary and summary.count("| ok |") == 2 and "mean of 2" in summary


def test_the_same_seed_gives_the_same_run(tmp_path):
    a = run(tmp_path / "a", *tiny("ganomaly", "method.epochs=2"))
    b = run(tmp_path / "b", *tiny("ganomaly", "method.epochs=2"))
    assert a["metrics"] == b["metrics"]
    assert (tmp_path / "a" / "scores.csv").read_text() == (tmp_path / "b" / "scores.csv").read_text()
    run(tmp_path / "c", *tiny("ganomaly", "method.epochs=2", "seed=1"))
    assert (tmp_path / "c" / "scores.csv").read_text() != (tmp_path / "a" / "scores.csv").read_text()
