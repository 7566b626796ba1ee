"""A decision threshold without test labels: a high quantile of the validation normals' scores.

At the end of training the validation normals (carved out of the training normals, never seen by the optimiser) are
scored and the `threshold_quantile` (default 0.99; linear interpolation, torch.quantile) of their scores becomes the
threshold: a score at or above it is called anomalous, so about 1 % of normal images are flagged by construction. It
is stored in the checkpoint (with the quantile and how many normals it rests on) and used by `mode=predict`'s
decisions and by the test pass, which reports the false- and true-positive rates it gives. `threshold=<value>`
overrides it. With few validation normals a high quantile is close to their maximum: `results.json` says how many.
"""

from __future__ import annotations

import torch

from adrun.errors import UserError


def validation_normal_scores(module, datamodule, forward_context) -> torch.Tensor:
    """The image scores of every validation normal, in the precision the trainer uses."""
    module.eval()
    scores = []
    with torch.no_grad(), forward_context():
        for batch in datamodule.val_dataloader():
            batch = {key: value.to(module.device) for key, value in batch.items()}
            normal = batch["label"] == 0
            if normal.any():
                scores.append(module.score({key: value[normal] for key, value in batch.items()})[0].float().cpu())
    return torch.cat(scores) if scores else torch.empty(0)


def calibrate(module, datamodule, quantile: float, forward_context) -> dict:
    """{threshold, quantile, normals}: the threshold is `quantile` of the validation normals' scores (None without
    validation normals)."""
    if not 0 < quantile <= 1:
        raise UserError(f"threshold_quantile must be in (0, 1], got {quantile}")
    scores = validation_normal_scores(module, datamodule, forward_context)
    threshold = torch.quantile(scores.double(), quantile).item() if len(scores) else None
    return {"threshold": threshold, "quantile": quantile, "normals": len(scores)}


def decision_threshold(calibration: dict | None, override: float | None) -> float | None:
    """The threshold decisions use: `threshold=` if given, else the calibrated one, else none."""
    if override is not None:
        return float(override)
    return None if calibration is None else calibration.get("threshold")
