"""Decode once: the split cache serves the second run in one read and rebuilds when the files change."""

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
