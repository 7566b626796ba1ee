"""`adrun mode=predict ckpt=<checkpoint or run dir> input=<folder or glob>`: a trained model on new images.

Images of any size and colour mode are converted as the training images were (adrun.data.images: the same decoding,
channel conversion and resize as every dataset), scored by the method's own `score` through Lightning's predict loop
(so the hardware profile, the precision and AnoGAN's latent search apply), and written to the run dir:
- `predictions.csv`: path, score, decision (`anomalous` when score ≥ the threshold, `normal` otherwise; the threshold
  is the checkpoint's calibrated one, `threshold=`, or, where a method key changes the score, one calibrated again
  on the training data's validation normals: runner.recalibrates), error: a file that cannot be read is a row with
  decision `unreadable` and its error, and every other file is still scored (`strict=true`: the call then exits
  non-zero);
- `overlays/<file>.png`: each input at its own aspect (enlarged to 128 px when smaller) with its score map in colour
  over it, titled with its score and decision, and the colour bar of the map scale (one scale for the whole call, so
  images compare); the first 16 as one picture (`predict/overlays`) to every logger and in figures/ (adrun.loggers);
- `results.json`: how many images, how many flagged, the threshold, images/s.
"""

from __future__ import annotations

import glob
import logging
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from adrun import figures, loggers, visual
from adrun.artefacts import RunDir, versions
from adrun.calibration import decision_threshold, threshold_facts
from adrun.data.base import ImageSet, keep_batch
from adrun.data.images import DECODE_THREADS, IMAGE_SUFFIXES, decode, read, visible
from adrun.errors import UserError

log = logging.getLogger(__name__)

OVERLAY_ALPHA = 0.5  # the score map's weight over the image
LOGGED_OVERLAYS = 16  # the first this many overlays go to the loggers, as one picture; every one is a PNG


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


def decode_readable(files: list[Path], size: int, channels: int) -> tuple[torch.Tensor, list[Path], dict[Path, str]]:
    """The files that can be read, decoded as the model takes them, and the error of each one that cannot."""
    from concurrent.futures import ThreadPoolExecutor

    def attempt(path: Path):
        try:
            return decode(path, size, channels)
        except UserError as error:
            return str(error)

    with ThreadPoolExecutor(max_workers=min(DECODE_THREADS, os.cpu_count() or 1)) as pool:
        decoded = list(pool.map(attempt, files))
    errors = {f: d for f, d in zip(files, decoded, strict=True) if isinstance(d, str)}
    readable = [f for f in files if f not in errors]
    if not readable:
        raise UserError(
            f"input={files[0].parent}: none of the {len(files)} images can be read; first: {errors[files[0]]}"
        )
    return torch.stack([d for d in decoded if not isinstance(d, str)]), readable, errors


def overlay(path: Path, score_map: torch.Tensor) -> torch.Tensor:
    """The file at its own size as RGB in [0, 1], blended with `score_map` ([1, h, w] in [0, 1]) as a heat map."""
    pixels = read(path)
    picture = (pixels.expand(3, -1, -1) if len(pixels) == 1 else pixels).float() / 255
    heat_map = F.interpolate(score_map[None], size=picture.shape[-2:], mode="bilinear", align_corners=False)
    return ((1 - OVERLAY_ALPHA) * picture + OVERLAY_ALPHA * visual.heat(heat_map.clamp(0, 1))[0]).clamp(0, 1)


def overlay_name(path: Path, root: Path) -> str:
    """A flat, unique PNG name: the path below `root` with '/' as '__'."""
    return "__".join(path.relative_to(root).with_suffix("").parts) + ".png"


def predict(cfg: DictConfig, module, trainer, run: RunDir, checkpoint: str) -> dict:
    """Scores every input file with `module` (the checkpoint's, built by the runner) on `trainer`; writes `run`."""
    listed = input_files(cfg.input)
    start = time.perf_counter()
    images, files, unreadable = decode_readable(listed, int(cfg.data.image_size), int(cfg.data.channels))
    dataset = ImageSet(images, torch.zeros(len(files), dtype=torch.long), None, [str(f) for f in files])
    loader = DataLoader(dataset, batch_size=cfg.data.batch_size, collate_fn=keep_batch)
    batches = trainer.predict(module, loader)
    seconds = time.perf_counter() - start
    scores = torch.cat([scored.image for scored in batches])
    maps = torch.cat([scored.map for scored in batches])

    threshold = decision_threshold(module, cfg.threshold)
    decisions = ["" if threshold is None else "anomalous" if s >= threshold else "normal" for s in scores.tolist()]
    rows = {f: (str(f), s, d, "") for f, s, d in zip(files, scores.tolist(), decisions, strict=True)}
    rows |= {f: (str(f), "", "unreadable", error) for f, error in unreadable.items()}
    run.write_predictions(rows[f] for f in listed)
    given = Path(str(cfg.input)).expanduser()  # overlays are named by their path below the folder, or below the
    root = given if given.is_dir() else Path(os.path.commonpath([f.parent for f in listed]))  # glob's matches' parent
    run.overlays.mkdir(exist_ok=True)
    lo, hi = maps.min(), maps.max()
    scale, scale_name = (lo.item(), hi.item()), "score map (this call's min–max)"
    if cfg.get("overlay_scale", "normals") == "normals" and module.map_scale[1] > module.map_scale[0]:
        scale, scale_name = tuple(module.map_scale.tolist()), "score map (validation normals' range)"
        lo, hi = module.map_scale.to(maps)
    shown = []
    for file, score_map, score, decision in zip(files, maps, scores.tolist(), decisions, strict=True):
        picture = overlay(file, (score_map - lo) / (hi - lo).clamp_min(1e-12)).permute(1, 2, 0).numpy()
        title = f"{file.name}\nscore {score:.4g}" + (f" · {decision} (t = {threshold:.4g})" if decision else "")
        figures.save_png(
            figures.overlay_figure(picture, title, scale, scale_name), run.overlays / overlay_name(file, root)
        )
        if len(shown) < LOGGED_OVERLAYS:
            shown.append((picture, f"{score:.4g} {decision}"))
    grid = figures.overlays_figure([p for p, _ in shown], [t for _, t in shown])
    loggers.log_figure(trainer, "predict/overlays", grid, 0)
    loggers.finish(trainer)
    flagged = sum(d == "anomalous" for d in decisions)
    results = {
        "status": "ok",
        "mode": "predict",
        "checkpoint": checkpoint,
        "input": str(cfg.input),
        "counts": {"images": len(files), "anomalous": flagged, "unreadable": len(unreadable)},
        "threshold": threshold_facts(module, cfg.threshold, cfg.threshold_quantile),
        "overlay_scale": {"range": list(scale), "from": scale_name.removeprefix("score map (").removesuffix(")")},
        # decoding and scoring; and the whole call with the CSV, the overlays and the loggers
        "timings": {"predict_s": seconds, "images_per_s": len(files) / seconds, "total_s": time.perf_counter() - start},
        "versions": versions(),
    }
    run.write_results(results)
    shown = "no threshold" if threshold is None else f"{flagged} of {len(files)} anomalous at threshold {threshold:.4g}"
    log.info(f"predicted {len(files)} images ({shown}) · {run.predictions} · overlays in {run.overlays}")
    if unreadable:
        first = next(iter(unreadable))
        log.warning(
            f"{len(unreadable)} of {len(listed)} files could not be read (first: {first}); listed in "
            f"{run.predictions}{'' if cfg.get('strict') else ' (strict=true makes this an error)'}"
        )
        if cfg.get("strict"):
            raise UserError(
                f"strict=true: {len(unreadable)} of {len(listed)} input files could not be read, e.g. "
                f"{unreadable[first]}; every readable file is scored in {run.predictions}"
            )
    return results
