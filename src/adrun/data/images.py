"""Image files → uint8 tensors at the model's size, decoded once (PIL), with errors that name the file."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from adrun.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
DECODE_THREADS = 8
# PIL warns of damaged metadata (two lines on stderr, no file name); a file it cannot decode is named by `decode`
warnings.filterwarnings("ignore", ".*corrupt EXIF", UserWarning, "PIL")


def visible(path: Path) -> bool:
    """Not a hidden file (`._x.png`, the resource forks of data copied from macOS, fail to decode)."""
    return not path.name.startswith(".")


def list_images(folder: Path, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> list[Path]:
    """The visible image files directly in `folder`, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and visible(p) and p.suffix.lower() in suffixes)


def list_dirs(folder: Path) -> list[Path]:
    """The visible sub-folders of `folder`, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and visible(p))


def decode(path: Path, size: int, channels: int, mask: bool = False) -> torch.Tensor:
    """One file → uint8 [C, size, size]: converted to grey ("L") or RGB, resized with antialiasing (images) or nearest
    neighbour (masks, returned as 0/1 with one channel)."""
    try:
        with Image.open(path) as image:
            image = image.convert("L" if mask or channels == 1 else "RGB")
            resample = Image.Resampling.NEAREST if mask else Image.Resampling.BILINEAR
            image = image.resize((size, size), resample, reducing_gap=None) if image.size != (size, size) else image
            array = np.asarray(image, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, SyntaxError, Image.DecompressionBombError) as error:
        raise UserError(f"cannot read image {path}: {error}; replace or remove the file") from error
    tensor = torch.from_numpy(array.copy())
    tensor = tensor.unsqueeze(0) if tensor.dim() == 2 else tensor.permute(2, 0, 1)
    return (tensor > 127).to(torch.uint8) if mask else tensor


def decode_all(paths: Sequence[Path], size: int, channels: int, mask: bool = False) -> torch.Tensor:
    """Many files → uint8 [N, C, size, size] (an empty tensor of that shape for no files).

    Decoded by a thread pool: PIL releases the GIL while it decodes and resizes, so the cores work in parallel.
    """
    if not paths:
        return torch.zeros(0, 1 if mask else channels, size, size, dtype=torch.uint8)
    with ThreadPoolExecutor(max_workers=min(DECODE_THREADS, os.cpu_count() or 1)) as pool:
        return torch.stack(list(pool.map(lambda p: decode(p, size, channels, mask), paths)))
