"""GPU throughput per method at its paper size: the bare training step on device-resident batches against the runner
(a real `adrun` run on the same data), training images/s and their ratio, and the runner's test images/s.

Rows: the GAN methods at 32 px (batch 64), Students p = 33 at 32 px (batch 64) and at 256 px (batch 1, as
experiment=students_mvtec). Data: synthetic textures (no files), or the `data=…` given as an override (with its own
size keys, e.g. `data=fashion_mnist data.root=… data.train_subset=2000`). The bare step
and the device-resident batches are scripts/bench_overhead.py's; the bare figure is the best epoch after a warm-up, the
runner's is its results.json `train_images_per_s` over all its epochs (first-epoch warm-up and, with compile, the
compilation included: what a user gets). Students' teachers train for a few steps only (their quality does not change
the time of a student step). `--switches`: GANomaly 32 px batch 64 under each hardware switch instead (channels_last,
precision, compile).

    python scripts/bench_gpu.py [--device cuda|cpu] [--quick] [--methods ganomaly,students,…] [--switches] [overrides…]
    python scripts/bench_gpu.py --device cpu --quick --methods ganomaly data.n_train=64 data.n_test=32   # a check
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from adrun.errors import UserError
from bench_overhead import bare_images_per_s, composed, runner_timings

GAN = ("data.image_size=32", "data.batch_size=64")
ROWS = {  # method: [(row, overrides at the paper's size)]
    "ganomaly": [("ganomaly 32 px", ("method=ganomaly", *GAN))],
    "anogan": [("anogan 32 px", ("method=anogan", *GAN))],
    "fanogan": [("fanogan 32 px", ("method=fanogan", *GAN))],
    "ada": [("ada 32 px", ("method=ada", *GAN))],
    "ognet": [("ognet 32 px", ("method=ognet", *GAN))],
    "students": [
        ("students p=33 32 px", ("method=students", "data.image_size=32", "data.batch_size=64")),
        ("students p=33 256 px", ("method=students", "data.image_size=256", "data.batch_size=1")),
    ],
}
EPOCHS = {  # (quick, full): each method's epoch keys
    "ganomaly": (("method.epochs=2",), ("method.epochs=5",)),
    "anogan": (("method.epochs=2",), ("method.epochs=5",)),
    "ada": (("method.epochs=2",), ("method.epochs=5",)),
    "fanogan": (("method.gan_epochs=1", "method.encoder_epochs=1"), ("method.gan_epochs=3", "method.encoder_epochs=2")),
    "ognet": (
        ("method.low_epoch=1", "method.high_epoch=2", "method.phase2_iterations=20"),
        ("method.low_epoch=2", "method.high_epoch=5", "method.phase2_iterations=75"),
    ),
    "students": (
        ("method.epochs=2", "method.teacher_iterations=50"),
        ("method.epochs=5", "method.teacher_iterations=200"),
    ),
}
SIZES = {  # (quick, full) synthetic training normals and test images, by image size
    32: (("data.n_train=2048", "data.n_test=256"), ("data.n_train=6000", "data.n_test=1024")),
    256: (("data.n_train=48", "data.n_test=16"), ("data.n_train=192", "data.n_test=64")),
}
SWITCHES = (  # --switches: GANomaly 32 px batch 64 under each
    ("profile as it is", ()),
    ("channels_last=true", ("hardware.channels_last=true",)),
    ("precision=32-true", ("hardware.trainer.precision=32-true",)),
    ("precision=16-mixed", ("hardware.trainer.precision=16-mixed",)),
    ("precision=bf16-mixed", ("hardware.trainer.precision=bf16-mixed",)),
    ("compile=true", ("hardware.compile=true",)),
    (
        "compile + channels_last + bf16",
        ("hardware.compile=true", "hardware.channels_last=true", "hardware.trainer.precision=bf16-mixed"),
    ),
)


def measure(overrides: list[str], device: str, repeats: int) -> tuple[float, float, float]:
    """(bare images/s, runner training images/s, runner test images/s) of one setting."""
    cfg = composed(overrides)
    timings = runner_timings(cfg, overrides)  # first: it refuses a setting the runner would (a UserError)
    bare = bare_images_per_s(cfg, device, repeats)
    return bare, timings["train_images_per_s"], timings["test_images_per_s"]


def setting(method: str, row: tuple[str, ...], quick: bool, device: str, extra: list[str]) -> list[str]:
    size = int(next(o for o in row if o.startswith("data.image_size=")).split("=")[1])
    hardware = "hardware=gpu" if device != "cpu" else "hardware=cpu"
    data = [] if any(o.startswith("data=") for o in extra) else ["data=synthetic", *SIZES[size][0 if quick else 1]]
    return [hardware, "hardware.num_workers=0", *data, *row, *EPOCHS[method][0 if quick else 1], *extra]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (hardware=gpu) or cpu (hardware=cpu)")
    parser.add_argument("--quick", action="store_true", help="smaller sets and fewer epochs: about two minutes")
    parser.add_argument("--methods", default=",".join(ROWS), help=f"comma-separated, of {','.join(ROWS)}")
    parser.add_argument("--switches", action="store_true", help="GANomaly 32 px under each hardware switch")
    args, extra = parser.parse_known_args()
    repeats = 2 if args.quick else 3
    if args.switches:
        rows = [(name, "ganomaly", ROWS["ganomaly"][0][1] + switch) for name, switch in SWITCHES]
    else:
        rows = [(name, method, row) for method in args.methods.split(",") for name, row in ROWS[method]]
    print(
        f"\n| setting ({args.device}{', quick' if args.quick else ''}) | bare step images/s | runner images/s "
        "| runner / bare | runner test images/s |\n|---|---|---|---|---|",
        flush=True,
    )
    for name, method, row in rows:
        try:
            bare, train, test = measure(setting(method, row, args.quick, args.device, extra), args.device, repeats)
        except UserError as error:
            print(f"| {name} | refused: {error} | | | |", flush=True)
            continue
        print(f"| {name} | {bare:.4g} | {train:.4g} | {train / bare:.2f} | {test:.4g} |", flush=True)


if __name__ == "__main__":
    main()
