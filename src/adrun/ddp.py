"""Local DDP ranks started by adrun itself, and where a process stands among a run's ranks. A leaf: no adrun imports.

Lightning's own launcher re-runs `sys.argv` in each new process. Under Hydra that re-runs a whole multirun (`-m` and
its sweep are in argv) and, inside a joblib or submitit job, argv is not adrun's at all. So when a run asks for several
processes on this node and nothing outside started them (torchrun, SLURM's srun), the runner starts ranks
1…n−1, each entering the run at a function it names with the plan as JSON, and with the environment that tells
Lightning the processes exist (`LOCAL_RANK`, `NODE_RANK`, `MASTER_ADDR`, `MASTER_PORT`). Rank 0 is the calling process.

The ranks are forked from multiprocessing's fork server, which imports the entry's module once (torch, Lightning,
torchmetrics: ~8 s of CPU) and touches no GPU: the next DDP run of a sweep in this process starts its ranks at once.
Each rank takes the caller's environment and working directory as they are at its start, as a new process would.
The extra ranks' stdout is dropped and their stderr kept, so a failing rank says why. If an extra rank dies,
Lightning's process observer stops them all (as with its own launcher).
"""

from __future__ import annotations

import importlib
import multiprocessing
import multiprocessing.forkserver
import os
import socket

import torch

EXTERNAL_LAUNCHERS = ("LOCAL_RANK", "TORCHELASTIC_RUN_ID")  # set where something else made the ranks (and srun's)
RANK_ENVIRONMENT = ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_PORT", "MASTER_ADDR")


def local_process_count(trainer_args: dict) -> int:
    """How many processes a run needs on this node: the DDP device count, 1 without DDP."""
    if not str(trainer_args.get("strategy", "auto")).startswith("ddp"):
        return 1
    devices = trainer_args.get("devices", 1)
    if devices in (-1, "auto", "-1"):
        return max(torch.cuda.device_count(), 1) if trainer_args.get("accelerator") == "gpu" else os.cpu_count() or 1
    return devices if isinstance(devices, int) else len(devices)


def started_elsewhere() -> bool:
    """True where this process is one of several that torchrun, srun or adrun started."""
    return int(os.environ.get("SLURM_NTASKS", "1")) > 1 or any(key in os.environ for key in EXTERNAL_LAUNCHERS)


def global_rank() -> int:
    """This process's rank among all of a run's processes, from the launcher's environment (0 when alone)."""
    for key in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if key in os.environ:
            return int(os.environ[key])
    return 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Rank:
    """A forked rank with the face of `subprocess.Popen` that Lightning's process observer and `stop_ranks` use."""

    def __init__(self, process: multiprocessing.process.BaseProcess):
        self.process = process
        self.pid = process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.exitcode  # −N when killed by signal N, as Popen's

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, signal: int) -> None:
        os.kill(self.pid, signal)

    def kill(self) -> None:
        self.process.kill()

    def wait(self) -> int | None:
        self.process.join()
        return self.returncode


def enter_rank(entry: str, argument: str, environment: dict, cwd: str) -> None:
    """In a forked rank: the caller's environment and directory, stdout dropped, then `module:function(argument)`."""
    os.environ.clear()
    os.environ.update(environment)
    os.chdir(cwd)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    module, function = entry.split(":")
    getattr(importlib.import_module(module), function)(argument)


def start_ranks(entry: str, argument: str, processes: int) -> list[Rank]:
    """Ranks 1…processes−1 of this node, each calling `entry` ("module:function") with `argument`; this process
    becomes rank 0. The fork server starts (and imports the module) before the ranks' variables are set."""
    from lightning_fabric.strategies.launchers.subprocess_script import _launch_process_observer

    context = multiprocessing.get_context("forkserver")
    multiprocessing.forkserver.set_forkserver_preload([entry.split(":")[0]])
    multiprocessing.forkserver.ensure_running()
    os.environ.pop("SLURM_NTASKS", None)  # a one-task SLURM job: these ranks are ours, not SLURM's (Lightning checks)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), NODE_RANK="0", LOCAL_RANK="0")
    os.environ["WORLD_SIZE"] = str(processes)
    children = []
    for rank in range(1, processes):
        environment = dict(os.environ) | {"LOCAL_RANK": str(rank)}
        process = context.Process(target=enter_rank, args=(entry, argument, environment, os.getcwd()))
        process.start()
        children.append(Rank(process))
    _launch_process_observer(children)
    return children


def stop_ranks(children: list[Rank], failed: bool) -> None:
    """Waits for the extra ranks after a run, or kills them if rank 0 failed (they would wait in a collective forever).
    Rank 0's own environment is put back, so the next run of a sweep in this process starts clean."""
    for child in children:
        if failed:
            child.kill()
        child.wait()
    if children:
        for key in RANK_ENVIRONMENT:
            os.environ.pop(key, None)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()  # Lightning keeps it until exit; the next run makes its own
    if not failed and (codes := [child.returncode for child in children if child.returncode]):
        raise RuntimeError(f"a DDP rank exited with status {codes[0]} (its error is above)")
