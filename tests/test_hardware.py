"""The hardware profile's switches reach the method (adrun.hardware): channels_last weights and batches, compiled
networks, and a compile that fails leaves the run going, uncompiled, with one line; bad values are one line."""

import pytest
import torch

from adrun.hardware import ChannelsLast, Compiled, networks
from adrun.plan import prepare
from adrun.runner import build
from tests.conftest import composed, one_line_error, run, tiny


def built(tmp_path, *overrides: str):
    return build(prepare(composed(*tiny("ganomaly", *overrides)), tmp_path / "run"))[0]


def test_channels_last_reaches_the_weights_and_the_batches(tmp_path):
    module = built(tmp_path, "hardware.channels_last=true")
    weights = [p for p in module.parameters() if p.dim() == 4]
    assert weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)
    assert not all(p.is_contiguous() for p in weights)
    batch = {"image": torch.rand(2, 3, 8, 8), "label": torch.zeros(2)}
    ChannelsLast().on_train_batch_start(None, module, batch, 0)
    assert batch["image"].is_contiguous(memory_format=torch.channels_last) and not batch["image"].is_contiguous()
    default = built(tmp_path, "hardware.channels_last=false")
    assert all(p.is_contiguous() for p in default.parameters())


def test_compile_wraps_every_network_and_calls_the_compiled_one(tmp_path, monkeypatch):
    calls = []

    def fake_compile(fn):
        def compiled(*args, **kwargs):
            calls.append(fn.__name__)
            return fn(*args, **kwargs)

        return compiled

    monkeypatch.setattr(torch, "compile", fake_compile)
    module = built(tmp_path, "hardware.compile=true")
    assert [name for name, _ in networks(module)] == ["generator", "discriminator"]
    assert all(isinstance(net.forward, Compiled) for _, net in networks(module))
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    module.eval()
    with torch.no_grad():
        module.score({"image": x})  # G
        module.discriminator(x)
    assert calls == ["forward", "forward"]
    assert "forward" not in vars(built(tmp_path, "hardware.compile=false").generator)


def test_a_critic_with_a_gradient_penalty_stays_uncompiled(tmp_path, monkeypatch):
    """torch.compile's AOTAutograd has no double backward: f-AnoGAN's WGAN-GP penalty would fail in backward."""
    monkeypatch.setattr(torch, "compile", lambda fn: fn)
    wgan = build(prepare(composed(*tiny("fanogan", "hardware.compile=true")), tmp_path / "w"))[0]
    assert not isinstance(wgan.discriminator.forward, Compiled) and isinstance(wgan.generator.forward, Compiled)
    dcgan = build(prepare(composed(*tiny("fanogan", "method.gan=dcgan", "hardware.compile=true")), tmp_path / "d"))[0]
    assert isinstance(dcgan.discriminator.forward, Compiled)


def test_a_failing_compile_runs_on_uncompiled_with_one_line(tmp_path, monkeypatch, trained):
    def broken_compile(fn):
        def compiled(*args, **kwargs):
            raise RuntimeError("no C++ compiler found\nsecond line")

        return compiled

    reference = trained("ganomaly")
    monkeypatch.setattr(torch, "compile", broken_compile)
    results = run(tmp_path / "run", "mode=test", f"ckpt={reference}", "hardware.compile=true")
    log = (tmp_path / "run" / "adrun.log").read_text().splitlines()
    assert [line.split("[adrun] ")[1] for line in log if "hardware.compile" in line] == [
        "hardware.compile=true: torch.compile failed (RuntimeError: no C++ compiler found second line); "
        "the run goes on uncompiled"
    ]
    assert results["status"] == "ok"
    assert (tmp_path / "run" / "scores.csv").read_text() == (reference / "scores.csv").read_text()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("hardware.channels_last=yes", "hardware.channels_last must be true or false, got 'yes'"),
        ("hardware.compile=1", "hardware.compile must be true or false, got 1"),
        ("hardware.trainer.precision=16", "hardware.trainer.precision must be one of 32-true, 16-mixed, bf16-mixed"),
        ("hardware.trainer.precision=16-mixed", "16-mixed needs a GPU; on the CPU use bf16-mixed"),
    ],
)
def test_bad_switches_are_one_line(tmp_path, override, message):
    assert message in one_line_error(lambda: built(tmp_path, override))
