"""Retinal OCT scans (Kermany et al., Cell 2018, "OCT2017"): `<root>/{train,test}/{NORMAL,CNV,DME,DRUSEN}/*.jpeg`.

The published archive (https://data.mendeley.com/datasets/rscbjbr9sj) unpacks to `OCT2017/train` (83,484 scans) and
`OCT2017/test` (1,000 scans, 250 per class); `root` is the folder holding `train/` and `test/`. NORMAL (class 0) is the
normal class; the three diseases (choroidal neovascularisation, diabetic macular oedema, drusen) are anomalies. They
are not peer categories, so leave-one-out and known anomalies are refused. The scans are grey B-scans of varying,
non-square size, squashed once to `image_size`² (64 by default: AnoGAN's 64×64 OCT setting).
"""

from pathlib import Path

import torch

from adrun.data.base import AnomalyDataModule, Split
from adrun.data.images import decode_all, list_images
from adrun.errors import UserError

SPLITS = ("train", "test")
URL = "https://data.mendeley.com/datasets/rscbjbr9sj"


class OCT(AnomalyDataModule):
    classes = ("NORMAL", "CNV", "DME", "DRUSEN")
    cacheable = True
    peer_classes = False

    def __init__(self, root: str, **kwargs):
        super().__init__(**kwargs)
        self.root = Path(root).expanduser()
        for split in SPLITS:  # fail now, with the layout, rather than inside the training loop
            for name in self.classes:
                self._class_folder(split, name)

    def _class_folder(self, split: str, name: str) -> Path:
        folder = self.root / split / name
        layout = f"expected {self.root}/{{train,test}}/{{{','.join(self.classes)}}}/*.jpeg"
        if not folder.is_dir():
            missing = next(p for p in (self.root, self.root / split, folder) if not p.is_dir())
            raise UserError(
                f"{self.name} not found: {missing} is missing; {layout} (OCT2017/ in the archive from {URL}); "
                "set data.root to the folder holding train/ and test/"
            )
        if not list_images(folder):
            raise UserError(f"{self.name}: {folder} holds no images; {layout} (from {URL}); restore the folder's scans")
        return folder

    def load_split(self, train: bool) -> Split:
        split = "train" if train else "test"
        paths, targets = [], []
        for class_id, name in enumerate(self.classes):
            files = list_images(self._class_folder(split, name))
            paths += files
            targets += [class_id] * len(files)
        images = decode_all(paths, self.image_size, self.channels)
        return Split(images, torch.tensor(targets, dtype=torch.long), [str(p) for p in paths])
