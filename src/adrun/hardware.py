"""The hardware profile's switches that act on the method rather than on the Trainer, and their checks.

- `hardware.channels_last`: the networks' weights, and every batch's images (`ChannelsLast`), in channels_last memory
  format, the layout tensor cores' convolutions want.
- `hardware.compile`: torch.compile of the method's networks (its `nn.Module` children, ModuleLists opened), each
  through the entry point the method calls (`forward`, or PatchNet's `dense`). torch compiles at a network's first
  call; if that fails (no C++ compiler or Triton, an unsupported op, …) every network goes back to its plain method for
  the rest of the run and one line on the `adrun` logger says so. The failing call is run again uncompiled: torch
  compiles a frame before it runs any of it, so nothing is done twice. A method's `uncompiled` networks stay plain
  (f-AnoGAN's WGAN-GP critic: torch.compile has no double backward, and that fails in backward, past the fallback).
- `hardware.trainer.precision`: checked here (`check_precision`); Lightning applies it.
"""

from __future__ import annotations

import logging

import torch
from pytorch_lightning.callbacks import Callback
from torch import nn

from adrun.errors import UserError, check_choice

PRECISIONS = ("32-true", "16-mixed", "bf16-mixed")
ENTRY_POINTS = ("forward", "dense")  # how the methods call their networks (dense: the Students' PatchNet)
log = logging.getLogger("adrun")


def check_switches(hardware) -> None:
    """`hardware.channels_last` and `hardware.compile` are booleans (absent: false)."""
    for key in ("channels_last", "compile"):
        value = hardware.get(key, False)
        if not isinstance(value, bool):
            raise UserError(f"hardware.{key} must be true or false, got {value!r}")


def check_precision(precision, accelerator: str) -> None:
    """The precisions every method trains in; fp16 autocast only on a GPU (Lightning would swap in bf16 silently)."""
    check_choice("hardware.trainer.precision", precision, PRECISIONS)
    if precision == "16-mixed" and accelerator == "cpu":
        raise UserError("hardware.trainer.precision=16-mixed needs a GPU; on the CPU use bf16-mixed (or 32-true)")


def apply_switches(module: nn.Module, hardware) -> None:
    """channels_last and compile on a built method (after its weights are loaded)."""
    if hardware.get("channels_last", False):
        module.to(memory_format=torch.channels_last)
    if hardware.get("compile", False):
        compile_networks(module)


def networks(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """The method's networks with their names: its children that hold parameters, containers opened."""
    found = []
    for name, child in module.named_children():
        if isinstance(child, nn.ModuleList | nn.ModuleDict):
            found += networks(child, f"{prefix}{name}.")
        elif next(child.parameters(), None) is not None:
            found.append((f"{prefix}{name}", child))
    return found


class Compiled:
    """What a network's entry point becomes: the compiled method, or after a failure (anywhere) the plain one."""

    def __init__(self, switch: CompileSwitch, plain, compiled):
        self.switch, self.plain, self.compiled = switch, plain, compiled

    def __call__(self, *args, **kwargs):
        if self.switch.on:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as error:
                self.switch.off(error)
        return self.plain(*args, **kwargs)


class CompileSwitch:
    """The networks compiled in one run, and turning them all back to plain methods at the first failure."""

    def __init__(self) -> None:
        self.on, self.patched = True, []

    def compile(self, name: str, net: nn.Module) -> None:
        for entry in ENTRY_POINTS:
            if hasattr(type(net), entry):
                setattr(net, entry, Compiled(self, getattr(net, entry), torch.compile(getattr(net, entry))))
                self.patched.append((net, entry))
        log.debug(f"hardware.compile: {name} compiled")

    def off(self, error: Exception) -> None:
        self.on = False
        for net, entry in self.patched:
            delattr(net, entry)  # the instance attribute goes; the class's plain method shows again
        reason = " ".join(f"{type(error).__name__}: {error}".split())[:200]
        log.warning(f"hardware.compile=true: torch.compile failed ({reason}); the run goes on uncompiled")


def compile_networks(module: nn.Module) -> CompileSwitch:
    switch = CompileSwitch()
    try:
        for name, net in networks(module):
            if name in getattr(module, "uncompiled", ()):
                log.info(f"hardware.compile: {name} stays uncompiled ({type(module).__name__}.uncompiled)")
                continue
            switch.compile(name, net)
    except Exception as error:  # torch.compile itself refused (e.g. an unsupported Python)
        switch.off(error)
    return switch


class ChannelsLast(Callback):
    """Every batch's images in channels_last memory format before the step sees them (the batch dict, in place)."""

    @staticmethod
    def convert(batch) -> None:
        image = batch.get("image") if isinstance(batch, dict) else None
        if torch.is_tensor(image) and image.dim() == 4:
            batch["image"] = image.contiguous(memory_format=torch.channels_last)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.convert(batch)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self.convert(batch)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self.convert(batch)

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self.convert(batch)
