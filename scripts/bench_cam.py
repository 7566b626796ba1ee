"""ADA's attention: time per image of c = CAM_D(x) + CAM_D(x̂) (both CAMs upsampled and normalised) and of the whole
ADA score (reconstruction, D on x and x̂, CAMs, weighted error), batched against one image at a time.

ADA's networks at the paper-default widths, untrained (the time does not depend on the weights), eval mode, no
gradients (a CAM of a GAP + linear head needs none). Kimura et al. quote about 10 ms per image for the attention map
on an Nvidia Titan X. Each timing is the best of REPEATS runs. Prints a markdown table.

    python scripts/bench_cam.py [--images 256] [--sizes 32 64] [--threads N]
"""

import argparse

import torch

from adrun.methods.ada import ADA
from adrun.timing import best_seconds

REPEATS = 3


def rows(size: int, images: int) -> list[str]:
    model = ADA(image_size=size, channels=1).eval()
    x = torch.rand(images, 1, size, size) * 2 - 1
    n = min(images, 64)  # one at a time on the first n
    out = []
    with torch.no_grad():
        x_hat = model(x)
        jobs = {
            "attention c": lambda xs, xh: model.attention(xs, xh),
            "whole score": lambda xs, xh: model.score({"image": xs}),
        }
        for what, job in jobs.items():
            batched = best_seconds(lambda job=job: job(x, x_hat), REPEATS) / images
            single = best_seconds(lambda job=job: [job(x[i : i + 1], x_hat[i : i + 1]) for i in range(n)], REPEATS) / n
            out.append(f"| {size} | {what} | {1e3 * batched:.3f} | {1e3 * single:.3f} | {single / batched:.1f}× |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.images} images, {args.threads} threads, best of {REPEATS}\n")
    print("| size | what | batched ms/image | one at a time ms/image | speed-up |")
    print("|---|---|---|---|---|")
    for size in args.sizes:
        print("\n".join(rows(size, args.images)))


if __name__ == "__main__":
    main()
