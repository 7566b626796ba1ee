"""MNIST in its published IDX format, read by torchvision's dataset class.

`root` may hold the four files flat, as the publisher serves them (`train-images-idx3-ubyte.gz`, …, gzipped or not),
or in torchvision's layout `<root>/MNIST/raw/` (what `download: true` writes). Flat gzipped files are unpacked once
into torchvision's layout under `cache_dir`, since torchvision reads only that. Each file's size is checked against its
IDX header first, so a truncated or foreign file is named rather than failing inside torchvision, and a damaged `.gz`
leaves nothing half-unpacked in the cache.
"""

import gzip
import math
import struct
import zlib
from pathlib import Path

import torchvision

from adrun.atomic import write_via
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
            for f in FILES:
                self.check_file(self.raw_folder(self.root) / f)
            return self.root
        if all((self.root / f).is_file() for f in FILES):
            for f in FILES:
                self.check_file(self.root / f)
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
                    self._unpack(path, raw / f)
                else:
                    (raw / f).symlink_to(path.resolve())
        return cache

    def _unpack(self, gz: Path, target: Path) -> None:
        """gz → target, checked first and written through a temporary file: a damaged archive leaves no file behind
        that a later run would trust."""
        try:
            data = gzip.decompress(gz.read_bytes())
        except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
            raise UserError(f"{self.name}: cannot unpack {gz}: {error}; {self.fetch_again}") from error
        self.check_idx(gz, data[:16], len(data))
        write_via(target, lambda tmp: tmp.write_bytes(data))

    def check_file(self, path: Path) -> None:
        with open(path, "rb") as file:
            self.check_idx(path, file.read(16), path.stat().st_size)

    def check_idx(self, name: Path, head: bytes, size: int) -> None:
        """An IDX file of unsigned bytes that starts with `head` must have the size its header gives (1–3 dims)."""
        ndim = head[3] if len(head) >= 4 and head[:3] == b"\x00\x00\x08" and 1 <= head[3] <= 3 else 0
        dims = head[4 : 4 + 4 * ndim]
        if not ndim or len(dims) < 4 * ndim or size != 4 + 4 * ndim + math.prod(struct.unpack(f">{ndim}I", dims)):
            raise UserError(f"{self.name}: {name} is cut short or not an IDX file of bytes; {self.fetch_again}")

    @property
    def fetch_again(self) -> str:
        return f"download it again from {self.url}, or set data.download=true"

    def prepare_data(self) -> None:
        if self.download:
            self.torchvision_class(str(self.root), train=True, download=True)

    def load_split(self, train: bool) -> Split:
        root = self.root if self.download else self.torchvision_root()
        data = self.torchvision_class(str(root), train=train, download=False)
        split = "train" if train else "test"
        return Split(data.data.unsqueeze(1), data.targets.long(), [f"{split}/{i}" for i in range(len(data.targets))])
