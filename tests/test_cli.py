"""The command line as a user meets it: help and config printing (bad input: tests/test_bad_input.py)."""

from tests.conftest import adrun


def test_help_is_a_map_naming_every_option_of_every_group_and_the_modes():
    import re

    from adrun.cli import config_dir

    out = adrun("--help", cwd=None)
    assert out.returncode == 0
    listing = out.stdout.split("Groups (group=option)")[1].split("Keys you will want")[0]
    blocks = dict(re.findall(r"^  (\w+)=([^=]*?)(?=^  \w+=|\Z)", listing, flags=re.M | re.S))
    assert set(blocks) == {"method", "data", "hardware", "logger", "experiment", "launcher"}, "conf/shared is internal"
    for group, text in blocks.items():
        options = {p.stem for p in (config_dir() / group).glob("*.yaml")}
        named = set(re.findall(r"\w+", text))
        assert options <= named, f"--help misses {group} options {options - named}"
    for usage in ("mode=test ckpt=", "mode=predict ckpt=", "input=", "threshold=", "resume=true", "adrun-report"):
        assert usage in out.stdout


def test_cfg_job_prints_the_composed_config_with_overrides():
    out = adrun("--cfg", "job", "method.w_con=10", "data=synthetic", cwd=None)
    assert out.returncode == 0
    assert "w_con: 10" in out.stdout and "adrun.data.synthetic.Synthetic" in out.stdout
