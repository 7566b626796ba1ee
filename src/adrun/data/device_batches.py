"""Batches cut where the model is (`data.on_device`, issue 17): a split's uint8 tensors are copied to the trainer's
device once, and each batch is an index into them there, converted to the batch contract on the device.

`DeviceBatches` gives the same batches, in the same order, as `DataLoader(ImageSet, batch_size, sampler, drop_last)`
with `keep_batch` (adrun.data.base): the order is the sampler's own (an `EpochShuffle`, on which Lightning calls
`set_epoch` through the `sampler` attribute, or none: the set in order), copied to the device once per epoch. No
workers, no pinned copies, no per-batch host-to-device transfer. Single process only: under DDP the datamodule keeps
the DataLoader, whose sampler Lightning replaces by a DistributedSampler.
"""

from __future__ import annotations

import math

import torch

ON_DEVICE_FRACTION = 0.25  # data.on_device=auto: a split goes to the GPU when it takes at most this of its free memory


def to_batch(images: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor | None, index: torch.Tensor) -> dict:
    """The batch contract from a set's uint8 tensors and the long indices to take, on whichever device they are:
    image float [-1, 1], label long, mask float (zeros without masks), index."""
    x = images.index_select(0, index).float().div_(127.5).sub_(1.0)
    mask = x.new_zeros(x.shape[0], 1, *x.shape[2:]) if masks is None else masks.index_select(0, index).float()
    return {"image": x, "label": labels.index_select(0, index), "mask": mask, "index": index}


def nbytes(*tensors: torch.Tensor | None) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def fits_on(device: torch.device, *tensors: torch.Tensor | None) -> bool:
    """Whether the tensors take at most ON_DEVICE_FRACTION of the CUDA device's free memory (never on another)."""
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes(*tensors) <= ON_DEVICE_FRACTION * free


class DeviceBatches:
    """A set (`images`, `labels`, `masks` as an ImageSet holds them) on `device`, iterated as the DataLoader would."""

    def __init__(self, dataset, device: torch.device, batch_size: int, sampler=None, drop_last: bool = False):
        self.images, self.labels = dataset.images.to(device), dataset.labels.to(device)
        self.masks = None if dataset.masks is None else dataset.masks.to(device)
        self.device, self.batch_size, self.sampler, self.drop_last = device, batch_size, sampler, drop_last
        self.batch_sampler = None  # Lightning reads a loader's sampler through this when it has a `sampler`

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        n = len(self.labels)
        order = torch.as_tensor(list(self.sampler), dtype=torch.long) if self.sampler is not None else torch.arange(n)
        order = order.to(self.device, non_blocking=True)  # once per epoch; a pageable source is staged at once
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield to_batch(self.images, self.labels, self.masks, order[start : start + self.batch_size])
