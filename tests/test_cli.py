"""The command line as a user meets it: help and config printing (bad input: tests/test_bad_input.py)."""

from tests.conftest import adrun


def test_help_lists_the_groups():
    out = adrun("--help", cwd=None)
    assert out.returncode == 0
    listing = out.stdout.split("== Config ==")[0].splitlines()
    groups = dict(line.split(": ", 1) for line in listing if line.startswith(("method: ", "data: ", "hardware: ")))
    assert "ganomaly" in groups["method"].split(", ")
    assert groups["hardware"] == "cpu, cpu_ddp, gpu, multi_gpu, multi_node"
    assert {"digits", "mnist", "fashion_mnist", "cifar10", "caltech256", "ped2", "mvtec", "oct", "folder"} <= set(
        groups["data"].split(", ")
    )


def test_cfg_job_prints_the_composed_config_with_overrides():
    out = adrun("--cfg", "job", "method.w_con=10", "data=synthetic", cwd=None)
    assert out.returncode == 0
    assert "w_con: 10" in out.stdout and "adrun.data.synthetic.Synthetic" in out.stdout
