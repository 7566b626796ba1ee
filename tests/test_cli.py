"""The command line as a user meets it: help, config printing, and one-line errors with a non-zero exit."""

import subprocess
import sys

import pytest


def adrun(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "adrun", *args], capture_output=True, text=True, timeout=240, cwd=cwd)


def test_help_lists_the_groups():
    out = adrun("--help")
    assert out.returncode == 0
    listing = out.stdout.split("== Config ==")[0].splitlines()
    groups = dict(line.split(": ", 1) for line in listing if line.startswith(("method: ", "data: ", "hardware: ")))
    assert "ganomaly" in groups["method"].split(", ") and groups["hardware"] == "cpu, gpu"
    assert {"digits", "mnist", "fashion_mnist", "cifar10", "caltech256", "ped2", "mvtec", "oct", "folder"} <= set(
        groups["data"].split(", ")
    )


def test_cfg_job_prints_the_composed_config_with_overrides():
    out = adrun("--cfg", "job", "method.w_con=10", "data=synthetic")
    assert out.returncode == 0
    assert "w_con: 10" in out.stdout and "adrun.data.synthetic.Synthetic" in out.stdout


BAD = {
    "unknown method": (["method=foo"], "unknown method 'foo'; choose one of: "),
    "unknown dataset": (["data=bar"], "unknown data 'bar'; choose one of: caltech256, cifar10, digits"),
    "typo in a key": (["data.normal_clas=3"], "did you mean 'data.normal_class'?"),
    "size not a power of two": (["data.image_size=24"], "set data.image_size to 16, 32, 64"),
    "missing data root": (["data=mnist", "data.root=/nonexistent/mnist"], "/nonexistent/mnist/train-images-idx3-ubyte"),
    "normal_class outside": (["data.normal_class=10"], "data.normal_class=10 is not a class of Digits"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_and_a_non_zero_exit(case, tmp_path):
    args, expected = BAD[case]
    out = adrun(*args, cwd=tmp_path)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("adrun: error: ") and expected in lines[0], out.stderr
    assert not list(tmp_path.glob("outputs/**/results.json")), "a failed run leaves no result"
