"""UCSD Anomaly Dataset v1p2, Ped2 (Mahadevan et al., CVPR 2010): pedestrian walkway frames; anomalies are bikes,
skaters and carts, with per-frame pixel masks.

The published layout (the tarball unpacks to `UCSD_Anomaly_Dataset.v1p2/`, which is `root`; `root` may also be the
`UCSDped2` folder itself):

    <root>/UCSDped2/Train/TrainNNN/*.tif     training clips, every frame normal
    <root>/UCSDped2/Test/TestNNN/*.tif       test clips
    <root>/UCSDped2/Test/TestNNN_gt/*.bmp    one mask per test frame, named like the frame (001.tif ↔ 001.bmp);
                                             .png and .tif masks are accepted too

Every frame is one sample. Classes are `normal` (id 0) and `anomalous` (id 1): a test frame is anomalous when its
mask has any anomalous pixel at the file's own size (so a small object that the resize would drop still counts).
Only Train frames are used for training. The paper's metric, frame-level AUROC over all test frames, is the image AUROC
the evaluation always reports; pixel AUROC and AUPRO come from the masks. Frames are 240×360 grey; they are resized to
`image_size`×`image_size` (256 by default), one channel unless `channels: 3`. Published at
http://www.svcl.ucsd.edu/projects/anomaly/dataset.htm (no download API: fetch and unpack it by hand).
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from adrun.data.base import AnomalyDataModule, Split
from adrun.data.images import decode_all, list_dirs, list_images
from adrun.errors import UserError

SCENE = "UCSDped2"
URL = "http://www.svcl.ucsd.edu/projects/anomaly/dataset.htm"
LAYOUT = (
    "<root>/UCSDped2/Train/TrainNNN/*.tif, <root>/UCSDped2/Test/TestNNN/*.tif and <root>/UCSDped2/Test/TestNNN_gt/*.bmp"
)
FRAME_SUFFIXES = (".tif", ".tiff")
MASK_SUFFIXES = (".bmp", ".png", ".tif", ".tiff")
GT = "_gt"


def any_pixel(path: Path) -> bool:
    """Whether a mask file, at its own size, marks any pixel (grey level > 127, as `decode` thresholds)."""
    with Image.open(path) as image:
        return image.convert("L").getextrema()[1] > 127


class Ped2(AnomalyDataModule):
    """UCSD Ped2 frames. `normal_class` must stay 0 (`normal`): the training clips hold normal frames only."""

    classes = ("normal", "anomalous")
    has_masks = True
    cacheable = True
    peer_classes = False
    normals_only_training = True

    def __init__(self, root: str, **kwargs):
        super().__init__(**kwargs)
        self.root = Path(root).expanduser()
        self.scene = self.scene_folder()

    def scene_folder(self) -> Path:
        """`<root>/UCSDped2`, or `root` itself when it is that folder; fails naming the first missing path."""
        if not (self.root / SCENE).is_dir() and (self.root / "Train").is_dir() and (self.root / "Test").is_dir():
            return self.root
        for path in (self.root, self.root / SCENE, self.root / SCENE / "Train", self.root / SCENE / "Test"):
            if not path.is_dir():
                raise UserError(
                    f"UCSD Ped2 not found: {path} is missing; expected {LAYOUT} under data.root={self.root}. "
                    f"Download the UCSD Anomaly Dataset (v1p2) from {URL}, unpack it and set data.root"
                )
        return self.root / SCENE

    def cache_identity(self) -> dict:
        return {"scene": str(self.scene.relative_to(self.root))}

    def load_split(self, train: bool) -> Split:
        size, channels = self.image_size, self.channels
        if train:
            paths = [p for clip in self.clips("Train") for p in self.frames(clip)]
            targets = torch.zeros(len(paths), dtype=torch.long)
            return Split(decode_all(paths, size, channels), targets, [str(p) for p in paths])
        clips = self.clips("Test")
        for gt in list_dirs(self.scene / "Test"):
            if (
                gt.name.endswith(GT)
                and gt.with_name(gt.name.removesuffix(GT)) not in clips
                and list_images(gt, MASK_SUFFIXES)
            ):
                raise UserError(f"masks without matching images: {gt} has no clip folder {gt.name.removesuffix(GT)}")
        paths, mask_paths = [], []
        for clip in clips:
            frames = self.frames(clip)
            paths += frames
            mask_paths += self.masks(clip, frames)
        masks = decode_all(mask_paths, size, 1, mask=True)
        targets = torch.tensor([any_pixel(p) for p in mask_paths], dtype=torch.long)
        return Split(decode_all(paths, size, channels), targets, [str(p) for p in paths], masks)

    def clips(self, split: str) -> list[Path]:
        """The clip folders of Train or Test (not the _gt folders)."""
        clips = [p for p in list_dirs(self.scene / split) if not p.name.endswith(GT)]
        if not clips:
            raise UserError(f"{self.scene / split} holds no clip folder; expected {LAYOUT} (UCSD Ped2, from {URL})")
        return clips

    def frames(self, clip: Path) -> list[Path]:
        frames = list_images(clip, FRAME_SUFFIXES)
        if not frames:
            raise UserError(f"{clip} holds no .tif frame; expected {LAYOUT} (UCSD Ped2, from {URL})")
        return frames

    def masks(self, clip: Path, frames: list[Path]) -> list[Path]:
        """The mask file of each frame, from the clip's _gt folder, in the frames' order."""
        gt = clip.with_name(clip.name + GT)
        if not gt.is_dir():
            raise UserError(
                f"the masks of {clip} are missing: {gt} does not exist; expected {LAYOUT} (UCSD Ped2 v1p2, from {URL})"
            )
        masks: dict[str, Path] = {}
        for path in list_images(gt, MASK_SUFFIXES):
            masks.setdefault(path.stem, path)  # one mask per frame name; .bmp first in sort order
        found = []
        for frame in frames:
            mask = masks.pop(frame.stem, None)
            if mask is None:
                raise UserError(f"the mask of {frame} is missing: expected {gt / frame.stem}.bmp (layout: {LAYOUT})")
            found.append(mask)
        if masks:
            orphan = min(masks.values())
            raise UserError(f"masks without matching images: {orphan} has no frame {clip / orphan.stem}.tif in {clip}")
        return found
