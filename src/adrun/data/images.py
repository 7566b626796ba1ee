"""The one place pixels are converted: files decoded faithfully to uint8, channels converted, images resized.

Every dataset (file-based or tensor), `mode=predict` and Students' teacher folder go through these functions, so an
image scores the same whichever way it came in (a PNG exported from MNIST's IDX files scores as the IDX image does):

1. `decode`: any mode PIL opens → uint8 grey or RGB at the file's own size: 16-bit and 32-bit integer grey (`I;16*`,
   `I`) scaled from 0–65535 to 0–255 (PIL's `convert("L")` would saturate them to 0/255), float grey (`F`) clipped
   to 0–255 as PIL does, bilevel (`1`) to 0/255, alpha dropped, palettes and other colour spaces to RGB;
2. `to_channels`: grey ↔ RGB (luma with ITU-R 601 weights; grey replicated);
3. `resize`: to size × size, antialiased bilinear for images (torch, as PIL's bilinear reduction), centre-sampled
   nearest neighbour for masks.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from adrun.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
DECODE_THREADS = 8
PIXELS_VERSION = 2  # part of the decoded-data cache key: bump when a conversion here changes its output
RESIZE_CHUNK = 2048  # images resized per interpolate call: bounds the float32 copy's memory
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601 weights, as PIL's "L" conversion
WIDE_GREY = ("I", "I;16", "I;16L", "I;16B", "I;16N")  # integer grey modes beyond 8 bits, read as 0–65535
# PIL warns of damaged metadata (two lines on stderr, no file name); a file it cannot decode is named by `decode`
warnings.filterwarnings("ignore", ".*corrupt EXIF", UserWarning, "PIL")


def visible(path: Path) -> bool:
    """Not a hidden file (`._x.png`, the resource forks of data copied from macOS, fail to decode)."""
    return not path.name.startswith(".")


def list_images(folder: Path, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> list[Path]:
    """The visible image files directly in `folder`, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and visible(p) and p.suffix.lower() in suffixes)


GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}  # PIL modes without colour


def all_grey(paths: Sequence[Path]) -> bool:
    """Whether every file stores grey pixels (read from its header only; an unreadable one counts as colour)."""
    for path in paths:
        try:
            with Image.open(path) as image:
                if image.mode not in GREY_MODES:
                    return False
        except (OSError, UnidentifiedImageError, SyntaxError, Image.DecompressionBombError):
            return False
    return bool(paths)


def list_dirs(folder: Path) -> list[Path]:
    """The visible sub-folders of `folder`, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and visible(p))


def faithful_uint8(image: Image.Image) -> np.ndarray:
    """A PIL image of any mode as uint8 [h, w] (grey) or [h, w, 3] (colour), its intensities kept."""
    if image.mode in ("L", "RGB"):
        return np.asarray(image, dtype=np.uint8)
    if image.mode in WIDE_GREY:
        wide = np.asarray(image).astype(np.int64).clip(0, 65535)
        return ((wide * 255 + 32767) // 65535).astype(np.uint8)
    if image.mode == "F":
        return np.asarray(image, dtype=np.float32).clip(0, 255).round().astype(np.uint8)
    if image.mode in ("1", "LA", "La"):
        return np.asarray(image.convert("L"), dtype=np.uint8)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def read(path: Path) -> torch.Tensor:
    """One file → uint8 [1 or 3, h, w] at its own size, or a one-line error naming it."""
    try:
        with Image.open(path) as image:
            array = faithful_uint8(image)
    except (OSError, UnidentifiedImageError, SyntaxError, Image.DecompressionBombError) as error:
        raise UserError(f"cannot read image {path}: {error}; replace or remove the file") from error
    tensor = torch.from_numpy(array.copy())
    return tensor.unsqueeze(0) if tensor.dim() == 2 else tensor.permute(2, 0, 1)


def to_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 images [N, C, h, w] converted to 1 (luma) or 3 (replicated grey) channels."""
    have = images.shape[1]
    if have == channels:
        return images
    if have == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if have in (3, 4) and channels == 1:
        luma = torch.tensor(LUMA).view(1, 3, 1, 1)
        return (images[:, :3].float() * luma).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    if have == 4 and channels == 3:
        return images[:, :3].contiguous()
    raise UserError(f"cannot convert {have}-channel images to {channels} channels; set data.channels to 1 or 3")


def resize(images: torch.Tensor, size: int, nearest: bool = False) -> torch.Tensor:
    """uint8 [N, C, h, w] → uint8 [N, C, size, size]: antialiased bilinear for images, nearest for masks."""
    if images.shape[-2:] == (size, size):
        return images
    out = []
    for chunk in images.split(RESIZE_CHUNK):
        if nearest:
            out.append(F.interpolate(chunk, size=(size, size), mode="nearest-exact"))
        else:
            scaled = F.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True)
            out.append(scaled.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


def convert(images: torch.Tensor, size: int, channels: int) -> torch.Tensor:
    """uint8 images of any channel count and size → the model's: `channels` channels, size × size."""
    return resize(to_channels(images, channels), size)


def decode(path: Path, size: int, channels: int, mask: bool = False) -> torch.Tensor:
    """One file → uint8 [C, size, size] as the model takes it, or a mask → uint8 [1, size, size] of 0/1."""
    pixels = read(path)[None]
    if mask:
        return (resize(to_channels(pixels, 1), size, nearest=True)[0] > 127).to(torch.uint8)
    return convert(pixels, size, channels)[0]


def decode_all(paths: Sequence[Path], size: int, channels: int, mask: bool = False) -> torch.Tensor:
    """Many files → uint8 [N, C, size, size] (an empty tensor of that shape for no files).

    Decoded by a thread pool: PIL and torch release the GIL while they decode and resize, so the cores work in
    parallel.
    """
    if not paths:
        return torch.zeros(0, 1 if mask else channels, size, size, dtype=torch.uint8)
    with ThreadPoolExecutor(max_workers=min(DECODE_THREADS, os.cpu_count() or 1)) as pool:
        return torch.stack(list(pool.map(lambda p: decode(p, size, channels, mask), paths)))
