"""A decision threshold without test labels: a high quantile of the validation normals' scores.

At the end of training the validation normals (carved out of the training normals, never seen by the optimiser) are
scored and the `threshold_quantile` (default 0.99; linear interpolation, torch.quantile) of their scores becomes the
threshold: a score at or above it is called anomalous, so about 1 % of normal images are flagged by construction. It
is kept in the method's `threshold` buffer, saved with the weights, with how many normals it rests on, and used by
`mode=predict`'s decisions and by the test pass, which reports the false- and true-positive rates it gives.
`threshold=<value>` overrides it. With few validation normals a high quantile is close to their maximum and the
false-positive rate it gives on new normals is loose: below `STEADY_NORMALS` a run says so in one line, with the
resolution 1/n; `results.json` says how many.
"""

from __future__ import annotations

import logging
import math
import sys

import torch

STEADY_NORMALS = 100  # a 0.99 quantile needs about this many normals to mean "1 % flagged"


def validation_normal_scores(module, datamodule, forward_context) -> tuple[torch.Tensor, tuple[float, float]]:
    """The image scores of every validation normal, in the precision the trainer uses, and the range (min, max) of
    their score maps: the fixed colour scale of predict's overlays. A progress bar with its rate: for AnoGAN each batch
    is a latent search."""
    from tqdm.auto import tqdm

    module.eval()
    scores, lows, highs = [], [], []
    with torch.no_grad(), forward_context():
        batches = tqdm(datamodule.val_dataloader(), desc="calibration", leave=False, file=sys.stdout)  # as Lightning's
        for batch in batches:
            batch = {key: value.to(module.device) for key, value in batch.items()}
            normal = batch["label"] == 0
            if normal.any():
                scored = module.checked_score({key: value[normal] for key, value in batch.items()})
                scores.append(scored.image.float().cpu())
                lows.append(scored.map.amin())  # kept on the device: one read after the loop, not one per batch
                highs.append(scored.map.amax())
    if not scores:
        return torch.empty(0), (math.inf, -math.inf)
    return torch.cat(scores), (torch.stack(lows).min().item(), torch.stack(highs).max().item())


def calibrate(module, datamodule, quantile: float, forward_context) -> None:
    """Sets the module's threshold to `quantile` of the validation normals' scores (none without validation normals),
    and its `map_scale` to the range of their score maps."""
    scores, (low, high) = validation_normal_scores(module, datamodule, forward_context)
    module.threshold.fill_(torch.quantile(scores.double(), quantile).item() if len(scores) else 0.0)
    module.threshold_normals.fill_(len(scores))
    if len(scores) and high > low:
        module.map_scale.copy_(torch.tensor([low, high], dtype=torch.float64))
    if 0 < len(scores) < STEADY_NORMALS:
        logging.getLogger("adrun").warning(few_normals(len(scores), quantile))


def few_normals(n: int, quantile: float) -> str:
    return (
        f"the threshold is the {quantile:g} quantile of only {n} validation normals (the FPR it sets moves in steps "
        f"of 1/{n} = {1 / n:.0%}, and on new normals it can be far from {1 - quantile:.0%}); a larger "
        f"data.val_fraction gives a steadier one"
    )


def threshold_facts(module, given: float | None, quantile: float) -> dict:
    """results.json's record of the threshold: the one decisions used, whether it was given, and the calibrated one
    with the quantile and how many normals it rests on."""
    calibrated = {
        "threshold": module.calibrated_threshold,
        "quantile": quantile,
        "normals": int(module.threshold_normals),
    }
    return {"value": decision_threshold(module, given), "given": given is not None, "calibrated": calibrated}


def decision_threshold(module, given: float | None) -> float | None:
    """The threshold decisions use: `threshold=` if given, else the calibrated one, else none."""
    return float(given) if given is not None else module.calibrated_threshold
