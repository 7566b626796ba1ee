"""Decode once: the split cache serves the second run in one read and rebuilds when the files change."""

from pathlib import Path

import torch

from adrun.data.cache import cached, fingerprint


def test_built_once_then_read_back(tmp_path):
    builds = []

    def build():
        builds.append(1)
        return {
            "images": torch.arange(12, dtype=torch.uint8).view(3, 1, 2, 2),
            "targets": torch.tensor([0, 1, 0]),
            "ids": ["a", "b", "c"],
            "masks": None,
        }

    key = {"dataset": "X", "size": 2}
    first = cached(tmp_path, key, build)
    second = cached(tmp_path, key, build)
    assert len(builds) == 1
    assert torch.equal(first["images"], second["images"]) and second["ids"] == ["a", "b", "c"]
    assert second["masks"] is None
    cached(tmp_path, key | {"size": 4}, build)
    assert len(builds) == 2, "another size is another cache entry"
    assert not list(tmp_path.glob(".*.tmp")) and len(list(tmp_path.glob("X-*.pt"))) == 2


def test_fingerprint_follows_the_files(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "1.png").write_bytes(b"x")
    before = fingerprint(tmp_path)
    (tmp_path / "a" / "2.png").write_bytes(b"yy")
    assert fingerprint(tmp_path) != before


def test_two_jobs_building_the_same_cache_at_once_both_finish(tmp_path, monkeypatch):
    """A local sweep's first two jobs decode the same split at once: another writer renames its file into place while
    this one is between saving and renaming (a shared temporary name made this one's rename fail)."""
    import os

    import torch

    from adrun import atomic
    from adrun.data import cache

    key, real_replace, interrupted = {"dataset": "x", "size": 8}, os.replace, []

    def replace(source, target):
        if not interrupted:
            interrupted.append(source)
            cache.cached(tmp_path, key, lambda: {"x": torch.zeros(2)})  # the other job, finishing first
        real_replace(source, target)

    monkeypatch.setattr(atomic.os, "replace", replace)
    built = cache.cached(tmp_path, key, lambda: {"x": torch.ones(2)})
    assert torch.equal(built["x"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == [], "no temporary file left"
    assert len(list(tmp_path.glob("x-*.pt"))) == 1


def test_every_file_written_into_place_goes_through_the_one_atomic_writer():
    """MNIST's unpacking kept a shared temporary name after the cache's was fixed, and two jobs of a Fashion-MNIST
    sweep on a fresh machine raced on it (one died on FileNotFoundError): one writer, so the fix is made once."""
    import adrun

    package = Path(adrun.__file__).parent
    renames = ("os.replace(", "tmp.replace(", ".rename(")
    sources = {p.name: p.read_text() for p in package.rglob("*.py") if p.name != "atomic.py"}
    assert [name for name, text in sources.items() if any(r in text for r in renames)] == []
