"""The adrun side of a peer run (runs in adrun's environment, never in the peer's).

    python scripts/peers/export.py export <adrun overrides…> --out FILES
    python scripts/peers/export.py finish --files FILES --peer PEER_OUT --run-dir RUN

`export` composes adrun's config from the overrides exactly as `adrun` does (Hydra, then plan.prepare), builds the
datamodule through adrun's own code (same protocol keys, same data.seed, so the same subsets, validation split and test
ids) and writes the images as adrun decodes them — uint8, at data.image_size, data.channels — as PNGs:

    FILES/train/good/<n>.png        the training normals (what adrun's optimiser sees)
    FILES/val/good/<n>.png          validation normals (adrun's calibration set: the peer's threshold comes from them)
    FILES/test/good/<index>.png     test normals, named by adrun's test `index`
    FILES/test/anomaly/<index>.png  test anomalies
    FILES/index.csv                 file, index, id, label, type of every test PNG (adrun's scores.csv columns)
    FILES/adrun.json                the resolved config and the run's facts, for `finish`

`finish` reads the peer's per-file scores (PEER_OUT/scores.csv: file, score; PEER_OUT/peer.json: library, version, model
and its settings) and writes RUN as an adrun run dir: config.yaml (adrun's data config, unchanged, so adrun-report's
protocol check compares it like any run's; the method block holds the peer's settings), scores.csv on adrun's test ids,
and results.json with status ok, metrics from adrun's own evaluation (evaluation.compute_metrics), the protocol's keys
and `peer: {library, version, model}`. The threshold: the validation normals' `threshold_quantile`, as adrun calibrates.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path


def export(overrides: list[str], out: Path) -> None:
    import pytorch_lightning as pl
    import torch
    from hydra.utils import instantiate
    from omegaconf import open_dict
    from PIL import Image

    from adrun import plan as plans
    from adrun.api import compose

    cfg = compose(overrides)
    choices = cfg.hydra.runtime.choices
    with open_dict(cfg):
        del cfg["hydra"]
    prepared = plans.prepare(cfg, out / "_not_a_run", overrides, choices.get("hardware"), choices.get("method"))
    cfg = prepared.cfg
    pl.seed_everything(cfg.seed, workers=True, verbose=False)  # as runner.build (the data draw with data.seed anyway)
    datamodule = instantiate(cfg.data, use_known_anomalies=False)  # the peer trains on normals only
    datamodule.prepare_data()
    datamodule.setup("fit")

    def save(images: torch.Tensor, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = images.permute(1, 2, 0).numpy()  # uint8 [H, W, C]
        Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels).save(path)

    out.mkdir(parents=True, exist_ok=True)
    for name, dataset in (("train", datamodule.train_images(0)), ("val", datamodule.val_set)):
        for n in range(len(dataset)):
            save(dataset.images[n], out / name / "good" / f"{n:05d}.png")
    rows = []
    test = datamodule.test_set
    for index in range(len(test)):
        label = int(test.labels[index])
        file = f"test/{'anomaly' if label else 'good'}/{index:05d}.png"
        save(test.images[index], out / file)
        rows.append([file, index, datamodule.sample_id(index), label, datamodule.sample_type(index)])
    with open(out / "index.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "index", "id", "label", "type"])
        writer.writerows(rows)
    normal_class = list(datamodule.normal_classes)
    facts = {
        **prepared.facts,
        "normal_class": normal_class,
        "normal_class_names": [datamodule.classes[c] for c in normal_class],
        "counts": {
            "train": len(datamodule.train_images(0)),
            "val": len(datamodule.val_set),
            "test": len(test),
            "test_anomalous": int(test.labels.sum()),
        },
    }
    (out / "adrun.json").write_text(json.dumps({"config": prepared.config, "facts": facts}, indent=1))
    counts = facts["counts"]
    print(
        f"export: {counts['train']} training, {counts['val']} validation, {counts['test']} test PNGs "
        f"({counts['test_anomalous']} anomalous) at {cfg.data.image_size} px, {cfg.data.channels} channel(s) in {out}"
    )


def read_scores(path: Path) -> dict[str, float]:
    with open(path, newline="") as f:
        return {row["file"]: float(row["score"]) for row in csv.DictReader(f)}


def finish(files: Path, peer_out: Path, run_dir: Path) -> None:
    import torch

    from adrun.artefacts import RunDir
    from adrun.evaluation import TestOutputs, compute_metrics

    exported = json.loads((files / "adrun.json").read_text())
    peer = json.loads((peer_out / "peer.json").read_text())
    scores = read_scores(peer_out / "scores.csv")
    with open(files / "index.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    missing = [r["file"] for r in rows if r["file"] not in scores]
    if missing:
        sys.exit(f"finish: the peer scored {len(rows) - len(missing)} of {len(rows)} test files; missing {missing[0]}")
    index = torch.tensor([int(r["index"]) for r in rows])
    order = index.argsort()
    outputs = TestOutputs(
        index=index[order],
        labels=torch.tensor([int(r["label"]) for r in rows])[order],
        scores=torch.tensor([scores[r["file"]] for r in rows], dtype=torch.float64)[order],
    )
    config = exported["config"]
    val = torch.tensor([s for file, s in scores.items() if file.startswith("val/")], dtype=torch.float64)
    quantile = config["threshold_quantile"]
    calibrated = torch.quantile(val, quantile).item() if len(val) else None
    threshold = config["threshold"] if config["threshold"] is not None else calibrated
    metrics = compute_metrics(outputs, threshold)
    ids = {int(r["index"]): r["id"] for r in rows}
    types = {int(r["index"]): r["type"] for r in rows}
    run = RunDir(run_dir)
    run.path.mkdir(parents=True, exist_ok=True)
    method = {"_target_": f"{peer['library']}.{peer['model']}", **peer.get("settings", {})}
    run.write_config({**config, "method": method})
    run.write_scores(outputs, ids.__getitem__, types.__getitem__)
    facts = exported["facts"]
    results = {
        "status": "ok",
        **facts,
        "method": f"{peer['library']}:{peer['model'].lower()}",
        "peer": {key: peer[key] for key in ("library", "version", "model")},
        "metrics": {key: None if value != value else value for key, value in metrics.items()},  # NaN → null
        "timings": peer.get("timings", {}),
        "mode": "train",
        "threshold": {
            "value": threshold,
            "given": config["threshold"] is not None,
            "calibrated": {"threshold": calibrated, "quantile": quantile, "normals": len(val)},
        },  # as adrun's calibration.threshold_facts lays it out
        "peer_notes": peer.get("notes", {}),
        "versions": peer.get("versions", {}),
    }
    run.write_results(results)
    print(
        f"{results['method']} on {facts['data']} (normal: {', '.join(facts['normal_class_names'])}): "
        f"image AUROC {metrics['image_auroc']:.4f} · results in {run.path}"
    )


def main(argv: list[str]) -> None:
    if argv[:1] == ["export"]:
        parser = argparse.ArgumentParser(prog="export.py export")
        parser.add_argument("--out", type=Path, required=True)
        args, overrides = parser.parse_known_args(argv[1:])
        export(overrides, args.out)
    elif argv[:1] == ["finish"]:
        parser = argparse.ArgumentParser(prog="export.py finish")
        parser.add_argument("--files", type=Path, required=True)
        parser.add_argument("--peer", type=Path, required=True, help="the peer's output: scores.csv and peer.json")
        parser.add_argument("--run-dir", type=Path, required=True)
        args = parser.parse_args(argv[1:])
        finish(args.files, args.peer, args.run_dir)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
