"""CIFAR-10 (Krizhevsky 2009) in its published python pickle batches, read by torchvision's dataset class.

`root` holds `cifar-10-batches-py/` (`data_batch_1` … `data_batch_5`, `test_batch`, `batches.meta`), as the archive
from https://www.cs.toronto.edu/~kriz/cifar.html unpacks and as `download: true` writes it; `root` may also be that
folder itself. torchvision checks every file's MD5 against the published archive, so a truncated or altered batch is
refused by name rather than read.

The images go straight from torchvision's `.data` (N, 32, 32, 3) into a tensor, no PIL, resized to `image_size` and
converted to `channels` once; that split is cached like every file-based dataset's, so later runs skip the pickles and
their MD5 checks (see scripts/bench_data_startup.py for the figures).
"""

from pathlib import Path

import torch
import torchvision
from torchvision.datasets.utils import check_integrity

from adrun.data.base import AnomalyDataModule, Split
from adrun.data.images import convert
from adrun.errors import UserError


class CIFAR10(AnomalyDataModule):
    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    torchvision_class = torchvision.datasets.CIFAR10
    url = "https://www.cs.toronto.edu/~kriz/cifar.html"
    cacheable = True

    def __init__(self, root: str, download: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.root, self.download = Path(root).expanduser(), download
        if not download:
            self.torchvision_root()  # fail now, with the layout, rather than inside the training loop

    @classmethod
    def files(cls) -> list[tuple[str, str]]:
        """(file name, published MD5) of every file torchvision reads, in the order it reads them."""
        tv = cls.torchvision_class
        return [(name, md5) for name, md5 in tv.train_list + tv.test_list] + [(tv.meta["filename"], tv.meta["md5"])]

    def torchvision_root(self) -> Path:
        """The directory torchvision's class reads (the one holding `cifar-10-batches-py/`), checked file by file."""
        folder = self.torchvision_class.base_folder
        root = self.root.parent if self.root.name == folder and not (self.root / folder).is_dir() else self.root
        for name, _ in self.files():
            path = root / folder / name
            if not path.is_file():
                raise UserError(
                    f"{self.name} not found: {path} is missing. Expected {root}/{folder}/ with "
                    f"{', '.join(n for n, _ in self.files())} (the python version from {self.url}); "
                    "set data.root, or set data.download=true"
                )
        return root

    def _check_md5(self, root: Path) -> None:
        folder = self.torchvision_class.base_folder
        for name, md5 in self.files():
            if not check_integrity(str(root / folder / name), md5):
                raise UserError(
                    f"{self.name}: {root / folder / name} is corrupt (its MD5 is not the published {md5}); "
                    f"download the python version again from {self.url}, or set data.download=true"
                )

    def prepare_data(self) -> None:
        if self.download:
            self.torchvision_class(str(self.root), train=True, download=True)

    def load_split(self, train: bool) -> Split:
        root = self.root if self.download else self.torchvision_root()  # prepare_data has downloaded by now
        try:
            data = self.torchvision_class(str(root), train=train, download=self.download)
        except RuntimeError:  # torchvision's "Dataset not found or corrupted": name the file
            self._check_md5(root)
            raise
        images = torch.from_numpy(data.data).permute(0, 3, 1, 2)
        images = convert(images, self.image_size, self.channels).contiguous()
        split = "train" if train else "test"
        targets = torch.as_tensor(data.targets, dtype=torch.long)
        return Split(images, targets, [f"{split}/{i}" for i in range(len(targets))])
