"""Caltech-256 (Griffin, Holub & Perona 2007) under OGNet's outlier-detection protocol.

Layout: `<root>/256_ObjectCategories/NNN.name/NNN_XXXX.jpg`, as `256_ObjectCategories.tar` from
https://data.caltech.edu/records/nyy15-4j048 unpacks (or torchvision's `<root>/caltech256/256_ObjectCategories`, what
`download: true` writes): 256 object categories of 80–827 images each and the background category `257.clutter`. The
JPEGs are a mix of greyscale and colour at many sizes; each is decoded once, converted to `channels` and resized to
`image_size` (PIL), and the split is cached. Classes are the category names in folder order, `clutter` last.

Protocol. Caltech-256 has no published train/test split. OGNet (Zaheer et al., CVPR 2020, §4) takes the setup of
ALOCC (Sabokrou et al., CVPR 2018): n ∈ {1, 3, 5} categories drawn at random are the inliers, 150 images of each are
used, and outliers drawn at random from `257.clutter` make 50% of the evaluation data. Here, as a train/test split:

- `n_inliers` object categories are drawn by `seed`; they are the normal classes (`normal_class` is ignored);
- train: the first `train_per_category` images (file-name order, the papers' "first 150") of each inlier category;
- test: the other images of the inlier categories, plus clutter images drawn by `seed` so that they make
  `outlier_fraction` of the test set.

The draw is among the categories with more than `train_per_category` images, so that every inlier category also has
test images: most Caltech-256 categories hold fewer than 150, and a draw among all 256 would often leave the test set
without a single inlier. The whole protocol is fixed (and checked) when the datamodule is built, so an impossible
setting fails at once; the base then carves validation normals from the training images as for any dataset.
"""

import re
from pathlib import Path

import torch
import torchvision

from adrun.data.base import AnomalyDataModule, Split
from adrun.data.images import decode_all, list_dirs, list_images
from adrun.errors import UserError

TREE = "256_ObjectCategories"
CLUTTER = "257.clutter"
URL = "https://data.caltech.edu/records/nyy15-4j048"
LAYOUT = f"<root>/{TREE}/NNN.name/NNN_XXXX.jpg (256 object categories and {CLUTTER})"


class Caltech256(AnomalyDataModule):
    cacheable = True
    peer_classes = False  # OGNet's protocol: drawn inliers against clutter; no leave-one-out, no known anomalies

    def __init__(
        self,
        root: str,
        download: bool = False,
        n_inliers: int = 1,
        train_per_category: int = 150,
        outlier_fraction: float = 0.5,
        **kwargs,
    ):
        if not isinstance(n_inliers, int) or n_inliers < 1:
            raise UserError(f"data.n_inliers must be a positive integer (OGNet uses 1, 3 or 5), got {n_inliers!r}")
        if not isinstance(train_per_category, int) or train_per_category < 1:
            raise UserError(f"data.train_per_category must be a positive integer, got {train_per_category!r}")
        if not 0 < outlier_fraction < 1:
            raise UserError(f"data.outlier_fraction must be in (0, 1), got {outlier_fraction}")
        self.root, self.download = Path(root).expanduser(), download
        self.n_inliers, self.train_per_category, self.outlier_fraction = n_inliers, train_per_category, outlier_fraction
        folders, files = self._scan(self._tree())
        self.classes = tuple(folder.name.split(".", 1)[-1] for folder in folders)
        super().__init__(**kwargs)
        self.normal_classes, self.split_files = self._protocol(folders, files)

    def _tree(self) -> Path:
        """The folder of category folders: `<root>/256_ObjectCategories` or torchvision's layout (downloading there)."""
        for tree in (self.root / TREE, self.root / "caltech256" / TREE):
            if tree.is_dir():
                return tree
        if self.download:
            # here rather than in prepare_data: the classes and the protocol's draw come from the folder tree
            torchvision.datasets.Caltech256(str(self.root), download=True)
            return self.root / "caltech256" / TREE
        raise UserError(
            f"{self.name} not found: {self.root / TREE} is missing. Expected {LAYOUT}, or torchvision's "
            f"<root>/caltech256/{TREE}; get {TREE}.tar from {URL}, set data.root, or set data.download=true"
        )

    def _scan(self, tree: Path) -> tuple[list[Path], list[list[Path]]]:
        """The category folders in folder order with clutter last, and each one's images; refuses empty or missing."""
        folders = list_dirs(tree)
        clutter = [p for p in folders if re.fullmatch(r"\d+\.clutter", p.name)]
        if not clutter:
            raise UserError(
                f"{self.name}: {tree / CLUTTER} is missing; the outliers are drawn from it. Expected {LAYOUT}, "
                f"from {URL}"
            )
        folders = [p for p in folders if p != clutter[0]] + clutter[:1]
        if len(folders) < 2:
            raise UserError(f"{self.name}: {tree} holds no object category folder next to {CLUTTER}; expected {LAYOUT}")
        files = []
        for folder in folders:
            files.append(list_images(folder))
            if not files[-1]:
                raise UserError(
                    f"{self.name}: category folder {folder} holds no images; expected {LAYOUT}, from {URL}; "
                    "restore its images or remove the folder"
                )
        return folders, files

    def _protocol(self, folders: list[Path], files: list[list[Path]]) -> tuple[tuple[int, ...], dict]:
        """OGNet's draw: the inlier ids, and the (paths, class ids) of the train and test splits."""
        generator = torch.Generator().manual_seed(self.seed)
        per = self.train_per_category
        eligible = [c for c in range(len(folders) - 1) if len(files[c]) > per]
        if len(eligible) < self.n_inliers:
            raise UserError(
                f"data.n_inliers={self.n_inliers} needs {self.n_inliers} object categories with more than "
                f"data.train_per_category={per} images (the rest make the test set), but {folders[0].parent} has "
                f"{len(eligible)}; lower data.n_inliers or data.train_per_category"
            )
        inliers = sorted(eligible[i] for i in torch.randperm(len(eligible), generator=generator)[: self.n_inliers])
        train = [(path, c) for c in inliers for path in files[c][:per]]
        test = [(path, c) for c in inliers for path in files[c][per:]]
        f, clutter = self.outlier_fraction, len(folders) - 1
        n_out = round(f * len(test) / (1 - f))
        if n_out > len(files[clutter]):
            raise UserError(
                f"data.outlier_fraction={f} needs {n_out} outliers beside {len(test)} inlier test images, but "
                f"{folders[clutter]} holds {len(files[clutter])}; lower data.outlier_fraction or data.n_inliers, "
                "or raise data.train_per_category"
            )
        drawn = torch.randperm(len(files[clutter]), generator=generator)[:n_out].sort().values
        test += [(files[clutter][i], clutter) for i in drawn.tolist()]
        return tuple(inliers), {True: train, False: test}

    def cache_identity(self) -> dict:
        """The protocol selects the files: the drawn inliers, the per-category cut and the seeded clutter draw."""
        return {
            "inliers": [self.classes[c] for c in self.normal_classes],
            "train_per_category": self.train_per_category,
            "outlier_fraction": self.outlier_fraction,
            "seed": self.seed,
        }

    def load_split(self, train: bool) -> Split:
        paths = [path for path, _ in self.split_files[train]]
        targets = torch.tensor([c for _, c in self.split_files[train]], dtype=torch.long)
        return Split(decode_all(paths, self.image_size, self.channels), targets, [str(p) for p in paths])
