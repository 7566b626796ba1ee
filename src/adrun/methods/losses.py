"""Loss helpers shared by the methods."""

import torch
import torch.nn.functional as F


def bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Binary cross-entropy of a discriminator's logits against one label for the whole batch."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))
