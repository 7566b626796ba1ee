"""Sweeps through Hydra's launcher plugins (conf/launcher/): parallel jobs on one machine, and SLURM through submitit,
whose local executor runs the same submission path without a cluster."""

import csv
import json

import pytest
import yaml
from hydra.errors import MissingConfigException

from adrun.errors import one_line
from adrun.resolvers import threads_per_job
from tests.conftest import SMALL, adrun

TINY = (*SMALL, "method.epochs=1")


def job_results(sweep_dir, jobs: int) -> list[dict]:
    results = [json.loads((sweep_dir / str(job) / "results.json").read_text()) for job in range(jobs)]
    assert [r["status"] for r in results] == ["ok"] * jobs
    return results


def test_local_runs_the_jobs_side_by_side_and_shares_the_cores(tmp_path, adrun_here):
    sweep = tmp_path / "sweep"
    code, out, err = adrun_here(
        "-m",
        "launcher=local",
        "launcher.n_jobs=2",
        "data=synthetic",
        "data.normal_class=0,1",
        *TINY,
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert code == 0, err[-2000:]
    assert "Joblib.Parallel(n_jobs=2" in out + err
    job_results(sweep, 2)
    configs = [yaml.safe_load((sweep / str(job) / "config.yaml").read_text()) for job in range(2)]
    assert {c["threads"] for c in configs} == {threads_per_job(2)}
    assert {c["hardware"]["num_workers"] for c in configs} == {0}
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert [r["data.normal_class"] for r in rows] == ["0", "1", "mean of 2"]
    assert (sweep / "summary.md").is_file()


def test_slurm_local_submits_a_job_per_class_and_writes_the_summary(tmp_path, adrun_here):
    sweep = tmp_path / "sweep"
    code, _, err = adrun_here(
        "-m",
        "launcher=slurm_local",
        "data=digits",
        "data.normal_class=0,1",
        *TINY,
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert code == 0, err[-2000:]
    job_results(sweep, 2)
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert [r["job"] for r in rows] == ["0", "1", "mean"]
    aurocs = [float(r["image_auroc"]) for r in rows]
    assert aurocs[2] == pytest.approx(sum(aurocs[:2]) / 2)
    markdown = (sweep / "summary.md").read_text()
    assert "| mean | mean of 2 |" in markdown
    # submitit's own folder (pickled jobs, each job's stdout and stderr) lies inside the sweep dir, not in cwd
    assert len(list((sweep / ".submitit").glob("*/*_log.out"))) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["sweep"]


def test_slurm_puts_the_cluster_keys_into_the_launcher_without_submitting(tmp_path):
    keys = ("launcher.partition=gpu", "launcher.gpus_per_node=4", "launcher.timeout_min=720", "hydra.launcher.nodes=2")
    out = adrun("--cfg", "all", "--resolve", "launcher=slurm", *keys, f"hydra.sweep.dir={tmp_path}/sweep", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    cfg = yaml.safe_load(out.stdout)
    launcher = cfg["hydra"]["launcher"]
    assert launcher["_target_"].endswith("submitit_launcher.SlurmLauncher")
    assert (launcher["partition"], launcher["gpus_per_node"], launcher["tasks_per_node"]) == ("gpu", 4, 4)
    assert (launcher["timeout_min"], launcher["nodes"], launcher["cpus_per_task"]) == (720, 2, 8)
    assert launcher["submitit_folder"] == f"{tmp_path}/sweep/.submitit/%j"
    # the job follows what is submitted: one DDP rank per task, on every node
    trainer = cfg["hardware"]["trainer"]
    assert (trainer["accelerator"], trainer["devices"], trainer["num_nodes"]) == ("gpu", 4, 2)
    assert cfg["threads"] == 8
    assert list(tmp_path.iterdir()) == []  # composing submits nothing and writes nothing


def test_a_missing_launcher_plugin_is_one_line_naming_the_extra():
    error = MissingConfigException("Could not find 'hydra/launcher/joblib'", "hydra/launcher/joblib", ["basic"])
    message = one_line(error)
    assert message is not None and "\n" not in message
    assert "joblib" in message and 'pip install -e ".[cluster]"' in message


@pytest.mark.parametrize(("n_jobs", "cores", "threads"), [(2, 2, 1), (3, 16, 5), (-1, 8, 1), (-2, 8, 1), (32, 4, 1)])
def test_threads_per_job_shares_the_cores(monkeypatch, n_jobs, cores, threads):
    monkeypatch.setattr("adrun.resolvers.usable_cpus", lambda: cores)
    assert threads_per_job(n_jobs) == threads


def local_jobs(jobs: int, *overrides: str) -> list[dict]:
    """What jobs 0 … jobs-1 of `adrun -m launcher=local <overrides>` resolve to: n_jobs, threads, devices."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from adrun.cli import config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        composed = compose(config_name="config", overrides=["launcher=local", *overrides], return_hydra_config=True)
    resolved = []
    try:
        for job in range(jobs):
            cfg = composed.copy()  # set_config makes the hydra node read-only
            with open_dict(cfg):
                cfg.hydra.job.num = job
            HydraConfig.instance().set_config(cfg)
            devices = cfg.hardware.trainer.devices
            devices = list(devices) if not isinstance(devices, int) else devices
            resolved.append({"n_jobs": cfg.hydra.launcher.n_jobs, "threads": cfg.threads, "devices": devices})
    finally:
        HydraConfig.instance().cfg = None
    return resolved


@pytest.mark.parametrize(("gpus", "jobs_per_gpu", "n_jobs", "threads"), [(2, 3, 6, 2), (4, 2, 8, 2), (1, 2, 2, 8)])
def test_local_runs_jobs_per_gpu_on_each_gpu_round_robin(monkeypatch, gpus, jobs_per_gpu, n_jobs, threads):
    monkeypatch.setattr("torch.cuda.device_count", lambda: gpus)
    monkeypatch.setattr("adrun.resolvers.usable_cpus", lambda: 16)
    jobs = local_jobs(n_jobs + 1, "hardware=gpu", f"launcher.jobs_per_gpu={jobs_per_gpu}")
    assert {(job["n_jobs"], job["threads"]) for job in jobs} == {(n_jobs, threads)}
    assert [job["devices"] for job in jobs] == [[k % gpus] for k in range(n_jobs + 1)]


def test_local_on_the_cpu_or_without_gpus_shares_the_cores_as_before(monkeypatch):
    monkeypatch.setattr("adrun.resolvers.usable_cpus", lambda: 16)
    monkeypatch.setattr("torch.cuda.device_count", lambda: 2)
    assert local_jobs(2, "hardware=cpu") == [{"n_jobs": 8, "threads": 2, "devices": 1}] * 2  # GPUs, a CPU profile
    monkeypatch.setattr("torch.cuda.device_count", lambda: 0)
    assert local_jobs(1, "hardware=gpu") == [{"n_jobs": 8, "threads": 2, "devices": 1}]
    assert local_jobs(1, "hardware=gpu", "launcher.n_jobs=4")[0]["threads"] == 4
    with pytest.raises(Exception, match=r"launcher\.jobs_per_gpu must be a positive integer, got 0"):
        local_jobs(1, "launcher.jobs_per_gpu=0")
