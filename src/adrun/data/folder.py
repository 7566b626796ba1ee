"""Your own images: a folder of normal training images, one of normal test images, one per anomaly type, and masks.

- `train_dir`: normal training images (the validation normals are carved from these);
- `test_normal_dir`: normal test images;
- `test_anomaly_dirs`: one folder or a list; each is one anomaly class, named after the folder;
- `mask_dir` (optional): a mask per anomalous test image, found by the image's file stem (`scratch/007.png` →
  `007.*` or `007_mask.*`, MVTec's naming), either flat in `mask_dir` or in `mask_dir/<anomaly folder name>/` where
  that sub-folder exists (needed when two anomaly folders share file names). White (> 127) marks anomalous pixels.
  Every anomalous image needs its mask, every mask its image; normal images get empty masks. Pixel metrics are
  computed only when `mask_dir` is given.

Images may be grey, RGB or RGBA, of any and varying size; each is converted to `channels` and squashed once to
`image_size`² (masks with nearest neighbour). Classes are ("normal", *anomaly folder names); the training folder holds
normals only, so `normal_class` must be 0 and leave-one-out and known anomalies are refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from adrun.data.base import AnomalyDataModule, Split
from adrun.data.images import decode_all, list_dirs, list_images
from adrun.errors import UserError

LAYOUT = (
    "data=folder reads data.train_dir (normal training images), data.test_normal_dir (normal test images), "
    "data.test_anomaly_dirs (one folder per anomaly type) and optionally data.mask_dir (masks named by image stem)"
)
EXAMPLE = (
    "e.g. adrun data=folder data.train_dir=parts/train/good data.test_normal_dir=parts/test/good "
    "'data.test_anomaly_dirs=[parts/test/scratch,parts/test/dent]'"
)


class Folder(AnomalyDataModule):
    cacheable = True
    peer_classes = False
    typed_anomalies = True  # the anomalous classes are anomaly types: image_auroc/<type> per type
    normals_only_training = True

    def __init__(
        self,
        train_dir: str | None = None,
        test_normal_dir: str | None = None,
        test_anomaly_dirs: str | Sequence[str] | None = None,
        mask_dir: str | None = None,
        **kwargs,
    ):
        given = {"train_dir": train_dir, "test_normal_dir": test_normal_dir, "test_anomaly_dirs": test_anomaly_dirs}
        if missing := [f"data.{key}" for key, value in given.items() if not value]:
            raise UserError(f"{', '.join(missing)} not set; {LAYOUT}; {EXAMPLE}")
        if isinstance(test_anomaly_dirs, str | Path):
            test_anomaly_dirs = [test_anomaly_dirs]
        self.train_dir, self.test_normal_dir = Path(train_dir).expanduser(), Path(test_normal_dir).expanduser()
        self.anomaly_dirs = [Path(d).expanduser() for d in test_anomaly_dirs]
        self.mask_dir = Path(mask_dir).expanduser() if mask_dir else None
        names = [d.resolve().name for d in self.anomaly_dirs]
        if len(set(names)) < len(names) or "normal" in names:
            raise UserError(
                f"data.test_anomaly_dirs: each folder names its anomaly class, so the names must differ from each "
                f"other and from 'normal'; got {names}; rename or drop a folder"
            )
        self.classes = ("normal", *names)
        self.has_masks = self.mask_dir is not None
        super().__init__(**kwargs)
        self.root = self.train_dir
        for key, folder in (
            ("train_dir", self.train_dir),
            ("test_normal_dir", self.test_normal_dir),
            *(("test_anomaly_dirs", d) for d in self.anomaly_dirs),
        ):
            self._images(key, folder)  # fail now, with the layout, rather than inside the training loop
        if self.train_dir.resolve() == self.test_normal_dir.resolve():
            raise UserError(
                f"data.train_dir and data.test_normal_dir are the same folder ({self.train_dir}): the test normals "
                "would be training images; give held-out normals"
            )
        if self.mask_dir is not None:
            if not self.mask_dir.is_dir():
                raise UserError(f"data.mask_dir {self.mask_dir} is missing; {LAYOUT}; set it to null for no masks")
            self._mask_paths()

    def _images(self, key: str, folder: Path) -> list[Path]:
        if not folder.is_dir():
            raise UserError(f"data.{key} {folder} is missing; {LAYOUT}; {EXAMPLE}")
        images = list_images(folder)
        if not images and (inside := [d.name for d in list_dirs(folder)]):  # pointed one level too high
            shown = ", ".join(inside[:3]) + (", …" if len(inside) > 3 else "")
            raise UserError(
                f"data.{key} {folder} holds folders ({shown}) but no images; point data.{key} at the folder that "
                f"holds the images; {LAYOUT}"
            )
        if not images:
            raise UserError(f"data.{key} {folder} holds no images (.png, .jpg, .tif, .bmp); {LAYOUT}")
        return images

    def _mask_paths(self) -> list[Path]:
        """The mask of every anomalous test image, in the order of the anomalous images; errors name what's off."""
        found: list[Path] = []
        used: dict[Path, Path] = {}
        searched: set[Path] = set()
        for key_dir in self.anomaly_dirs:
            folder = self.mask_dir / key_dir.resolve().name
            folder = folder if folder.is_dir() else self.mask_dir
            searched.add(folder)
            masks = list_images(folder)
            for image in self._images("test_anomaly_dirs", key_dir):
                matches = [m for m in masks if m.stem in (image.stem, f"{image.stem}_mask")]
                if not matches:
                    raise UserError(
                        f"no mask for anomalous image {image}: expected {folder}/{image.stem}.png (or "
                        f"{image.stem}_mask.*); every anomalous image needs a mask in data.mask_dir, or set it to null"
                    )
                if len(matches) > 1:
                    raise UserError(f"anomalous image {image} matches several masks: {', '.join(map(str, matches))}")
                if matches[0] in used:
                    raise UserError(
                        f"mask {matches[0]} matches both {used[matches[0]]} and {image}; put each anomaly folder's "
                        f"masks in {self.mask_dir}/<folder name>/"
                    )
                used[matches[0]] = image
                found.append(matches[0])
        unused = [m for folder in sorted(searched) for m in list_images(folder) if m not in used]
        if unused:
            more = f" (and {len(unused) - 1} more)" if len(unused) > 1 else ""
            raise UserError(
                f"masks without matching images in data.mask_dir: {unused[0]}{more}; a mask is named by its anomalous "
                "image's stem (007.png or 007_mask.png for 007.jpg); remove or rename it"
            )
        return found

    def cache_identity(self) -> dict:
        """`root` is train_dir; the other folders select files too."""
        return {"dirs": [None if d is None else str(d.resolve()) for d in self._dirs()]}

    def fingerprint_roots(self) -> list[Path]:
        return [d for d in self._dirs() if d is not None]

    def _dirs(self) -> list[Path | None]:
        return [self.train_dir, self.test_normal_dir, *self.anomaly_dirs, self.mask_dir]

    def load_split(self, train: bool) -> Split:
        if train:
            paths = self._images("train_dir", self.train_dir)
            images = decode_all(paths, self.image_size, self.channels)
            return Split(images, torch.zeros(len(paths), dtype=torch.long), [str(p) for p in paths])
        paths = self._images("test_normal_dir", self.test_normal_dir)
        n_normal = len(paths)
        targets = [0] * n_normal
        for class_id, folder in enumerate(self.anomaly_dirs, start=1):
            files = self._images("test_anomaly_dirs", folder)
            paths += files
            targets += [class_id] * len(files)
        images = decode_all(paths, self.image_size, self.channels)  # names a corrupt file
        masks = None
        if self.mask_dir is not None:
            mask_paths = self._mask_paths()
            anomalies = decode_all(mask_paths, self.image_size, self.channels, mask=True)
            for image, mask in zip(paths[n_normal:], mask_paths, strict=True):
                check_same_aspect(image, mask)
            empty = torch.zeros(n_normal, 1, self.image_size, self.image_size, dtype=torch.uint8)
            masks = torch.cat([empty, anomalies])
        return Split(images, torch.tensor(targets, dtype=torch.long), [str(p) for p in paths], masks)

    def normal_description(self, normal_class: list[int]) -> str:
        """The training folder, not the class name `normal` ("normal: normal" said nothing)."""
        return str(self.train_dir)


def check_same_aspect(image: Path, mask: Path) -> None:
    """A mask must cover its image: the same aspect ratio (it may be stored at another resolution). Both files have
    been decoded already, so only their headers are read here."""
    with Image.open(image) as a, Image.open(mask) as b:
        (wa, ha), (wb, hb) = a.size, b.size
    if abs(wa * hb - wb * ha) > 0.01 * wa * hb:
        raise UserError(f"mask {mask} is {wb}×{hb} but its image {image} is {wa}×{ha}; a mask must cover its image")
