"""TinyAE: a small convolutional autoencoder, scored by its reconstruction error.

An example of a method of your own run by adrun, not a paper's method: it shows the contract (README, "Your own
method") in one short file. Its folder holds everything adrun needs besides this module on the import path:

    examples/tiny_ae/tiny_ae.py                this module (PYTHONPATH=examples/tiny_ae, or pip-install your package)
    examples/tiny_ae/conf/method/tiny_ae.yaml  `_target_: tiny_ae.TinyAE` and the constructor's hyperparameters

    PYTHONPATH=examples/tiny_ae adrun method=tiny_ae "hydra.searchpath=[file://$PWD/examples/tiny_ae/conf]"

Network: stride-2 convolutions halve the image while its side is even and above 4 (32 px: 32 → 16 → 8 → 4), the
channels doubling from `width`; a linear bottleneck of `latent` units; transposed convolutions mirror the encoder back
to the input's size, tanh at the end (adrun's images are in [-1, 1]). Trained on normal images by mean squared error
with Adam. Score: the mean squared residual per image; map: the squared residual per pixel, averaged over channels.
"""

from __future__ import annotations

from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from adrun import AnomalyModule, Count, Scores


def halvings(image_size: int) -> int:
    """How many stride-2 convolutions the image's side takes: while it is even and above 4."""
    count = 0
    while image_size % 2 == 0 and image_size > 4:
        image_size //= 2
        count += 1
    return count


class TinyAE(AnomalyModule):
    """A convolutional autoencoder; adrun passes `image_size` and `channels` from the data config, the rest comes from
    conf/method/tiny_ae.yaml (every key annotated: adrun checks the values a user types against these types; `Count`
    is an integer ≥ 1)."""

    def __init__(
        self,
        image_size: int,
        channels: int,
        width: Count = 32,
        latent: Count = 64,
        lr: float = 1e-3,
        epochs: Count = 15,
    ):
        super().__init__()
        self.save_hyperparameters()  # self.hparams: what the checkpoint keeps and adrun reads (`epochs`)
        levels = halvings(image_size)
        sizes = [channels] + [width * 2**i for i in range(levels)]  # the channels level by level, the input's first
        side, deepest = image_size >> levels, sizes[-1]
        encoder, decoder = [], []
        for before, out in pairwise(sizes):
            encoder += [nn.Conv2d(before, out, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        for before, out in pairwise(reversed(sizes)):
            decoder += [nn.ConvTranspose2d(before, out, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        self.encoder = nn.Sequential(*encoder, nn.Flatten(), nn.Linear(deepest * side * side, latent))
        self.decoder = nn.Sequential(
            nn.Linear(latent, deepest * side * side),
            nn.Unflatten(1, (deepest, side, side)),
            *decoder[:-1],  # the last layer's activation is the tanh
            nn.Tanh(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x = batch["image"]  # float [B, C, H, W] in [-1, 1]; the training set holds normals only
        loss = F.mse_loss(self(x), x)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(x))  # adrun stops a run at a non-finite loss
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    def score(self, batch: dict[str, torch.Tensor]) -> Scores:
        """Higher = more anomalous: image [B], map [B, 1, H, W] at the input's size, and the reconstruction (shown in
        the test grid)."""
        x = batch["image"]
        x_hat = self(x)
        squared = (x - x_hat).pow(2)
        return Scores(image=squared.mean((1, 2, 3)), map=squared.mean(1, keepdim=True), reconstruction=x_hat)
