"""The score contract between a method and the evaluation: what `score(batch)` returns.

`image` [B]: higher = more anomalous. `map` [B, 1, H, W] at the input's size: where the method sees the anomaly (its
natural map: residual, attention-weighted residual, student error + variance; never a constant). `variants`: other
image scores the method reports beside its own ({name: [B]}, e.g. OGNet's phase-1 D, ADA's ablations), each evaluated
by its own AUROC. `reconstruction` [B, C, H, W]: the method's rendering of the input where it has one (for pictures).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Scores:
    image: torch.Tensor
    map: torch.Tensor
    variants: dict[str, torch.Tensor] = field(default_factory=dict)
    reconstruction: torch.Tensor | None = None

    def detached(self) -> Scores:
        """float32 on the CPU, out of the graph (what leaves a test or predict step)."""

        def out(tensor):
            return None if tensor is None else tensor.detach().float().cpu()

        variants = {name: out(values) for name, values in self.variants.items()}
        return Scores(out(self.image), out(self.map), variants, out(self.reconstruction))
