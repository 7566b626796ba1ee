"""The score contract between a method and the evaluation: what `score(batch)` returns.

`image` [B]: higher = more anomalous. `map` [B, 1, H, W] at the input's size: where the method sees the anomaly (its
natural map: residual, attention-weighted residual, student error + variance; never a constant). `variants`: other
image scores the method reports beside its own ({name: [B]}, e.g. OGNet's phase-1 D, ADA's ablations), each evaluated
by its own AUROC. `reconstruction` [B, C, H, W]: the method's rendering of the input where it has one (for pictures).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Scores:
    image: torch.Tensor
    map: torch.Tensor
    variants: dict[str, torch.Tensor] = field(default_factory=dict)
    reconstruction: torch.Tensor | None = None

    def detached(self) -> Scores:
        """float32 on the CPU, out of the graph (what leaves a test or predict step)."""

        def out(tensor):
            return None if tensor is None else tensor.detach().float().cpu()

        variants = {name: out(values) for name, values in self.variants.items()}
        return Scores(out(self.image), out(self.map), variants, out(self.reconstruction))


def check_scores(scores, batch: dict, method: str) -> None:
    """What `score(batch)` returned, held to the contract: a Scores, image [B], map [B, 1, H, W] at the input's size,
    variants [B] each, reconstruction (optional) the input's shape. One line naming the fault."""
    from adrun.errors import UserError

    images = batch["image"]
    size, (height, width) = len(images), images.shape[-2:]

    def fault(what: str) -> UserError:
        return UserError(f"{method}.score(batch) breaks the score contract: {what} (adrun.scores.Scores)")

    if not isinstance(scores, Scores):
        raise fault(f"it returned a {type(scores).__name__}, not a Scores")
    if not torch.is_tensor(scores.image) or tuple(scores.image.shape) != (size,):
        raise fault(f"image must be a tensor of shape [{size}] (one score per image), got {shape(scores.image)}")
    if not torch.is_tensor(scores.map) or tuple(scores.map.shape) != (size, 1, height, width):
        raise fault(f"map must be [{size}, 1, {height}, {width}] (at the input's size), got {shape(scores.map)}")
    for name, values in scores.variants.items():
        if not torch.is_tensor(values) or tuple(values.shape) != (size,):
            raise fault(f"variant {name!r} must be a tensor of shape [{size}], got {shape(values)}")
    if scores.reconstruction is not None and tuple(scores.reconstruction.shape) != tuple(images.shape):
        got = shape(scores.reconstruction)
        raise fault(f"reconstruction must be the input's shape {list(images.shape)}, got {got}")


def shape(value) -> str:
    return str(list(value.shape)) if hasattr(value, "shape") else type(value).__name__
