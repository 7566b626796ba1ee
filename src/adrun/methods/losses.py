"""Loss helpers shared by the methods."""

import torch
import torch.nn.functional as F

from adrun.errors import UserError


def bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Binary cross-entropy of a discriminator's logits against one label for the whole batch."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def check_finite(terms: dict[str, torch.Tensor], where: str) -> None:
    """Stops a run whose loss left the reals, naming the term and the step (one device sync for all the terms)."""
    values = [value.detach().float().reshape(-1) for value in terms.values() if torch.is_tensor(value)]
    if not values or torch.cat(values).isfinite().all():
        return
    name, value = next((n, v) for n, v in terms.items() if torch.is_tensor(v) and not v.isfinite().all())
    shown = value.detach().float().reshape(-1)[0].item() if value.numel() == 1 else "non-finite entries"
    raise UserError(
        f"non-finite loss: {name} = {shown} {where}; training stopped, the last good checkpoint is kept "
        "(lower the learning rate or check the data)"
    )
