"""DCGAN building blocks (Radford et al. 2016) in the form GANomaly's and AnoGAN's code use them.

Encoder: 4×4 stride-2 convolutions halving the image down to 4×4 (BatchNorm + LeakyReLU 0.2, none on the first),
then a 4×4 valid convolution to `nz` channels at 1×1. Decoder: the mirror image with transposed convolutions, ReLU,
and a tanh output. The width doubles at every halving, starting at `width` on the first layer.
"""

import torch
from torch import nn

from adrun.errors import UserError


def check_image_size(image_size: int) -> None:
    if image_size < 16 or image_size & (image_size - 1):
        raise UserError(f"image size {image_size} is not a power of two ≥ 16; set data.image_size to 16, 32, 64, …")


def init_dcgan_weights(module: nn.Module, where: torch.Tensor | None = None) -> None:
    """Convolutions N(0, 0.02); BatchNorm scale N(1, 0.02), shift 0 (DCGAN, and GANomaly's official code).

    With `where` (a bool tensor on the module's device) the same values are drawn, and kept only if it is true,
    decided on the device without reading it on the host; the random generator advances either way."""

    def draw(param: torch.Tensor, init) -> None:
        if where is None:
            init(param)
            return
        with torch.no_grad():
            param.copy_(torch.where(where, init(torch.empty_like(param)), param))

    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            draw(m.weight, lambda t: nn.init.normal_(t, 0.0, 0.02))
        elif isinstance(m, nn.BatchNorm2d):
            draw(m.weight, lambda t: nn.init.normal_(t, 1.0, 0.02))
            draw(m.bias, nn.init.zeros_)


class Encoder(nn.Sequential):
    """[B, C, S, S] → [B, nz, 1, 1].

    `first_padding` pads the first convolution only (DCGAN: 1). anomalib's GANomaly pads it by 4 and keeps the number
    of halvings: at S ≥ 32 the map is then S/2 + 3, S/4 + 1, S/8, … and still reaches 4×4, hence 1×1.
    """

    def __init__(self, image_size: int, channels: int, nz: int, width: int = 64, first_padding: int = 1):
        check_image_size(image_size)
        if first_padding != 1 and image_size < 32:
            raise UserError(f"a first-layer padding of {first_padding} needs data.image_size ≥ 32, got {image_size}")
        layers: list[nn.Module] = [
            nn.Conv2d(channels, width, 4, 2, first_padding, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        size, ch = image_size // 2, width
        while size > 4:
            layers += [
                nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ch * 2),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            size, ch = size // 2, ch * 2
        layers.append(nn.Conv2d(ch, nz, 4, 1, 0, bias=False))
        super().__init__(*layers)
        init_dcgan_weights(self)


class Decoder(nn.Sequential):
    """[B, nz, 1, 1] → [B, C, S, S] in [-1, 1]."""

    def __init__(self, image_size: int, channels: int, nz: int, width: int = 64):
        check_image_size(image_size)
        ch = width * image_size // 8  # the encoder's width at 4×4
        layers: list[nn.Module] = [nn.ConvTranspose2d(nz, ch, 4, 1, 0, bias=False), nn.BatchNorm2d(ch), nn.ReLU(True)]
        size = 4
        while size < image_size // 2:
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU(True)]
            size, ch = size * 2, ch // 2
        layers += [nn.ConvTranspose2d(ch, channels, 4, 2, 1, bias=False), nn.Tanh()]
        super().__init__(*layers)
        init_dcgan_weights(self)


class Discriminator(nn.Module):
    """The encoder with one output: returns (logit [B], f(x)), f being the last feature map before the head.

    The paper's D ends in a sigmoid; we return the logit and apply the sigmoid inside the loss
    (`binary_cross_entropy_with_logits`), which is the same function, stable, and safe under mixed precision.
    """

    def __init__(self, image_size: int, channels: int, width: int = 64, first_padding: int = 1):
        super().__init__()
        encoder = Encoder(image_size, channels, 1, width, first_padding)
        self.features, self.head = nn.Sequential(*list(encoder)[:-1]), encoder[-1]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(x)
        return self.head(features).flatten(), features
