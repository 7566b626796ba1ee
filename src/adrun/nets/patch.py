"""Uninformed Students' patch networks (Bergmann et al., CVPR 2020, supplementary Tables 4–6) and their dense form.

A patch network maps a p×p patch to one 128-d descriptor with valid convolutions, 2×2/2 max-pools and leaky ReLUs
(slope 5e-3) between the layers, none after the last. `forward(patches [B, C, p, p]) -> [B, 128]`.

`dense(images [B, C, H, W]) -> [B, 128, H, W]` evaluates the same weights at every pixel in one pass (fast dense
feature extraction, Bailer et al. 2018, in its dilation form): each 2×2/2 pool becomes a 2×2 pool of stride 1 and every
layer after it is dilated by the product of the strides before it, so no position is skipped and nothing is computed
twice. The image is padded by (p − 1)/2 on each side (`pad_mode`, F.pad's modes); the descriptor at pixel (r, c) is
then exactly the patch network applied to the padded image's p×p window whose top-left corner is (r, c), i.e. the
patch centred on (r, c).

Receptive fields. p = 17 sees all 17×17 pixels. The paper's p = 33 and p = 65 networks floor odd maps in their pools
(29 → 14, and 61 → 30, 9 → 4), so they see only the top-left 32×32 and 60×60 pixels of their p×p input: the true
receptive fields are 32 and 60 (`receptive_field`, and a test measures them from gradients). We keep the published
architectures and the published input size p; the dense form reproduces the patch-wise network exactly either way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from adrun.errors import UserError

DESCRIPTOR = 128  # d, the descriptor's dimension
SLOPE = 5e-3  # leaky ReLU slope
POOL = "pool"
ARCHITECTURES = {  # (kernel, output channels) per convolution, POOL for a 2×2/2 max-pool
    17: ((6, 128), (5, 256), (5, 256), (4, DESCRIPTOR)),
    33: ((5, 128), POOL, (5, 256), POOL, (2, 256), (4, DESCRIPTOR)),
    65: ((5, 128), POOL, (5, 128), POOL, (5, 128), POOL, (4, 256), (1, DESCRIPTOR)),
}


def pad_for_patches(images: torch.Tensor, patch_size: int, mode: str) -> torch.Tensor:
    """The images padded by (p − 1)/2 on each side (F.pad's `mode`), so every pixel is the centre of a p×p window."""
    border = (patch_size - 1) // 2
    if mode == "reflect" and border >= min(images.shape[-2:]):
        raise UserError(
            f"images of {images.shape[-1]} px are too small to reflect-pad for p = {patch_size}; "
            "use larger images, a smaller patch size, or method.pad_mode=replicate"
        )
    return F.pad(images, (border,) * 4, mode=mode)


class PatchNet(nn.Module):
    def __init__(self, patch_size: int, channels: int, pad_mode: str = "reflect"):
        super().__init__()
        if patch_size not in ARCHITECTURES:
            raise UserError(f"patch size must be one of {', '.join(map(str, ARCHITECTURES))}, got {patch_size!r}")
        self.patch_size, self.pad_mode = patch_size, pad_mode
        layers: list[nn.Module] = []
        width = channels
        for spec in ARCHITECTURES[patch_size]:
            if spec == POOL:
                layers.append(nn.MaxPool2d(2, 2))
                continue
            kernel, out = spec
            layers += [nn.Conv2d(width, out, kernel), nn.LeakyReLU(SLOPE)]
            width = out
        self.layers = nn.Sequential(*layers[:-1])  # no activation after the descriptor

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """Descriptors of p×p patches: [B, C, p, p] → [B, 128]."""
        return self.layers(patches).flatten(1)

    @property
    def receptive_field(self) -> int:
        """The side of the input window one descriptor depends on (17, 32, 60; see the module docstring)."""
        field, jump = 1, 1
        for layer in self.layers:
            if isinstance(layer, nn.Conv2d | nn.MaxPool2d):
                kernel = layer.kernel_size if isinstance(layer.kernel_size, int) else layer.kernel_size[0]
                field += (kernel - 1) * jump
                jump *= 2 if isinstance(layer, nn.MaxPool2d) else 1
        return field

    def pad(self, images: torch.Tensor) -> torch.Tensor:
        return pad_for_patches(images, self.patch_size, self.pad_mode)

    def dense(self, images: torch.Tensor) -> torch.Tensor:
        """The descriptor of the p×p patch centred on every pixel: [B, C, H, W] → [B, 128, H, W], one pass."""
        height, width = images.shape[-2:]
        x, dilation = self.pad(images), 1
        for layer in self.layers:
            if isinstance(layer, nn.Conv2d):
                x = F.conv2d(x, layer.weight, layer.bias, dilation=dilation)
            elif isinstance(layer, nn.MaxPool2d):
                x = F.max_pool2d(x, 2, stride=1, dilation=dilation)
                dilation *= 2
            else:
                x = layer(x)
        return x[..., :height, :width]  # p = 33 and 65 see less than p (see above): their maps are 1 and 5 px larger
