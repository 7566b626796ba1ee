"""scikit-learn's bundled UCI handwritten digits: 1,797 8×8 images of 0–9, shipped inside the package (no download)."""

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from adrun.data.base import AnomalyDataModule, Split


class Digits(AnomalyDataModule):
    """The digits have no published test split: a seeded, class-stratified one of `test_fraction` is made here."""

    classes = tuple(str(d) for d in range(10))

    def __init__(self, test_fraction: float = 0.3, **kwargs):
        super().__init__(**kwargs)
        self.test_fraction = test_fraction

    def load_split(self, train: bool) -> Split:
        digits = load_digits()
        # pixel values are 0–16 ink counts; scale them to 0–255 grey levels
        images = torch.from_numpy(digits.images * (255 / 16)).round().to(torch.uint8).unsqueeze(1)
        targets = torch.from_numpy(digits.target).long()
        index = torch.arange(len(targets)).numpy()
        train_idx, test_idx = train_test_split(
            index, test_size=self.test_fraction, stratify=digits.target, random_state=self.seed
        )
        keep = torch.from_numpy(train_idx if train else test_idx)
        return Split(images[keep], targets[keep], [f"digits/{i}" for i in keep.tolist()])
