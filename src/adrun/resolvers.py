"""OmegaConf resolvers adrun's configs use (conf/config.yaml, conf/launcher/local.yaml); importing this module
registers them.

adrun.cli imports it before Hydra composes, and so does every process a launcher starts for a job, since it unpickles
adrun.cli's task function there.

- `${adrun.cpus:}`: the CPU cores this process may run on; `${adrun.cpus:2}`: half of them, at least 1.
- `${adrun.run_kind:mode,method,data,target}`: where a run's dir goes under outputs/ (conf/config.yaml).
- `${adrun.threads_per_job:N}`: the cores shared between N jobs running at once, at least 1 each; N ≤ 0 counts as
  joblib's n_jobs does (-1: one job per core, -2: all cores but one, …).
- `${adrun.local_jobs:accelerator,jobs_per_gpu}`: launcher=local's jobs at once: jobs_per_gpu per visible GPU under a
  GPU profile, else half the usable cores.
- `${adrun.job_devices:accelerator,job_number}`: a local sweep's job's Trainer `devices`: `[its GPU]`, round robin by
  job number, under a GPU profile where GPUs are visible; else 1 (a local sweep's job is one process).
"""

from __future__ import annotations

import os

from omegaconf import OmegaConf


def usable_cpus() -> int:
    """Cores in this process's affinity mask (what taskset or a batch scheduler left it), else all of them."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cpus(divisor: int = 1) -> int:
    return max(1, usable_cpus() // int(divisor))


def threads_per_job(n_jobs: int) -> int:
    n_jobs, cores = int(n_jobs), usable_cpus()
    running = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)
    return max(1, cores // running)


GPU_ACCELERATORS = ("gpu", "cuda", "auto")


def visible_gpus(accelerator: str) -> int:
    """The CUDA devices this process sees (after CUDA_VISIBLE_DEVICES), for a profile that uses them; else 0."""
    if accelerator not in GPU_ACCELERATORS:
        return 0
    import torch

    return torch.cuda.device_count()


def local_jobs(accelerator: str, jobs_per_gpu: int) -> int:
    if isinstance(jobs_per_gpu, bool) or not isinstance(jobs_per_gpu, int) or jobs_per_gpu < 1:
        from adrun.errors import UserError

        raise UserError(f"launcher.jobs_per_gpu must be a positive integer, got {jobs_per_gpu!r}")
    gpus = visible_gpus(accelerator)
    return jobs_per_gpu * gpus if gpus else cpus(2)


def job_devices(accelerator: str, job: int) -> list[int] | int:
    """Devices as a list of indices, not CUDA_VISIBLE_DEVICES: joblib reuses its worker processes, and a CUDA context
    made by an earlier job in the worker would ignore the variable; Lightning's `devices=[k]` moves every job."""
    gpus = visible_gpus(accelerator)
    return [int(job) % gpus] if gpus else 1


MODES = ("train", "test", "predict")


def run_kind(mode: str, method: str | None, data: str, target: str | None = None) -> str:
    """The run dir's middle: `runs/<method>/<data>` for training, `test` or `predict` for a checkpoint's later use
    (whose method and data come from the checkpoint, not from the command line's defaults). A method given by its
    target alone (`~method +method._target_=mine.TinyAE`) is named by its module (`mine`). An unknown mode is refused
    here, before Hydra makes a dir named after it."""
    from adrun.errors import check_choice

    check_choice("mode", mode, MODES)
    if method is None and target:
        method = str(target).rpartition(".")[0].rpartition(".")[2]
    return f"runs/{method}/{data}" if mode == "train" else str(mode)


RESOLVERS = {
    "adrun.cpus": cpus,
    "adrun.threads_per_job": threads_per_job,
    "adrun.run_kind": run_kind,
    "adrun.local_jobs": local_jobs,
    "adrun.job_devices": job_devices,
}
for name, resolver in RESOLVERS.items():
    if not OmegaConf.has_resolver(name):
        OmegaConf.register_new_resolver(name, resolver)
