"""The peer side (runs in the peer's venv, never in adrun's): anomalib's model trained and scored on exported PNGs.

    python scripts/peers/run_anomalib.py --files FILES --out PEER_OUT [--model Ganomaly] [--epochs 15] [--threads 1]
                                         [--init-arg KEY=VALUE …]

FILES is what `export.py export` wrote (train/good, val/good, test/good, test/anomaly). Training is anomalib's own:
its Engine fits the model on a Folder datamodule of FILES/train/good (anomalib's reader: RGB float images), with the
model's own defaults — pre-processor (Resize to the PNGs' size, a no-op, then ImageNet mean/std), batch size, losses,
optimisers — except what the command line says. No validation split: anomalib's Folder default takes it from the test
images (and its example config stops early on that split's AUROC), which would put test labels into training.

Scores: each PNG of val/ and test/ goes through anomalib's reader and the model's pre-processor, then the torch model in
eval mode; its raw `pred_score` (GANomaly: the mean squared difference of the two latent vectors) is the score. The
min-max rescaling GANomaly's test_step applies is left out: it rescales each batch by the min/max seen so far, a
different affine map per batch, so it changes the ranking across batches. Writes PEER_OUT/scores.csv (file, score) and
PEER_OUT/peer.json (library, version, model, the settings used, timings, versions).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from importlib.metadata import version
from pathlib import Path


def value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="Ganomaly", help="a class of anomalib.models (Ganomaly)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--init-arg", action="append", default=[], help="KEY=VALUE for the model's constructor")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from anomalib import models
    from anomalib.data import Folder
    from anomalib.data.utils import read_image
    from anomalib.engine import Engine
    from lightning.pytorch import seed_everything

    seed_everything(args.seed, workers=True)
    files = args.files.resolve()
    first = next((files / "train" / "good").glob("*.png"))
    size = tuple(read_image(first, as_tensor=True).shape[-2:])
    init_args = dict(arg.split("=", 1) for arg in args.init_arg)
    init_args = {key: value(text) for key, text in init_args.items()}
    model_class = getattr(models, args.model)
    pre_processor = model_class.configure_pre_processor(image_size=size)
    model = model_class(pre_processor=pre_processor, visualizer=False, **init_args)
    batch_size = init_args.get("batch_size", 32)  # Ganomaly's default, and Folder's train_batch_size default
    datamodule = Folder(
        name="adrun_export",
        root=files,
        normal_dir="train/good",
        abnormal_dir="test/anomaly",
        normal_test_dir="test/good",
        train_batch_size=batch_size,
        eval_batch_size=batch_size,
        num_workers=0,
        val_split_mode="none",
        seed=args.seed,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    engine = Engine(
        max_epochs=args.epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        default_root_dir=args.out / "anomalib",
        enable_progress_bar=False,
        limit_val_batches=0,  # no validation split (above): no validation loop
    )
    start = time.perf_counter()
    engine.fit(model=model, datamodule=datamodule)
    fit_s = time.perf_counter() - start

    model.eval()
    torch_model = model.model.eval()
    paths = sorted([*files.glob("val/good/*.png"), *files.glob("test/*/*.png")])
    rows = []
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(paths), 64):
            chunk = paths[i : i + 64]
            images = torch.stack([read_image(p, as_tensor=True) for p in chunk])
            scores = torch_model(pre_processor.transform(images)).pred_score.flatten()
            rows += [(str(p.relative_to(files)), f"{s:.8g}") for p, s in zip(chunk, scores.tolist(), strict=True)]
    score_s = time.perf_counter() - start
    with open(args.out / "scores.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "score"])
        writer.writerows(rows)
    settings = {
        **{k: v for k, v in model.hparams.items() if isinstance(v, int | float | str | bool)},
        **init_args,
        "image_size": list(size),
        "channels": 3,
        "pre_processor": "Resize + Normalize(ImageNet mean/std) (anomalib's default)",
        "epochs": args.epochs,
        "val_split_mode": "none",
        "score": "raw pred_score, eval mode",
    }
    peer = {
        "library": "anomalib",
        "version": version("anomalib"),
        "model": args.model,
        "settings": settings,
        "timings": {"fit_s": fit_s, "score_s": score_s, "threads": args.threads},
        "versions": {name: version(name) for name in ("anomalib", "torch", "torchvision", "lightning")},
    }
    (args.out / "peer.json").write_text(json.dumps(peer, indent=1))
    print(f"anomalib {args.model}: fit {fit_s:.0f} s, {len(rows)} images scored in {score_s:.1f} s → {args.out}")


if __name__ == "__main__":
    main()
