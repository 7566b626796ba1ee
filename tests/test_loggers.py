"""Every logger holds what a run sent it, read back from its own store: CSV's files, MLflow through its client (a store
in the run dir, and a real `mlflow server` on 127.0.0.1), W&B's offline run, TensorBoard beside them; every figure is
also a PNG in the run dir. One tiny run feeds all four loggers at once (the server boots while it trains)."""

import csv
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import composed, run, tiny

TAGS = {"test/most_and_least_anomalous", "test/precision_recall", "test/roc_curve", "test/score_histogram"}
FIGURES = {f"{tag.replace('/', '__')}.png" for tag in TAGS}  # as <run dir>/figures/ and MLflow's figures/ hold them
SIZES = {"test__score_histogram.png": (600, 360), "test__roc_curve.png": (420, 420)}  # figures.py's sizes at their dpi
SIZES |= {"test__precision_recall.png": (420, 420), "test__most_and_least_anomalous.png": (972, 936)}
SERVER_START_S = 60  # the longest wait for `mlflow server` to answer
HPARAMS = {"method": "ganomaly", "data": "synthetic", "seed": 0}


# ---- fixtures: a server booting, one run with every logger ---------------------------------------------------------
class Server:
    """An `mlflow server` started on 127.0.0.1 with its stores in a temporary dir; `url()` waits until it answers."""

    def __init__(self, root: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.root, self.started, self.ready_after = root, time.perf_counter(), None
        command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}"]
        command += ["--artifacts-destination", str(root / "artifacts")]
        env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job-runner processes beside it
        self.log = (root / "server.log").open("w")
        # its own process group: the CLI starts uvicorn as a child, and stopping the group stops both
        self.process = subprocess.Popen(
            command, stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

    def url(self) -> str:
        url = f"http://127.0.0.1:{self.port}"
        while self.ready_after is None:
            if self.process.poll() is not None:
                pytest.fail(f"mlflow server exited ({self.process.returncode}): {self.tail()}")
            if time.perf_counter() - self.started > SERVER_START_S:
                pytest.fail(f"mlflow server did not answer within {SERVER_START_S} s: {self.tail()}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1):
                    self.ready_after = time.perf_counter() - self.started
            except OSError:
                time.sleep(0.2)
        return url

    def tail(self) -> str:
        return (self.root / "server.log").read_text()[-1500:]

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        finally:
            self.log.close()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("mlflow_server"))
    try:
        yield server
    finally:
        server.stop()


def offline_wandb(env: pytest.MonkeyPatch, root: Path) -> None:
    """W&B offline, quiet, and writing nothing outside `root`."""
    env.setenv("WANDB_MODE", "offline")
    env.setenv("WANDB_SILENT", "true")
    for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        env.setenv(name, str(root / name.lower()))
    env.delenv("WANDB_API_KEY", raising=False)


@pytest.fixture(scope="module")
def logged(tmp_path_factory, mlflow_server):  # the server boots while this run trains
    run_dir = tmp_path_factory.mktemp("loggers") / "run"
    with pytest.MonkeyPatch.context() as env:
        offline_wandb(env, run_dir.parent)
        env.delenv("MLFLOW_TRACKING_URI", raising=False)
        results = run(run_dir, *tiny(), "logger=[tensorboard,csv,mlflow,wandb]")
    return results, run_dir


# ---- the run dir ---------------------------------------------------------------------------------------------------
def test_every_figure_is_a_png_in_the_run_dir_whatever_the_loggers(logged):
    _, run_dir = logged
    assert {p.name for p in (run_dir / "figures").iterdir()} == FIGURES
    for name, size in SIZES.items():
        with Image.open(run_dir / "figures" / name) as png:
            assert (png.format, png.size) == ("PNG", size), name


# ---- CSV -----------------------------------------------------------------------------------------------------------
def test_csv_holds_the_test_metrics_and_the_hyperparameters(logged):
    results, run_dir = logged
    rows = list(csv.DictReader((run_dir / "csv" / "metrics.csv").open()))
    tested = [row for row in rows if row.get("test/image_auroc")]
    assert len(tested) == 1, "the test metrics, once"
    for key in ("image_auroc", "image_ap", "pixel_auroc"):
        assert float(tested[0][f"test/{key}"]) == pytest.approx(results["metrics"][key], rel=1e-6), key
    assert any(row.get("train/loss_g") for row in rows), "the losses per step too"
    hparams = yaml.safe_load((run_dir / "csv" / "hparams.yaml").read_text())
    assert HPARAMS.items() <= hparams.items() and hparams["method.w_con"] == 50.0


# ---- MLflow --------------------------------------------------------------------------------------------------------
def mlflow_run(tracking_uri: str):
    """The one run in experiment `adrun` of that store, and its client."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    (found,) = client.search_runs([client.get_experiment_by_name("adrun").experiment_id])
    return client, found


def check_mlflow(client, found, results: dict) -> None:
    assert (found.info.run_name, found.info.status) == ("ganomaly/synthetic/seed=0", "FINISHED")
    metrics, params = found.data.metrics, found.data.params
    for key in ("image_auroc", "image_ap", "pixel_aupro"):
        assert metrics[f"test/{key}"] == pytest.approx(results["metrics"][key], rel=1e-6), key
    assert {"train/loss_g", "val/score_mean"} <= set(metrics)
    assert {k: params[k] for k in HPARAMS} == {k: str(v) for k, v in HPARAMS.items()}
    assert params["method.w_con"] == "50.0" and params["data.image_size"] == "16"
    assert {Path(a.path).name for a in client.list_artifacts(found.info.run_id, "figures")} == FIGURES
    (axis,) = client.list_artifacts(found.info.run_id, "text")
    assert axis.path == "text/test__pr_curve_threshold_axis.txt"


def test_mlflow_store_in_the_run_dir_read_back_through_its_client(logged):
    results, run_dir = logged
    client, found = mlflow_run(f"sqlite:///{run_dir / 'mlflow.db'}")
    check_mlflow(client, found, results)
    assert found.info.artifact_uri.startswith(str(run_dir / "mlartifacts"))
    assert {p.name for p in (run_dir / "mlartifacts").rglob("*.png")} == FIGURES


def test_mlflow_server_on_localhost_read_back_through_its_client(mlflow_server, tmp_path, monkeypatch):
    url = mlflow_server.url()
    print(f"mlflow server answered {mlflow_server.ready_after:.1f} s after it was started")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    results = run(tmp_path / "run", *tiny(), "logger=mlflow", f"logger.mlflow.tracking_uri={url}")
    check_mlflow(*mlflow_run(url), results)
    assert {p.name for p in (mlflow_server.root / "artifacts").rglob("*.png")} == FIGURES, "uploaded to the server"
    assert not (tmp_path / "run" / "mlflow.db").exists()


# ---- W&B -----------------------------------------------------------------------------------------------------------
def wandb_records(path: Path) -> list:
    """The records of an offline run's `.wandb` file: a LevelDB-style log (7-byte file header; 32 KiB blocks of
    records, each a 7-byte header — CRC, length, type: full, first, middle, last — and a piece of a protobuf Record)."""
    from wandb.proto import wandb_internal_pb2

    data, block, position, pending, records = path.read_bytes(), 32768, 7, b"", []
    assert data[:4] == b":W&B"
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # full, last
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def test_wandb_offline_run_holds_metrics_config_and_figures(logged):
    import json

    results, run_dir = logged
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    summary, config = {}, {}
    for record in wandb_records(next(offline.glob("run-*.wandb"))):
        kind = record.WhichOneof("record_type")
        if kind in ("summary", "config"):
            updates = [*record.summary.update, *record.config.update]
            items = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in updates}
            (summary if kind == "summary" else config).update(items)
    for key in ("image_auroc", "image_ap", "pixel_auroc"):
        assert summary[f"test/{key}"] == pytest.approx(results["metrics"][key], rel=1e-6), key
    assert HPARAMS.items() <= config.items() and config["method.w_con"] == 50.0
    images = offline / "files" / "media" / "images"
    assert {str(p.relative_to(images)).rsplit("_", 2)[0] for p in images.rglob("*.png")} == TAGS
    assert summary["test/roc_curve/_type"] == "images/separated"


def test_wandb_is_offline_unless_logged_in(monkeypatch, tmp_path):
    from pytorch_lightning.loggers import WandbLogger

    from adrun.loggers import run_dir_defaults

    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "netrc").write_text("")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    entry = {"offline": None, "save_dir": None, "name": None}
    assert run_dir_defaults(WandbLogger, entry, tmp_path, "x") == {
        "name": "x",
        "save_dir": str(tmp_path),
        "offline": False,  # WandbLogger's own offline=True would set WANDB_MODE for the whole process
        "mode": "offline",
    }
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password k\n")  # what `wandb login` writes
    assert "mode" not in run_dir_defaults(WandbLogger, entry, tmp_path, "x")
    assert run_dir_defaults(WandbLogger, entry | {"offline": True}, tmp_path, "x")["mode"] == "offline"


# ---- several at once, and TensorBoard still whole ------------------------------------------------------------------
def test_tensorboard_beside_the_others_keeps_its_scalars_figures_pr_curve_and_hparams(logged):
    from tests.test_run import EVERYTHING

    results, run_dir = logged
    events = EventAccumulator(str(run_dir / "tb"), size_guidance=EVERYTHING)
    events.Reload()
    (auroc,) = events.Scalars("test/image_auroc")
    assert auroc.value == pytest.approx(results["metrics"]["image_auroc"], rel=1e-6)
    assert set(events.Tags()["images"]) == TAGS
    assert {events.Images(tag)[0].step for tag in TAGS} == {auroc.step}
    assert "test/pr_curve" in events.PluginTagToContent("pr_curves")
    assert b"ganomaly" in events.PluginTagToContent("hparams")["_hparams_/session_start_info"]


def test_many_and_a_list_choose_several_loggers_and_a_choice_replaces_the_default():
    def chosen(*overrides: str) -> list[str]:
        return list(composed(*overrides).get("logger") or {})

    assert chosen() == ["tensorboard"]
    assert chosen("logger=csv") == ["csv"]
    assert chosen("logger=many") == chosen("logger=[tensorboard,csv]") == ["tensorboard", "csv"]
    assert chosen("~logger") == [], "no logger at all: the PNGs in figures/ remain"


def test_a_later_use_of_the_checkpoint_takes_its_loggers_from_its_own_command_line(logged, tmp_path):
    """mode=predict on the run's checkpoint with logger=csv: the overlays grid is a PNG in figures/; no TensorBoard,
    MLflow or W&B store is made although the training run used them."""
    _, run_dir = logged
    (tmp_path / "in").mkdir()
    for i in range(3):
        Image.new("L", (20, 20), color=80 * i).save(tmp_path / "in" / f"x{i}.png")
    run(tmp_path / "predict", "mode=predict", f"ckpt={run_dir}", f"input={tmp_path / 'in'}", "logger=csv")
    made = {p.name for p in (tmp_path / "predict").iterdir()}
    assert not made & {"tb", "mlflow.db", "wandb"}
    assert [p.name for p in (tmp_path / "predict" / "figures").iterdir()] == ["predict__overlays.png"]


def test_where_says_how_to_look_at_each_logger(tmp_path):
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    from adrun.loggers import where

    built = [TensorBoardLogger(str(tmp_path), name="tb", version=""), CSVLogger(str(tmp_path), name="csv", version="")]
    assert where(built) == f"tensorboard --logdir {tmp_path / 'tb'}; {tmp_path / 'csv'}/metrics.csv"


# ---- a missing extra -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("package", ["mlflow", "wandb"])
def test_a_missing_extra_is_one_line_naming_it(package, monkeypatch, tmp_path):
    from adrun.loggers import build_loggers, check_extras
    from tests.conftest import one_line_error

    monkeypatch.setitem(sys.modules, package, None)  # as if not installed: `import mlflow` raises ImportError
    config = {"logger": OmegaConf.to_container(composed(f"logger={package}").logger, resolve=True)}
    message = one_line_error(lambda: build_loggers(config, tmp_path))
    assert message == f'logger={package} needs the {package} package: pip install -e ".[{package}]"'
    assert one_line_error(lambda: check_extras(config)) == message, "the same check, before anything is built"


def test_the_command_line_says_which_extra_is_missing(monkeypatch, tmp_path, adrun_here):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    code, _, err = adrun_here(*tiny(), "logger=mlflow", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert (code, err.strip()) == (
        2,
        'adrun: error: logger=mlflow needs the mlflow package: pip install -e ".[mlflow]"',
    )
