"""Uninformed Students' patch networks: the published shapes, their measured receptive fields, and the dense pass
equal to the patch network at every position."""

import pytest
import torch

from adrun.errors import UserError
from adrun.nets.patch import DESCRIPTOR, PatchNet

# p → the side of the window one descriptor depends on: p = 33 and 65 floor odd maps in their pools (29 → 14; 61 → 30,
# 9 → 4), so the published networks see 32 and 60 of their p pixels (see adrun/nets/patch.py).
FIELDS = {17: 17, 33: 32, 65: 60}


@pytest.mark.parametrize("p", FIELDS)
def test_a_p_by_p_patch_gives_one_descriptor(p):
    net = PatchNet(p, 3)
    assert net(torch.rand(4, 3, p, p)).shape == (4, DESCRIPTOR)
    assert net.layers(torch.rand(1, 3, p, p)).shape[-2:] == (1, 1)  # exactly one position, no pooling left over


@pytest.mark.parametrize(("p", "field"), FIELDS.items())
def test_receptive_field_measured_from_gradients(p, field):
    """The pixels of a p×p patch that the descriptor depends on: the union of gradient supports over random inputs (a
    max-pool passes gradient to one pixel of four) of a random mix of all 128 outputs is exactly the top-left
    field×field."""
    torch.manual_seed(0)
    net = PatchNet(p, 1).double()
    support = torch.zeros(p, p, dtype=torch.bool)
    for _ in range(8):
        x = torch.randn(1, 1, p, p, dtype=torch.double, requires_grad=True)
        (grad,) = torch.autograd.grad((net(x) * torch.randn(1, DESCRIPTOR, dtype=torch.double)).sum(), x)
        support |= grad[0, 0] != 0
    assert support[:field, :field].all() and not support[field:].any() and not support[:, field:].any()
    assert net.receptive_field == field


@pytest.mark.parametrize("p", FIELDS)
def test_dense_descriptors_equal_the_patch_network_at_every_sampled_position(p):
    torch.manual_seed(1)
    net = PatchNet(p, 3)
    images = torch.rand(2, 3, 40, 36) * 2 - 1  # not square, smaller than 65 + 40
    dense = net.dense(images)
    assert dense.shape == (2, DESCRIPTOR, 40, 36)
    padded = net.pad(images)
    positions = [(0, 0), (39, 35), (0, 35), (39, 0), (17, 9), (22, 30), (5, 31)]
    for r, c in positions:  # the patch centred on (r, c) is the padded window at (r, c)
        patchwise = net(padded[:, :, r : r + p, c : c + p])
        assert (patchwise - dense[:, :, r, c]).abs().max() <= 1e-4


def test_unknown_patch_size_and_too_small_images_are_one_line_errors():
    with pytest.raises(UserError, match="patch size must be one of 17, 33, 65"):
        PatchNet(31, 1)
    with pytest.raises(UserError, match="too small to reflect-pad"):
        PatchNet(65, 1).dense(torch.zeros(1, 1, 32, 32))
    assert PatchNet(65, 1, pad_mode="replicate").dense(torch.zeros(1, 1, 32, 32)).shape == (1, DESCRIPTOR, 32, 32)
