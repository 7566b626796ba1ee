"""MNIST in its published IDX format, read by torchvision's dataset class.

`root` may hold the four files flat, as the publisher serves them (`train-images-idx3-ubyte.gz`, …, gzipped or not),
or in torchvision's layout `<root>/MNIST/raw/` (what `download: true` writes). Flat gzipped files are unpacked once
into torchvision's layout under `cache_dir`, since torchvision reads only that.
"""

from pathlib import Path

import torchvision
from torchvision.datasets.utils import extract_archive

from adrun.data.base import AnomalyDataModule, Split
from adrun.errors import UserError

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


class MNIST(AnomalyDataModule):
    classes = tuple(str(d) for d in range(10))
    torchvision_class = torchvision.datasets.MNIST
    url = "http://yann.lecun.com/exdb/mnist/"

    def __init__(self, root: str, download: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.root, self.download = Path(root).expanduser(), download
        if not download:
            self.torchvision_root()  # fail now, with the layout, rather than inside the training loop

    def raw_folder(self, root: Path) -> Path:
        return root / self.torchvision_class.__name__ / "raw"

    def torchvision_root(self) -> Path:
        """A directory torchvision's class reads: `root` itself, or the cache with the flat files unpacked."""
        if all((self.raw_folder(self.root) / f).is_file() for f in FILES):
            return self.root
        if all((self.root / f).is_file() for f in FILES):
            return self._link_flat(lambda f: self.root / f)
        if all((self.root / f"{f}.gz").is_file() for f in FILES):
            return self._link_flat(lambda f: self.root / f"{f}.gz")
        missing = next(f for f in FILES if not (self.root / f).is_file() and not (self.root / f"{f}.gz").is_file())
        raise UserError(
            f"{self.name} not found: {self.root}/{missing}[.gz] is missing. Put the four IDX files "
            f"({', '.join(FILES)}, gzipped or not) in {self.root} (from {self.url}), "
            "set data.root, or set data.download=true"
        )

    def _link_flat(self, source) -> Path:
        cache = self.cache_dir / self.torchvision_class.__name__.lower()
        raw = self.raw_folder(cache)
        raw.mkdir(parents=True, exist_ok=True)
        for f in FILES:
            if not (raw / f).is_file():
                path = source(f)
                if path.suffix == ".gz":
                    extract_archive(str(path), str(raw))
                else:
                    (raw / f).symlink_to(path.resolve())
        return cache

    def prepare_data(self) -> None:
        if self.download:
            self.torchvision_class(str(self.root), train=True, download=True)

    def load_split(self, train: bool) -> Split:
        root = self.root if self.download else self.torchvision_root()
        data = self.torchvision_class(str(root), train=train, download=False)
        split = "train" if train else "test"
        return Split(data.data.unsqueeze(1), data.targets.long(), [f"{split}/{i}" for i in range(len(data.targets))])
