"""`adrun mode=predict ckpt=<checkpoint or run dir> input=<folder or glob>`: a trained model on new images.

Images of any size and colour mode are converted as the training images were (grey or RGB, resized with antialiasing
to the model's size, decoded once), scored by the method's own `score` through Lightning's predict loop (so the
hardware profile, the precision and AnoGAN's latent search apply), and written to the run dir:
- `predictions.csv`: path, score, decision (`anomalous` when score ≥ the threshold, `normal` otherwise; the threshold
  is the checkpoint's calibrated one or `threshold=`);
- `overlays/<file>.png`: each input at its own size with its score map in colour over it (one colour scale for the whole
  call, so images compare), the same overlays in TensorBoard under `predict/`;
- `results.json`: how many images, how many flagged, the threshold, images/s.
"""

from __future__ import annotations

import csv
import glob
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from PIL import Image
from torch.utils.data import DataLoader

from adrun import evaluation, visual
from adrun.data.base import ImageSet, keep_batch
from adrun.data.images import IMAGE_SUFFIXES, decode_all, visible
from adrun.errors import UserError

OVERLAY_ALPHA = 0.5  # the score map's weight over the image


def input_files(pattern: str | None) -> list[Path]:
    """`input=`: a folder (its images, searched recursively) or a glob; sorted."""
    if not pattern:
        raise UserError("mode=predict needs input=<a folder of images or a glob like 'line3/*.png'>")
    folder = Path(str(pattern)).expanduser()
    candidates = folder.rglob("*") if folder.is_dir() else map(Path, glob.glob(str(folder), recursive=True))
    files = sorted(p for p in candidates if p.is_file() and visible(p) and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"input={pattern}: no images there ({', '.join(IMAGE_SUFFIXES)})")
    return files


def overlay(path: Path, score_map: torch.Tensor) -> torch.Tensor:
    """The file at its own size as RGB in [0, 1], blended with `score_map` ([1, h, w] in [0, 1]) as a heat map."""
    with Image.open(path) as image:
        rgb = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy())
    picture = rgb.permute(2, 0, 1).float() / 255
    heat_map = F.interpolate(score_map[None], size=picture.shape[-2:], mode="bilinear", align_corners=False)
    return ((1 - OVERLAY_ALPHA) * picture + OVERLAY_ALPHA * visual.heat(heat_map.clamp(0, 1))[0]).clamp(0, 1)


def overlay_name(path: Path, root: Path) -> str:
    """A flat, unique PNG name: the path below `root` with '/' as '__'."""
    return "__".join(path.relative_to(root).with_suffix("").parts) + ".png"


def predict(cfg: DictConfig, run_dir: Path) -> dict:
    import pytorch_lightning as pl
    from hydra.utils import get_class
    from pytorch_lightning.loggers import TensorBoardLogger

    from adrun.reuse import checkpoint_path

    path = checkpoint_path(cfg.ckpt)
    module = get_class(cfg.method._target_).load_from_checkpoint(path, map_location="cpu")
    module.threshold_override = cfg.threshold
    files = input_files(cfg.input)
    size, channels = module.hparams.image_size, module.hparams.channels
    start = time.perf_counter()
    images = decode_all(files, size, channels)
    dataset = ImageSet(images, torch.zeros(len(files), dtype=torch.long), None, [str(f) for f in files])
    loader = DataLoader(dataset, batch_size=cfg.data.batch_size, collate_fn=keep_batch)
    logger = TensorBoardLogger(str(run_dir), name="tb", version="", default_hp_metric=False)
    hardware = dict(cfg.hardware.trainer) | {"devices": 1, "num_nodes": 1, "strategy": "auto"}
    trainer = pl.Trainer(**hardware, **module.trainer_overrides, logger=logger, enable_progress_bar=False)
    batches = trainer.predict(module, loader)
    seconds = time.perf_counter() - start
    scores = torch.cat([scores for scores, _ in batches])
    maps = torch.cat([maps for _, maps in batches])

    threshold = module.threshold
    decisions = ["" if threshold is None else "anomalous" if s >= threshold else "normal" for s in scores.tolist()]

    def write_csv(f):
        out = csv.writer(f)
        out.writerow(["path", "score", "decision"])
        out.writerows(zip(map(str, files), scores.tolist(), decisions, strict=True))

    evaluation.write_atomically(run_dir / "predictions.csv", write_csv)
    given = Path(str(cfg.input)).expanduser()  # overlays are named by their path below the folder, or below the
    root = given if given.is_dir() else Path(os.path.commonpath([f.parent for f in files]))  # glob's matches' parent
    (run_dir / "overlays").mkdir(exist_ok=True)
    lo, hi = maps.min(), maps.max()
    for i, (file, score_map) in enumerate(zip(files, maps, strict=True)):
        picture = overlay(file, (score_map - lo) / (hi - lo).clamp_min(1e-12))
        name = overlay_name(file, root)
        Image.fromarray((picture * 255).round().byte().permute(1, 2, 0).numpy()).save(run_dir / "overlays" / name)
        logger.experiment.add_image(f"predict/{name}", picture, i)
    logger.finalize("success")
    flagged = sum(d == "anomalous" for d in decisions)
    results = {
        "status": "ok",
        "mode": "predict",
        "checkpoint": str(path),
        "input": str(cfg.input),
        "counts": {"images": len(files), "anomalous": flagged},
        "threshold": {"value": threshold, "given": cfg.threshold is not None, "calibrated": module.calibration},
        # decoding and scoring; and the whole call with the CSV, the overlays and TensorBoard
        "timings": {"predict_s": seconds, "images_per_s": len(files) / seconds, "total_s": time.perf_counter() - start},
        "versions": evaluation.versions(),
    }
    evaluation.write_results(run_dir / "results.json", results)
    shown = "no threshold" if threshold is None else f"{flagged} of {len(files)} anomalous at threshold {threshold:.4g}"
    print(f"predicted {len(files)} images ({shown}) · {run_dir / 'predictions.csv'} · overlays in {run_dir}/overlays")
    return results
