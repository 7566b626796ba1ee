"""Pictures as tensors: score maps as heat maps (predict's overlays), model-range images as RGB, rows of images."""

from __future__ import annotations

import torch

# An "inferno"-like ramp: black → purple → red → orange → pale yellow, linearly interpolated.
HEAT_STOPS = torch.tensor(
    [[0.0, 0.0, 0.02], [0.34, 0.06, 0.43], [0.73, 0.21, 0.33], [0.98, 0.55, 0.04], [0.99, 1.0, 0.64]]
)


def heat(maps: torch.Tensor) -> torch.Tensor:
    """[N, 1, H, W] values in [0, 1] → [N, 3, H, W] RGB colours of the heat ramp."""
    position = maps.clamp(0, 1).squeeze(1) * (len(HEAT_STOPS) - 1)
    low = position.floor().long().clamp(max=len(HEAT_STOPS) - 2)
    t = (position - low).unsqueeze(-1)
    stops = HEAT_STOPS.to(maps.device)
    rgb = stops[low] * (1 - t) + stops[low + 1] * t
    return rgb.permute(0, 3, 1, 2)


def to_rgb01(images: torch.Tensor) -> torch.Tensor:
    """Model-range images [-1, 1] with 1 or 3 channels → RGB in [0, 1]."""
    images = ((images + 1) / 2).clamp(0, 1)
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
