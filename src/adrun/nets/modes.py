"""Temporary module modes used by more than one method."""

from contextlib import contextmanager

from torch import nn


@contextmanager
def frozen(*modules: nn.Module):
    """Eval mode (BatchNorm with running statistics, so images never interact) and no parameter gradients; restored."""
    saved = [(m, m.training, [p.requires_grad for p in m.parameters()]) for m in modules]
    for m in modules:
        m.eval().requires_grad_(False)
    try:
        yield
    finally:
        for m, training, flags in saved:
            m.train(training)
            for p, flag in zip(m.parameters(), flags, strict=True):
                p.requires_grad_(flag)
