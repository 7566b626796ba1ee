"""Shared test helpers: compose adrun's real config exactly as the CLI does, with overrides."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from adrun.cli import config_dir

# Every metric results.json holds for a method without score variants on data with masks.
METRICS_WITH_MASKS = {"image_auroc", "image_ap", "image_f1", "image_eer", "image_f1_eer", "pixel_auroc", "pixel_aupro"}
METRICS_WITH_MASKS |= {"image_fpr_at_threshold", "image_tpr_at_threshold"}  # at the threshold from validation normals
TINY = ["data=synthetic", "data.image_size=16", "method.epochs=1", "data.batch_size=8", "trainer.log_every_n_steps=1"]


def composed(*overrides: str):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def one_line(error: pytest.ExceptionInfo) -> str:
    """The message of a raised UserError, asserted to be a single line."""
    message = str(error.value)
    assert "\n" not in message
    return message


def one_line_error(make) -> str:
    """The one-line UserError message that `make()` raises."""
    from adrun.errors import UserError

    with pytest.raises(UserError) as error:
        make()
    return one_line(error)


COMMON = ("data.image_size=16", "method.epochs=1", "data.batch_size=8", "trainer.log_every_n_steps=1")


def run_on_fixture(tmp_path: Path, *overrides: str) -> dict:
    """One tiny epoch of the default method on a dataset fixture, through adrun.cli.run, into tmp_path/run."""
    from adrun.cli import run

    return run(composed(*COMMON, f"data.cache_dir={tmp_path}/cache", *overrides), run_dir=tmp_path / "run")


@pytest.fixture
def tiny_run(tmp_path: Path):
    """A whole run (synthetic data, 16 px, one epoch) in tmp_path; returns (results, run_dir)."""
    from adrun.cli import run

    def go(*overrides: str):
        run_dir = tmp_path / "run"
        return run(composed(*TINY, *overrides), run_dir=run_dir), run_dir

    return go
