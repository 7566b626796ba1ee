"""OmegaConf resolvers adrun's configs use (conf/config.yaml, conf/launcher/local.yaml); importing this module
registers them.

adrun.cli imports it before Hydra composes, and so does every process a launcher starts for a job, since it unpickles
adrun.cli's task function there.

- `${adrun.cpus:}`: the CPU cores this process may run on; `${adrun.cpus:2}`: half of them, at least 1.
- `${adrun.run_kind:mode,method,data}`: where a run's dir goes under outputs/ (conf/config.yaml).
- `${adrun.threads_per_job:N}`: the cores shared between N jobs running at once, at least 1 each; N ≤ 0 counts as
  joblib's n_jobs does (-1: one job per core, -2: all cores but one, …).
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


MODES = ("train", "test", "predict")


def run_kind(mode: str, method: str, data: str) -> str:
    """The run dir's middle: `runs/<method>/<data>` for training, `test` or `predict` for a checkpoint's later use
    (whose method and data come from the checkpoint, not from the command line's defaults). An unknown mode is refused
    here, before Hydra makes a dir named after it."""
    from adrun.errors import check_choice

    check_choice("mode", mode, MODES)
    return f"runs/{method}/{data}" if mode == "train" else str(mode)


RESOLVERS = {"adrun.cpus": cpus, "adrun.threads_per_job": threads_per_job, "adrun.run_kind": run_kind}
for name, resolver in RESOLVERS.items():
    if not OmegaConf.has_resolver(name):
        OmegaConf.register_new_resolver(name, resolver)
