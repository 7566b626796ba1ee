"""Decode once: a dataset split at a given size and channel count is kept as one file of uint8 tensors.

The key names the dataset, its root, the split, the size and channels, and a fingerprint of the files (their count,
total bytes and newest modification time), so replacing or adding a file rebuilds the cache instead of serving stale
tensors. Written to a temporary file of its own and renamed: an interrupted first run leaves no half cache behind,
and jobs that build the same cache at once do not trip over each other.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch

from adrun.atomic import write_via


def fingerprint(root: Path) -> str:
    """Count, total size and newest mtime of every file under root: cheap, and changes when the data change."""
    count = total = newest = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            stat = os.stat(os.path.join(dirpath, name))
            count, total, newest = count + 1, total + stat.st_size, max(newest, stat.st_mtime_ns)
    return f"{count}-{total}-{newest}"


def cached(cache_dir: Path, key: dict, build: Callable[[], dict]) -> dict:
    """The tensors for `key` (a dict of tensors and lists) from cache_dir, building and storing them on first use."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = cache_dir / f"{key.get('dataset', 'data')}-{digest}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    built = build()
    cache_dir.mkdir(parents=True, exist_ok=True)
    write_via(path, lambda tmp: torch.save(built, tmp))  # the jobs of a local sweep may build it at once
    return built
