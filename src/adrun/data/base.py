"""The datamodule base: a dataset's published splits → the one-class protocol → in-memory tensors → batches.

A dataset file only parses its layout into a `Split` (uint8 images, class ids, optional masks, ids). Everything else
lives here, once: the protocol (which classes are normal), seeded class-stratified subsets, the validation carve from
the training normals, the single decode-and-resize, and the batch contract of DESIGN.md:

    image [B, C, H, W] float in [-1, 1] · label [B] long (1 = anomalous) · mask [B, 1, H, W] float · index [B] long

`index` is the sample's position in its set; `sample_id(index)` gives back its file path or id for scores.csv.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from adrun.errors import UserError

RESIZE_CHUNK = 2048  # images resized per interpolate call: bounds the float32 copy's memory
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601 weights, as PIL's "L" conversion


@dataclass
class Split:
    """One published split as decoded from disk, at the files' own size."""

    images: torch.Tensor  # uint8 [N, C, h, w]
    targets: torch.Tensor  # long [N]: class id, an index into the datamodule's `classes`
    ids: list[str]  # a path or an id per sample, for tracing a score back to its file
    masks: torch.Tensor | None = None  # uint8 [N, 1, h, w], 1 on anomalous pixels


class ImageSet(Dataset):
    """Tensors already at the model's size; a batch is one indexing operation, no per-sample Python work."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor | None, ids: list[str]):
        self.images, self.labels, self.masks, self.ids = images, labels, masks, ids

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        images = self.images[index].float().div_(127.5).sub_(1.0)
        if self.masks is None:
            masks = images.new_zeros(images.shape[0], 1, *images.shape[2:])
        else:
            masks = self.masks[index].float()
        return {"image": images, "label": self.labels[index], "mask": masks, "index": index}

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {key: value[0] for key, value in self.__getitems__([i]).items()}


def keep_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The loader's collate function: `ImageSet.__getitems__` already returns a whole batch."""
    return batch


def stratified_subset(targets: torch.Tensor, n: int | None, generator: torch.Generator) -> torch.Tensor:
    """Indices of a seeded sample of `n` of `targets`, each class in proportion (largest remainder), sorted."""
    if n is None or n >= len(targets):
        return torch.arange(len(targets))
    classes, counts = targets.unique(return_counts=True)
    exact = counts.double() * n / len(targets)
    quota = exact.floor().long()
    quota[torch.argsort(exact - quota, descending=True)[: n - int(quota.sum())]] += 1
    picked = []
    for cls, k in zip(classes.tolist(), quota.tolist(), strict=True):
        members = (targets == cls).nonzero().flatten()
        picked.append(members[torch.randperm(len(members), generator=generator)[:k]])
    return torch.cat(picked).sort().values


def to_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 images converted to 1 (luma) or 3 (replicated grey) channels."""
    have = images.shape[1]
    if have == channels:
        return images
    if have == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if have in (3, 4) and channels == 1:
        luma = torch.tensor(LUMA).view(1, 3, 1, 1)
        return (images[:, :3].float() * luma).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    if have == 4 and channels == 3:
        return images[:, :3].contiguous()
    raise UserError(f"cannot convert {have}-channel images to {channels} channels; set data.channels to 1 or 3")


def resize(images: torch.Tensor, size: int, nearest: bool = False) -> torch.Tensor:
    """uint8 [N, C, h, w] → uint8 [N, C, size, size]: antialiased bilinear for images, nearest for masks."""
    if images.shape[-2:] == (size, size):
        return images
    out = []
    for chunk in images.split(RESIZE_CHUNK):
        if nearest:
            out.append(F.interpolate(chunk, size=(size, size), mode="nearest"))
        else:
            scaled = F.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True)
            out.append(scaled.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


class AnomalyDataModule(pl.LightningDataModule):
    """One-class protocol over a dataset's published train/test splits.

    normal_class: a class id or a list of them; those classes are normal, every other class anomalous.
    Train = normal images of the training split (at most `train_subset` of them, class-stratified, seeded) minus a
    `val_fraction` carved out as validation normals (for losses and calibration; test labels are never used for that).
    Test = the test split with every class (at most `test_subset`, class-stratified, seeded).
    """

    classes: tuple[str, ...] = ()
    has_masks: bool = False

    def __init__(
        self,
        image_size: int,
        channels: int,
        normal_class: int | Sequence[int] = 0,
        val_fraction: float = 0.1,
        train_subset: int | None = None,
        test_subset: int | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
    ):
        super().__init__()
        if channels not in (1, 3):
            raise UserError(f"data.channels must be 1 or 3, got {channels}")
        if not 0 <= val_fraction < 1:
            raise UserError(f"data.val_fraction must be in [0, 1), got {val_fraction}")
        self.image_size, self.channels = int(image_size), int(channels)
        self.normal_classes = self._check_classes(normal_class)
        self.val_fraction, self.train_subset, self.test_subset = val_fraction, train_subset, test_subset
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.train_set: ImageSet | None = None
        self.val_set: ImageSet | None = None
        self.test_set: ImageSet | None = None

    @property
    def name(self) -> str:
        return type(self).__name__

    def load_split(self, train: bool) -> Split:
        """Decode the published training or test split. The one thing a dataset file implements."""
        raise NotImplementedError

    def _check_classes(self, normal_class: int | Sequence[int]) -> tuple[int, ...]:
        wanted = (normal_class,) if isinstance(normal_class, int) else tuple(normal_class)
        n = len(self.classes)
        for c in wanted:
            if not isinstance(c, int) or not 0 <= c < n:
                names = ", ".join(f"{i}={name}" for i, name in enumerate(self.classes))
                raise UserError(f"data.normal_class={c!r} is not a class of {self.name}; choose from {names}")
        if not wanted or len(set(wanted)) == n:
            raise UserError(f"data.normal_class must name at least one and not all of the {n} classes")
        return tuple(sorted(set(wanted)))

    def setup(self, stage: str | None = None) -> None:
        if self.test_set is not None:
            return
        generator = torch.Generator().manual_seed(self.seed)
        train = self.load_split(train=True)
        normal = torch.isin(train.targets, torch.tensor(self.normal_classes))
        pool = normal.nonzero().flatten()
        pool = pool[stratified_subset(train.targets[pool], self.train_subset, generator)]
        n_val = round(len(pool) * self.val_fraction)
        is_val = torch.zeros(len(pool), dtype=torch.bool)
        is_val[stratified_subset(train.targets[pool], n_val, generator)] = True
        if (~is_val).sum() < 2:
            raise UserError(f"{self.name} leaves {int((~is_val).sum())} training images; use more data or subsets")
        self.train_set = self._image_set(train, pool[~is_val])
        self.val_set = self._image_set(train, pool[is_val])
        test = self.load_split(train=False)
        self.test_set = self._image_set(test, stratified_subset(test.targets, self.test_subset, generator))

    def _image_set(self, split: Split, keep: torch.Tensor) -> ImageSet:
        images = resize(to_channels(split.images[keep], self.channels), self.image_size)
        masks = None if split.masks is None else resize(split.masks[keep], self.image_size, nearest=True)
        labels = (~torch.isin(split.targets[keep], torch.tensor(self.normal_classes))).long()
        return ImageSet(images, labels, masks, [split.ids[i] for i in keep.tolist()])

    def sample_id(self, index: int) -> str:
        """The file path or id of test sample `index` (the batch's `index`)."""
        return self.test_set.ids[index]

    def _loader(self, dataset: ImageSet, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            drop_last=shuffle and len(dataset) % self.batch_size == 1,  # a 1-image batch would break BatchNorm
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            collate_fn=keep_batch,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)
