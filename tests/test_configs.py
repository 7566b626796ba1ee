"""Every config file composes, and a group's file name is its module's name (method=X ↔ adrun/methods/X.py)."""

import importlib

import pytest

from adrun.cli import config_dir
from tests.conftest import composed

GROUP_PACKAGE = {"method": "adrun.methods", "data": "adrun.data"}
FILES = sorted((p.parent.name, p.stem) for p in config_dir().glob("*/*.yaml") if p.parent.name != "shared")


def test_the_groups_exist():
    assert {"method", "data", "hardware"} <= {group for group, _ in FILES}


@pytest.mark.parametrize(("group", "name"), FILES)
def test_every_config_file_composes(group, name):
    cfg = composed(f"{group}={name}")
    if group == "experiment":  # a global package: it pins keys across groups and must name a paper's numbers
        assert "# @package _global_" in (config_dir() / group / f"{name}.yaml").read_text()
        return
    node = cfg[group]
    if group in GROUP_PACKAGE:
        module, cls = node._target_.rsplit(".", 1)
        assert module == f"{GROUP_PACKAGE[group]}.{name}", "the file name must be the module's name"
        assert hasattr(importlib.import_module(module), cls)
    if group == "hardware":
        assert {"accelerator", "devices", "precision"} <= set(node.trainer)
        assert isinstance(node.num_workers, int)


def test_defaults_are_the_main_job():
    cfg = composed()
    assert cfg.method._target_.endswith("GANomaly")
    assert cfg.data._target_.endswith("Digits")
    assert cfg.hardware.trainer.accelerator == "cpu"
    assert cfg.method.epochs == 15 and "max_epochs" not in cfg.trainer, "the method declares its epochs"
