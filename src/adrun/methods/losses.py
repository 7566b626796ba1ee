"""Loss helpers and the optimiser step shared by the methods.

The adversarial methods (AnoGAN, f-AnoGAN, GANomaly, ADA) each write their update order in their own file, from these
pieces: `descend` (one optimiser step on a loss), `bce` and `real_fake_bce` (the standard GAN's discriminator loss),
`gradient_penalty` (WGAN-GP's).
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F

from adrun.errors import UserError


def bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Binary cross-entropy of a discriminator's logits against one label for the whole batch."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def real_fake_bce(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """A discriminator's −V(D, G) as BCE: real → 1 plus fake → 0 (Goodfellow et al. 2014, the two halves summed)."""
    return bce(real_logits, 1.0) + bce(fake_logits, 0.0)


def descend(optimizer, loss: torch.Tensor, backward: Callable[[torch.Tensor], None]) -> torch.Tensor:
    """One step of `optimizer` on `loss`: gradients zeroed, `backward(loss)` (Lightning's `manual_backward`, or
    `Tensor.backward` in tests), the step. Returns the loss."""
    optimizer.zero_grad()
    backward(loss)
    optimizer.step()
    return loss


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    alpha: torch.Tensor | None = None,
) -> torch.Tensor:
    """WGAN-GP's penalty (Gulrajani et al. 2017, Eq. 3): E[(‖∇_x̃ D(x̃)‖₂ − 1)²] at x̃ = x + α·(x_g − x), one
    α ~ U[0, 1] per image (drawn here unless given, shape [B, 1, …]), the norm over all of an image's pixels — as
    f-AnoGAN's wgangp_64x64.py computes it. `critic` maps images [B, …] to one value each [B]; the image's values must
    not depend on its batch mates (no BatchNorm), so the gradient of the batch's sum is each image's own gradient. The
    graph is kept (`create_graph`), so the penalty trains the critic."""
    if alpha is None:
        alpha = torch.rand(len(real), *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    mixed = (real.detach() + alpha * (fake.detach() - real.detach())).requires_grad_(True)
    (gradient,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return (gradient.flatten(1).norm(dim=1) - 1).pow(2).mean()


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
