"""Uninformed Students' dense descriptors: one dense pass over an image against the patch network run on every patch.

For each patch size, a randomly initialised patch network (the time does not depend on the weights), no gradients:
- dense: `PatchNet.dense` on one H×W image (best of REPEATS);
- patch-wise: the H·W patches centred on every pixel, cut from the padded image and pushed through the patch network in
  batches of BATCH. With `--sample N`, only N patches (a random sample) are timed and the time is scaled to all H·W —
  the table says so. Both results are compared at those positions (max |difference|).
Prints a markdown table.

    python scripts/bench_dense.py [--size 128] [--channels 3] [--patch-sizes 17 33 65] [--sample N] [--threads N]
"""

import argparse
import time

import torch

from adrun.nets.patch import PatchNet
from adrun.timing import best_seconds

REPEATS = 3
BATCH = 512


def patchwise(net: PatchNet, padded: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The patch network on the p×p windows at `positions` [N, 2] (top-left corners in the padded image): [N, 128]."""
    p = net.patch_size
    out = []
    for chunk in positions.split(BATCH):
        patches = torch.stack([padded[0, :, r : r + p, c : c + p] for r, c in chunk.tolist()])
        out.append(net(patches))
    return torch.cat(out)


def row(p: int, size: int, channels: int, sample: int | None) -> str:
    torch.manual_seed(0)
    net = PatchNet(p, channels).eval()
    image = torch.rand(1, channels, size, size) * 2 - 1
    with torch.no_grad():
        dense = net.dense(image)
        dense_s = best_seconds(lambda: net.dense(image), REPEATS)
        grid = torch.cartesian_prod(torch.arange(size), torch.arange(size))
        positions = grid if sample is None else grid[torch.randperm(len(grid))[:sample]]
        padded = net.pad(image)
        start = time.perf_counter()
        descriptors = patchwise(net, padded, positions)
        patch_s = (time.perf_counter() - start) * len(grid) / len(positions)
    error = (descriptors - dense[0, :, positions[:, 0], positions[:, 1]].T).abs().max().item()
    how = "all" if sample is None else f"{len(positions)} sampled, scaled"
    return (
        f"| {p} | {size}×{size}×{channels} | {dense_s:.3f} | {patch_s:.2f} ({how}) | {patch_s / dense_s:.0f}× "
        f"| {error:.1e} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--patch-sizes", type=int, nargs="+", default=[17, 33, 65])
    parser.add_argument("--sample", type=int, default=None, help="time this many patches and scale to all")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {BATCH} patches")
    print("| p | image | dense s | patch-wise s | speed-up | max abs diff |")
    print("|---|---|---|---|---|---|")
    for p in args.patch_sizes:
        print(row(p, args.size, args.channels, args.sample), flush=True)


if __name__ == "__main__":
    main()
