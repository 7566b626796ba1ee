"""MVTec AD (Bergmann et al., CVPR 2019): 15 industrial categories, defect-free training images, pixel-exact masks.

The published layout, one folder per category under `root`:

    <root>/<category>/train/good/*.png                   defect-free training images
    <root>/<category>/test/<defect|good>/*.png           test images, one folder per defect type
    <root>/<category>/ground_truth/<defect>/<n>_mask.png  the mask of test/<defect>/<n>.png (0 or 255)

Classes are `good` (id 0, the normal class) and the defect folders found under test/, sorted. The training split is
train/good; the test split is every test image, good ones with empty masks. Some categories (grid, screw, zipper) are
grey PNGs: they are decoded to the configured channel count like the others. The data set is published at
https://www.mvtec.com/company/research/datasets/mvtec-ad (no download API: fetch and unpack it by hand).
"""

from __future__ import annotations

from pathlib import Path

import torch

from adrun.data.base import AnomalyDataModule, Split
from adrun.data.images import decode_all, list_dirs, list_images
from adrun.errors import UserError

CATEGORIES = (
    "bottle",
    "cable",
    "capsule",
    "carpet",
    "grid",
    "hazelnut",
    "leather",
    "metal_nut",
    "pill",
    "screw",
    "tile",
    "toothbrush",
    "transistor",
    "wood",
    "zipper",
)
URL = "https://www.mvtec.com/company/research/datasets/mvtec-ad"
LAYOUT = (
    "<root>/<category>/train/good/*.png, <root>/<category>/test/<defect|good>/*.png and "
    "<root>/<category>/ground_truth/<defect>/<n>_mask.png"
)
MASK_SUFFIX = "_mask"


class MVTecAD(AnomalyDataModule):
    """One MVTec AD category. `normal_class` must stay 0 (`good`): the defect types are the anomalies."""

    has_masks = True
    cacheable = True
    peer_classes = False
    typed_anomalies = True  # the anomalous classes are anomaly types: image_auroc/<type> per type
    normals_only_training = True

    def __init__(self, root: str, category: str = "bottle", **kwargs):
        if category not in CATEGORIES:
            raise UserError(
                f"data.category={category!r} is not an MVTec AD category; choose one of: {', '.join(CATEGORIES)}"
            )
        self.root, self.category = Path(root).expanduser(), category
        self.folder = self.root / category
        self.require(self.folder / "train" / "good", self.folder / "test" / "good")
        defects = [p.name for p in list_dirs(self.folder / "test") if p.name != "good"]
        if not defects:
            raise UserError(f"{self.folder / 'test'} holds no defect folder; expected {LAYOUT} (MVTec AD, from {URL})")
        self.classes = ("good", *defects)
        super().__init__(**kwargs)

    def require(self, *paths: Path) -> None:
        """Fail with the layout and where the data is published, naming the first missing path (root first)."""
        if not self.folder.is_dir() and (self.root / "train").is_dir():
            raise UserError(
                f"data.root={self.root} is itself a category folder (it holds train/), but data.root is the folder "
                f"that holds the categories: set data.root={self.root.parent} data.category={self.root.name}; "
                f"expected {LAYOUT}"
            )
        for path in paths:
            for part in (*reversed(path.relative_to(self.root).parents), path.relative_to(self.root)):
                if not (self.root / part).is_dir():
                    raise UserError(
                        f"MVTec AD not found: {self.root / part} is missing; expected {LAYOUT} under "
                        f"data.root={self.root}. Download MVTec AD from {URL}, unpack it and set data.root"
                    )

    def cache_identity(self) -> dict:
        return {"category": self.category}

    def fingerprint_roots(self) -> list[Path]:
        return [self.folder]  # another category's files changing does not invalidate this one

    def load_split(self, train: bool) -> Split:
        size, channels = self.image_size, self.channels
        if train:
            paths = self.nonempty(list_images(self.folder / "train" / "good"), self.folder / "train" / "good")
            targets = torch.zeros(len(paths), dtype=torch.long)
            return Split(decode_all(paths, size, channels), targets, [str(p) for p in paths])
        paths, targets, mask_paths, masked = self.test_samples()
        masks = torch.zeros(len(paths), 1, size, size, dtype=torch.uint8)
        masks[masked] = decode_all(mask_paths, size, 1, mask=True)
        return Split(decode_all(paths, size, channels), targets, [str(p) for p in paths], masks)

    def nonempty(self, paths: list[Path], folder: Path) -> list[Path]:
        if not paths:
            raise UserError(f"{folder} holds no image; expected {LAYOUT} (MVTec AD, from {URL})")
        return paths

    def test_samples(self) -> tuple[list[Path], torch.Tensor, list[Path], torch.Tensor]:
        """Test images in class order, their class ids, the defect images' mask files and those images' indices."""
        test, truth = self.folder / "test", self.folder / "ground_truth"
        paths: list[Path] = []
        targets: list[int] = []
        mask_paths: list[Path] = []
        masked: list[int] = []
        for class_id, name in enumerate(self.classes):
            images = self.nonempty(list_images(test / name), test / name)
            if class_id:
                masks = {p.stem: p for p in list_images(truth / name)} if (truth / name).is_dir() else {}
                for i, image in enumerate(images):
                    mask = masks.pop(f"{image.stem}{MASK_SUFFIX}", None)
                    if mask is None:
                        raise UserError(
                            f"the mask of {image} is missing: expected {truth / name / image.stem}{MASK_SUFFIX}.png "
                            f"({LAYOUT}; MVTec AD, from {URL})"
                        )
                    masked.append(len(paths) + i)
                    mask_paths.append(mask)
                if masks:
                    orphan = min(masks.values())
                    raise UserError(
                        f"masks without matching images: {orphan} has no image "
                        f"{test / name / orphan.stem.removesuffix(MASK_SUFFIX)}.*; expected {LAYOUT}"
                    )
            paths += images
            targets += [class_id] * len(images)
        defects = set(self.classes[1:])
        for folder in list_dirs(truth) if truth.is_dir() else []:
            if folder.name not in defects and list_images(folder):
                raise UserError(
                    f"masks without matching images: {folder} has no defect folder {test / folder.name}; "
                    f"expected {LAYOUT}"
                )
        return paths, torch.tensor(targets, dtype=torch.long), mask_paths, torch.tensor(masked, dtype=torch.long)
