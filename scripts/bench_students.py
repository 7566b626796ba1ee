"""Uninformed Students' throughput on this machine: teacher training, student training and scoring, per patch size.

Randomly initialised networks at the paper's sizes (the time does not depend on the weights):
- teacher: patches/s of one T̂ step (patch-wise, `--teacher-batch` patches): metric learning + compactness (the
  fallback without ResNet-18 weights: anchor, positive and negative through T̂) and, with `--kd`, distillation through a
  randomly initialised ResNet-18 at 224 px (λ_k = λ_c = 1, the paper's setting) — the cost of P, not its quality;
- students: images/s of one training step of M students (dense forward + backward, the teacher's dense forward);
- scoring: images/s of the score (teacher + M students dense, e and v, no gradients).
Each figure is the best of REPEATS timed steps after one warm-up. Prints a markdown table.

    python scripts/bench_students.py [--sizes 32 256] [--patch-sizes 17 33 65] [--students 3] [--channels 3] [--kd]
"""

import argparse

import torch

from adrun.methods.students import Students
from adrun.methods.teacher import TeacherSettings, load_resnet18, train_teacher
from adrun.nets.patch import PatchNet
from adrun.timing import best_seconds

REPEATS = 3


def teacher_rate(p: int, channels: int, batch: int, kd: bool) -> float:
    net = PatchNet(p, channels)
    images = torch.randint(0, 256, (8, channels, 64, 64), dtype=torch.uint8)
    settings = TeacherSettings(patch_size=p, iterations=1, batch_size=batch, lambda_m=0.0 if kd else 1.0)
    resnet = None
    if kd:
        from torchvision.models import resnet18

        resnet = resnet18()
        resnet.fc = torch.nn.Identity()
        resnet.eval().requires_grad_(False)
    return batch / best_seconds(lambda: train_teacher(net, images, settings, resnet), REPEATS, warmup=True)


def student_rates(p: int, size: int, channels: int, students: int, batch: int) -> tuple[float, float]:
    module = Students(size, channels, patch_sizes=[p], students=students, pad_mode=pad_mode(p, size))
    optimizer = module.configure_optimizers()
    images = torch.rand(batch, channels, size, size) * 2 - 1
    batch_dict = {"image": images, "label": torch.zeros(batch, dtype=torch.long)}

    def step():
        loss = module.training_step(batch_dict, 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    module.log = lambda *args, **kwargs: None  # no Trainer here
    train = batch / best_seconds(step, REPEATS, warmup=True)
    module.eval()
    with torch.no_grad():
        score = batch / best_seconds(lambda: module.score(batch_dict), REPEATS, warmup=True)
    return train, score


def pad_mode(p: int, size: int) -> str:
    """reflect, unless the image is too small to reflect-pad by (p − 1)/2 (p = 65 at 32 px)."""
    return "reflect" if (p - 1) // 2 < size else "replicate"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 256])
    parser.add_argument("--patch-sizes", type=int, nargs="+", default=[17, 33, 65])
    parser.add_argument("--students", type=int, default=3)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--teacher-batch", type=int, default=64)
    parser.add_argument("--kd", action="store_true", help="also time distillation through ResNet-18 at 224 px")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.channels} channels, M={args.students}")
    print(f"ResNet-18 ImageNet weights here: {load_resnet18('cache')[0] is not None}")
    print("| p | teacher patches/s (metric) | teacher patches/s (KD) | image px | student train img/s | score img/s |")
    print("|---|---|---|---|---|---|")
    for p in args.patch_sizes:
        metric = teacher_rate(p, args.channels, args.teacher_batch, kd=False)
        kd = f"{teacher_rate(p, args.channels, args.teacher_batch, kd=True):.0f}" if args.kd else "–"
        for size in args.sizes:
            batch = 8 if size <= 64 else 1
            train, score = student_rates(p, size, args.channels, args.students, batch)
            image = f"{size} (batch {batch}{', replicate-padded' if pad_mode(p, size) != 'reflect' else ''})"
            print(f"| {p} | {metric:.0f} | {kd} | {image} | {train:.2f} | {score:.2f} |", flush=True)


if __name__ == "__main__":
    main()
