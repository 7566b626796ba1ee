"""The datamodule base: a dataset's published splits → the one-class protocol → in-memory tensors → batches.

A dataset file only parses its layout into a `Split` (uint8 images, class ids, optional masks, ids). Everything else
lives here, once: the protocol (which classes are normal), seeded class-stratified subsets, the validation carve from
the training normals, the conversion to the model's size and channels (adrun.data.images), and the batch contract:

    image [B, C, H, W] float in [-1, 1] · label [B] long (1 = anomalous) · mask [B, 1, H, W] float · index [B] long

`index` is the sample's position in its set; `sample_id(index)` gives back its file path or id for scores.csv.
Batches are cut by a DataLoader, or on the trainer's device (`on_device`, adrun.data.device_batches): the same batches.
Training batches drop an incomplete last one (`drop_last`, as GANomaly's and f-AnoGAN's official loaders do).
`has_masks` says whether the masks are real (pixel metrics only then).

What a method may ask of the datamodule, besides its loaders: `train_images(label)` (the training normals, or the
known anomalies, as an `ImageSet`), `batch_size`, `image_size`, `channels`, `has_validation`. The runner also uses
`batches_per_epoch(world_size)` and `test_batch(indices)` (the evaluator's pictures).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from adrun.data.device_batches import DeviceBatches, fits_on, to_batch
from adrun.data.images import PIXELS_VERSION, convert, resize
from adrun.errors import UserError


@dataclass
class Split:
    """One published split as decoded (file-based datasets decode straight to the model's size; others may return
    their native size, which the base resizes)."""

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
        return to_batch(self.images, self.labels, self.masks, torch.as_tensor(indices, dtype=torch.long))

    def batches(self, batch_size: int):
        """The whole set in order, as batches of the batch contract."""
        for start in range(0, len(self), batch_size):
            yield self.__getitems__(range(start, min(start + batch_size, len(self))))

    def subset(self, keep: torch.Tensor) -> ImageSet:
        masks = None if self.masks is None else self.masks[keep]
        return ImageSet(self.images[keep], self.labels[keep], masks, [self.ids[i] for i in keep.tolist()])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {key: value[0] for key, value in self.__getitems__([i]).items()}


class EpochShuffle(RandomSampler):
    """A shuffle that depends on (seed, epoch) only; Lightning calls `set_epoch` before each epoch."""

    def __init__(self, dataset: Dataset, seed: int):
        super().__init__(dataset, generator=torch.Generator())
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(self.seed * 1_000_003 + epoch)


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


def say_if_short(key: str, wanted: int | None, have: int, what: str) -> None:
    """A budget larger than the data is not an error, but the run says it used fewer (one line)."""
    if wanted is not None and wanted > have:
        logging.getLogger("adrun").warning(f"data.{key}={wanted}, but there are only {have} {what}: all {have} used")


def concat(a: Split, b: Split) -> Split:
    masks = None if a.masks is None or b.masks is None else torch.cat([a.masks, b.masks])
    return Split(torch.cat([a.images, b.images]), torch.cat([a.targets, b.targets]), a.ids + b.ids, masks)


def take(split: Split, keep: torch.Tensor) -> Split:
    masks = None if split.masks is None else split.masks[keep]
    return Split(split.images[keep], split.targets[keep], [split.ids[i] for i in keep.tolist()], masks)


class AnomalyDataModule(pl.LightningDataModule):
    """The papers' protocols over a dataset's published train/test splits.

    - one-vs-rest (`normal_class`: a class id or a list): those classes are normal, every other class anomalous.
      Train = normal images of the training split; test = the whole test split.
    - leave-one-out (`abnormal_class`: a class id; GANomaly's protocol, as its official code does it): every other class
      is normal; the normals of both splits are pooled, shuffled by the seed and split 80/20 into train and test; every
      abnormal image goes to test. `normal_class` is then ignored.
    - `known_anomaly_classes` (semi-supervised, ADA): `known_anomaly_fraction` of those classes' training images join
      the training set with label 1, and those classes leave the test set.
    - `test_anomaly_fraction`: anomalies in the test set are subsampled (seeded, class-stratified) to this fraction.
    - `test_anomalies_per_class`: or this many test images of each anomalous class are kept (seeded; OGNet's MNIST).
    - `noise_std`: additive Gaussian noise on every image, in units of the [0, 1] intensity range, drawn once (seeded).
    - `use_known_anomalies`: false (the runner's choice for methods that cannot use them) leaves the known anomalies
      out of training after they are drawn, so the draws that follow are the same either way.
    Then: at most `train_subset` training normals (class-stratified, seeded), of which `val_fraction` are carved out as
    validation normals (for losses and calibration; test labels are never used for that); at most `test_subset` test
    images (class-stratified, seeded).

    A dataset file implements `load_split(train)`; file-based ones set `cacheable` and `root` so the decoded split is
    stored once per size and channel count (`adrun.data.cache`). Datasets whose classes are not peer categories (MVTec's
    defect types, Ped2's frames) set `peer_classes = False`: leave-one-out and known anomalies make no sense there.
    Datasets whose training split holds normal images only (MVTec, Ped2, a user's folder) set `normals_only_training`:
    class 0 is then the only possible normal class.
    """

    classes: tuple[str, ...] = ()
    has_masks: bool = False
    cacheable: bool = False
    peer_classes: bool = True
    typed_anomalies: bool = False  # True: each anomalous class is an anomaly type, scored by its own AUROC
    normals_only_training: bool = False
    root: Path | None = None

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
        abnormal_class: int | None = None,
        known_anomaly_classes: Sequence[int] = (),
        known_anomaly_fraction: float = 0.1,
        test_anomaly_fraction: float | None = None,
        test_anomalies_per_class: int | None = None,
        noise_std: float = 0.0,
        cache_dir: str | None = None,
        use_known_anomalies: bool = True,
        on_device: str | bool = "auto",
        drop_last: bool = True,
    ):
        super().__init__()
        if on_device not in ("auto", True, False):
            raise UserError(f"data.on_device must be auto, true or false, got {on_device!r}")
        if channels not in (1, 3):
            raise UserError(f"data.channels must be 1 or 3, got {channels}")
        if not 0 <= val_fraction < 1:
            raise UserError(f"data.val_fraction must be in [0, 1), got {val_fraction}")
        if test_anomaly_fraction is not None and not 0 < test_anomaly_fraction < 1:
            raise UserError(f"data.test_anomaly_fraction must be in (0, 1), got {test_anomaly_fraction}")
        if test_anomalies_per_class is not None and (test_anomalies_per_class < 1 or test_anomaly_fraction is not None):
            raise UserError(
                "data.test_anomalies_per_class must be ≥ 1 and cannot be combined with test_anomaly_fraction"
            )
        if not self.peer_classes and (abnormal_class is not None or known_anomaly_classes):
            raise UserError(
                f"{self.name} cannot honour abnormal_class or known_anomaly_classes: its classes are not peer "
                "categories that could each be normal; use normal_class"
            )
        self.image_size, self.channels = int(image_size), int(channels)
        self.abnormal_class = abnormal_class
        if abnormal_class is not None:
            self._check_classes(abnormal_class, key="abnormal_class")
            normal_class = [c for c in range(len(self.classes)) if c != abnormal_class]
        self.normal_classes = self._check_classes(normal_class)
        if self.normals_only_training and self.normal_classes != (0,):
            raise UserError(
                f"data.normal_class must be 0 ({self.classes[0]}) for {self.name}: its training split holds only "
                "normal images"
            )
        self.known_anomaly_classes = self._check_classes(known_anomaly_classes, key="known_anomaly_classes", empty=True)
        if set(self.known_anomaly_classes) & set(self.normal_classes):
            raise UserError("data.known_anomaly_classes must not include a normal class")
        self.known_anomaly_fraction, self.test_anomaly_fraction = known_anomaly_fraction, test_anomaly_fraction
        self.test_anomalies_per_class = test_anomalies_per_class
        self.noise_std = noise_std
        self.use_known_anomalies, self.left_out_known_anomalies = use_known_anomalies, 0
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else Path.home() / ".cache" / "adrun"
        self.val_fraction, self.train_subset, self.test_subset = val_fraction, train_subset, test_subset
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.on_device, self.drop_last = on_device, drop_last
        self.train_set: ImageSet | None = None
        self.val_set: ImageSet | None = None
        self.test_set: ImageSet | None = None

    @property
    def name(self) -> str:
        return type(self).__name__

    def load_split(self, train: bool) -> Split:
        """Decode the published training or test split. The one thing a dataset file implements."""
        raise NotImplementedError

    def _check_classes(self, wanted, key: str = "normal_class", empty: bool = False) -> tuple[int, ...]:
        wanted = (wanted,) if isinstance(wanted, int) else tuple(wanted)
        n = len(self.classes)
        for c in wanted:
            if not isinstance(c, int) or not 0 <= c < n:
                names = ", ".join(f"{i}={name}" for i, name in enumerate(self.classes))
                raise UserError(f"data.{key}={c!r} is not a class of {self.name}; choose from {names}")
        if not empty and (not wanted or len(set(wanted)) == n):
            raise UserError(f"data.{key} must name at least one and not all of the {n} classes")
        return tuple(sorted(set(wanted)))

    def split(self, train: bool) -> Split:
        """The decoded split, from the cache where the dataset is file-based."""
        if not self.cacheable:
            return self.load_split(train)
        from adrun.data.cache import cached, fingerprint

        key = {
            "dataset": self.name,
            "root": str(self.root.resolve()),
            "train": train,
            "size": self.image_size,
            "channels": self.channels,
            "identity": self.cache_identity(),
            "pixels": PIXELS_VERSION,
            "files": [fingerprint(folder) for folder in self.fingerprint_roots()],
        }
        return Split(**cached(self.cache_dir, key, lambda: vars(self.load_split(train))))

    def cache_identity(self) -> dict:
        """What else selects the decoded files (a category, a sub-folder); part of the cache key."""
        return {}

    def fingerprint_roots(self) -> list[Path]:
        """The folders whose files the cache must follow (default: root; narrower for one category of many)."""
        return [self.root]

    def setup(self, stage: str | None = None) -> None:
        if self.test_set is not None:
            return
        generator = torch.Generator().manual_seed(self.seed)
        train, test = self.split(train=True), self.split(train=False)
        normal_ids = torch.tensor(self.normal_classes)
        if self.abnormal_class is not None:
            train, test = self._leave_one_out(train, test, normal_ids, generator)
        pool = torch.isin(train.targets, normal_ids).nonzero().flatten()
        say_if_short("train_subset", self.train_subset, len(pool), "training normals")
        pool = pool[stratified_subset(train.targets[pool], self.train_subset, generator)]
        n_val = round(len(pool) * self.val_fraction)
        is_val = torch.zeros(len(pool), dtype=torch.bool)
        is_val[stratified_subset(train.targets[pool], n_val, generator)] = True
        if (~is_val).sum() < 2:
            raise UserError(f"{self.name} leaves {int((~is_val).sum())} training images; use more data or subsets")
        known = self._known_anomalies(train, generator)
        self.train_set = self._image_set(train, torch.cat([pool[~is_val], known]), generator)
        if not self.use_known_anomalies:  # after their noise is drawn too
            self.left_out_known_anomalies = len(known)
            self.train_set = self.train_set.subset(torch.arange(len(self.train_set) - len(known)))
        self.val_set = self._image_set(train, pool[is_val], generator)
        keep = (
            (~torch.isin(test.targets, torch.tensor(self.known_anomaly_classes, dtype=torch.long))).nonzero().flatten()
        )
        say_if_short("test_subset", self.test_subset, len(keep), "test images")
        keep = keep[stratified_subset(test.targets[keep], self.test_subset, generator)]
        if self.test_anomaly_fraction is not None:
            keep = self._with_anomaly_fraction(test.targets, keep, normal_ids, generator)
        if self.test_anomalies_per_class is not None:
            keep = self._with_anomalies_per_class(test.targets, keep, normal_ids, generator)
        self.test_set = self._image_set(test, keep, generator)
        self.test_targets = test.targets[keep]  # each test sample's class: its anomaly type where anomalies are typed

    def _leave_one_out(self, train: Split, test: Split, normal_ids: torch.Tensor, generator) -> tuple[Split, Split]:
        pooled = concat(train, test)
        is_normal = torch.isin(pooled.targets, normal_ids)
        normals = is_normal.nonzero().flatten()
        normals = normals[torch.randperm(len(normals), generator=generator)]
        n_train = round(0.8 * len(normals))
        test_keep = torch.cat([normals[n_train:], (~is_normal).nonzero().flatten()]).sort().values
        return take(pooled, normals[:n_train].sort().values), take(pooled, test_keep)

    def _known_anomalies(self, train: Split, generator) -> torch.Tensor:
        """Indices of the training images of `known_anomaly_classes` given to training (label 1)."""
        if not self.known_anomaly_classes:
            return torch.zeros(0, dtype=torch.long)
        members = torch.isin(train.targets, torch.tensor(self.known_anomaly_classes)).nonzero().flatten()
        n = round(len(members) * self.known_anomaly_fraction)
        if n == 0:
            raise UserError(f"data.known_anomaly_classes={list(self.known_anomaly_classes)} gives no training image")
        return members[stratified_subset(train.targets[members], n, generator)]

    def _with_anomaly_fraction(self, targets, keep: torch.Tensor, normal_ids, generator) -> torch.Tensor:
        is_normal = torch.isin(targets[keep], normal_ids)
        normals, anomalies = keep[is_normal], keep[~is_normal]
        f = self.test_anomaly_fraction
        n = round(f * len(normals) / (1 - f))
        if n > len(anomalies):
            raise UserError(
                f"data.test_anomaly_fraction={f} needs {n} test anomalies beside {len(normals)} normals, "
                f"but {self.name} has {len(anomalies)}; lower it"
            )
        anomalies = anomalies[stratified_subset(targets[anomalies], n, generator)]
        return torch.cat([normals, anomalies]).sort().values

    def _with_anomalies_per_class(self, targets, keep: torch.Tensor, normal_ids, generator) -> torch.Tensor:
        """All test normals, and `test_anomalies_per_class` test images (seeded) of each anomalous class."""
        picked = [keep[torch.isin(targets[keep], normal_ids)]]
        n = self.test_anomalies_per_class
        for cls in targets[keep].unique().tolist():
            if cls in self.normal_classes:
                continue
            members = keep[targets[keep] == cls]
            if len(members) < n:
                raise UserError(
                    f"data.test_anomalies_per_class={n}, but {self.name} has {len(members)} test images of class "
                    f"{self.classes[cls]}; lower it"
                )
            picked.append(members[torch.randperm(len(members), generator=generator)[:n]])
        return torch.cat(picked).sort().values

    def _image_set(self, split: Split, keep: torch.Tensor, generator: torch.Generator) -> ImageSet:
        images = convert(split.images[keep], self.image_size, self.channels)
        if self.noise_std:
            noise = torch.randn(images.shape, generator=generator) * (self.noise_std * 255)
            images = (images.float() + noise).round_().clamp_(0, 255).to(torch.uint8)
        masks = None if split.masks is None else resize(split.masks[keep], self.image_size, nearest=True)
        labels = (~torch.isin(split.targets[keep], torch.tensor(self.normal_classes))).long()
        return ImageSet(images, labels, masks, [split.ids[i] for i in keep.tolist()])

    def train_images(self, label: int = 0) -> ImageSet:
        """The training images with this label: 0 the normals, 1 the known anomalies (semi-supervised protocols)."""
        return self.train_set.subset((self.train_set.labels == label).nonzero().flatten())

    @property
    def has_validation(self) -> bool:
        return len(self.val_set) > 0

    def batches_per_epoch(self, world_size: int = 1) -> int:
        """Training batches per epoch and process, as the loader (under DDP, its distributed sampler) cuts them."""
        n = math.ceil(len(self.train_set) / world_size)
        return n // self.batch_size if self._drops_last(n) else math.ceil(n / self.batch_size)

    def test_batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        """Test samples by `index`, as one batch."""
        return self.test_set.__getitems__(indices.tolist())

    def sample_id(self, index: int) -> str:
        """The file path or id of test sample `index` (the batch's `index`)."""
        return self.test_set.ids[index]

    def normal_description(self, normal_class: list[int]) -> str:
        """What the run's last line calls the normal data: the normal classes' names."""
        return ", ".join(self.classes[c] for c in normal_class)

    def sample_type(self, index: int) -> str:
        """The class name of test sample `index`: its anomaly type (MVTec's defect, a folder's name), or `normal`'s."""
        return self.classes[int(self.test_targets[index])]

    def _loader(self, dataset: ImageSet, shuffle: bool) -> DataLoader | DeviceBatches:
        """Batches of `dataset`, cut on the trainer's device when `_batch_device` says so, else by a DataLoader; the
        same batches either way. Nothing here draws from the global random state (the shuffle and the loader's own
        seed have their generators), so a resumed run sees the same batches and the same noise as an unbroken one."""
        sampler = EpochShuffle(dataset, self.seed) if shuffle else None
        world_size = self.trainer.world_size if self.trainer is not None else 1
        drop_last = shuffle and self._drops_last(math.ceil(len(dataset) / world_size))
        device = self._batch_device(dataset)
        if device is not None:
            return DeviceBatches(dataset, device, self.batch_size, sampler, drop_last)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            generator=torch.Generator().manual_seed(self.seed),
            drop_last=drop_last,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            collate_fn=keep_batch,
        )

    def _batch_device(self, dataset: ImageSet) -> torch.device | None:
        """Where `dataset`'s batches are cut (`data.on_device`): the trainer's device when `true`, or when `auto` and
        the device is a GPU with room for the set (adrun.data.device_batches); none (a DataLoader) when `false`,
        without a trainer, or under DDP (the DataLoader's distributed sampler splits the set among the ranks)."""
        trainer = self.trainer
        if self.on_device is False or trainer is None or trainer.world_size > 1:
            return None
        device = trainer.strategy.root_device
        if self.on_device is True or fits_on(device, dataset.images, dataset.labels, dataset.masks):
            return device
        return None

    def _drops_last(self, n: int) -> bool:
        """Whether the training loader drops the incomplete last batch of `n` images (one process's share):
        `data.drop_last` (the official codes' default), never when it is the only batch (n < batch_size, so an epoch
        always has one), and always when it holds one image (it would break BatchNorm)."""
        return n % self.batch_size == 1 or (self.drop_last and n > self.batch_size)

    def train_dataloader(self) -> DataLoader | DeviceBatches:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader | DeviceBatches:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader | DeviceBatches:
        return self._loader(self.test_set, shuffle=False)
