"""Latent search: AnoGAN's batched search against one image at a time, and f-AnoGAN's one-pass score.

One tiny DCGAN (32 px, base width --width, nz --nz) is trained briefly on scikit-learn's digits (normal class 0),
then f-AnoGAN's encoder E with G and D frozen; AnoGAN gets the very same G and D. The first --images test images are
then scored four ways: AnoGAN's search (Γ = --iterations) on the whole batch at once and one image at a time (each
image with its own index, hence the same z_0), and f-AnoGAN batched and one at a time. One at a time is timed with
torch's threads and with one thread (on a shared CPU, threads slow per-image calls down); the speed-up is against the
faster. Each timing is the best of REPEATS alternating runs (noise only ever slows a run down). Prints a markdown
table; the score difference is the batch's largest against either one-at-a-time run.

    python scripts/bench_latent_search.py [--images 64] [--iterations 100] [--width 8] [--nz 32] [--threads N]
"""

import argparse
import time

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from adrun.cli import config_dir
from adrun.methods.anogan import AnoGAN
from adrun.methods.fanogan import FAnoGAN

REPEATS = 2


def train(datamodule, args) -> FAnoGAN:
    """GAN steps, then encoder steps, on batches of the training normals."""
    model = FAnoGAN(
        image_size=32, channels=1, nz=args.nz, ngf=args.width, ndf=args.width, nef=args.width, gan="dcgan"
    ).train()  # its discriminator is loaded into AnoGAN's (a DCGAN one)
    opt_g, opt_d, opt_e = model.configure_optimizers()
    train_set = datamodule.train_set

    def batches(steps: int):
        for step in range(steps):
            if step % (len(train_set) // args.batch) == 0:
                order = torch.randperm(len(train_set)).split(args.batch)
            yield train_set.__getitems__(order[step % len(order)].tolist())["image"]

    for x in batches(args.gan_steps):
        model.update(x, opt_g, opt_d, lambda loss: loss.backward())
    for x in batches(args.encoder_steps):
        model.update_encoder(x, opt_e, lambda loss: loss.backward())
    return model.eval()


def timed(score, batch: dict, one_by_one: bool) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    if one_by_one:
        scores = torch.cat(
            [score({k: v[i : i + 1] for k, v in batch.items()}).image for i in range(len(batch["image"]))]
        )
    else:
        scores = score(batch).image
    return time.perf_counter() - start, scores.detach()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=100, help="Γ")
    parser.add_argument("--width", type=int, default=8, help="base channels of G, D and E")
    parser.add_argument("--nz", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--gan-steps", type=int, default=300)
    parser.add_argument("--encoder-steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    pl.seed_everything(0, verbose=False)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["data=digits", "data.image_size=32", "data.normal_class=0"])
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    start = time.perf_counter()
    fanogan = train(datamodule, args)
    train_s = time.perf_counter() - start
    anogan = AnoGAN(image_size=32, channels=1, nz=args.nz, ngf=args.width, ndf=args.width, iterations=args.iterations)
    anogan.generator.load_state_dict(fanogan.generator.state_dict())
    anogan.discriminator.load_state_dict(fanogan.discriminator.state_dict())
    anogan.eval()
    batch = datamodule.test_set.__getitems__(list(range(args.images)))
    batch = {"image": batch["image"], "index": batch["index"]}

    # one image at a time is overhead-bound: on a shared machine torch's threads can slow it down, so it is also
    # timed on one thread, and the speed-up is taken against the faster of the two (the conservative ratio)
    threads = sorted({torch.get_num_threads(), 1}, reverse=True)
    best: dict[tuple[str, int], tuple[float, torch.Tensor]] = {}  # (method, threads or 0 for batched)
    for _ in range(REPEATS):
        for name, model in (("AnoGAN", anogan), ("f-AnoGAN", fanogan)):
            for mode in (*threads, 0):
                torch.set_num_threads(mode or threads[0])
                with torch.no_grad() if name == "f-AnoGAN" else torch.enable_grad():
                    seconds, scores = timed(model.score, batch, one_by_one=mode > 0)
                key = (name, mode)
                best[key] = (min(seconds, best[key][0]), scores) if key in best else (seconds, scores)
    torch.set_num_threads(threads[0])

    n, gamma = args.images, args.iterations
    print(
        f"\n{n} digits test images, 32 px, DCGAN width {args.width}, nz {args.nz}; GAN {args.gan_steps} + "
        f"E {args.encoder_steps} steps trained in {train_s:.1f} s; best of {REPEATS}; speed-up against the faster "
        "one-at-a-time row\n"
    )
    print("| method | images scored | torch threads | Γ | wall s | images/s | speed-up | max abs score diff (rel.) |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for name in ("AnoGAN", "f-AnoGAN"):
        steps = gamma if name == "AnoGAN" else "—"
        baseline = min(best[(name, t)][0] for t in threads)
        for t in threads:
            alone_s = best[(name, t)][0]
            print(f"| {name} | one at a time | {t} | {steps} | {alone_s:.2f} | {n / alone_s:.1f} | — | — |")
        batch_s, batched = best[(name, 0)]
        diff = max((batched - best[(name, t)][1]).abs().max().item() for t in threads)
        rel = diff / batched.abs().max().item()
        print(
            f"| {name} | all {n} at once | {threads[0]} | {steps} | {batch_s:.3f} | {n / batch_s:.1f} | "
            f"{baseline / batch_s:.1f}× | {diff:.1e} ({rel:.0e}) |"
        )
    anogan_s, fanogan_s = best[("AnoGAN", 0)][0], best[("f-AnoGAN", 0)][0]
    print(f"\nf-AnoGAN batched is {anogan_s / fanogan_s:.0f}× faster than AnoGAN batched (Γ = {gamma}).")


if __name__ == "__main__":
    main()
