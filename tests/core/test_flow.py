"""Flow matching: noising, τ sampling, losses, coordinate spaces, augmentation."""

from __future__ import annotations

import torch

from biomd_core.config import FlowConfig
from biomd_core.flow import auxiliary
from biomd_core.flow.augment import random_rotations, rotate_about_anchor
from biomd_core.flow.matching import clean_estimate, interpolate, sample_tau, velocity_loss
from biomd_core.flow.space import AbsoluteSpace, RelativeSpace


def test_tau_is_one_on_known_entries_and_in_unit_interval_elsewhere():
    known = torch.zeros(64, 5, 7, dtype=torch.bool)
    known[:, 0] = True
    known[:, :, 3] = True
    tau = sample_tau(known, FlowConfig(per_atom_tau_prob=0.3, sync_tau_prob=0.3), torch.Generator().manual_seed(0))
    assert torch.all(tau[known] == 1.0)
    assert tau[~known].min() > 0.0 and tau[~known].max() < 1.0
    # All three ways of drawing τ occur: shared, per frame, per atom.
    unknown_tau = tau[:, 1:, [0, 1, 2, 4, 5, 6]]
    n_distinct = torch.tensor([len(torch.unique(t)) for t in unknown_tau])
    assert (n_distinct == 1).any() and (n_distinct == 4).any() and (n_distinct > 4).any()


def test_interpolant_end_points_and_target_velocity():
    g = torch.Generator().manual_seed(1)
    y, eps = torch.randn(2, 3, 4, 3, generator=g), torch.randn(2, 3, 4, 3, generator=g)
    assert torch.equal(interpolate(y, eps, torch.ones(2, 3, 4)), y)
    assert torch.equal(interpolate(y, eps, torch.zeros(2, 3, 4)), eps)
    tau = torch.full((2, 3, 4), 0.3)
    y_tau = interpolate(y, eps, tau)
    # The clean estimate from the exact target velocity recovers the data.
    assert torch.allclose(clean_estimate(y_tau, y - eps, tau), y, atol=1e-6)


def test_velocity_loss_counts_only_unknown_real_entries():
    g = torch.Generator().manual_seed(2)
    y, eps = torch.randn(1, 2, 3, 3, generator=g), torch.randn(1, 2, 3, 3, generator=g)
    known = torch.tensor([[[True, True, True], [False, False, True]]])
    atom_mask = torch.tensor([[True, False, True]])
    pred = (y - eps).clone()
    assert velocity_loss(pred, y, eps, known, atom_mask) == 0
    pred[0, 0] += 5.0  # known frame: ignored
    pred[0, 1, 1] += 5.0  # padding atom: ignored
    assert velocity_loss(pred, y, eps, known, atom_mask) == 0
    pred[0, 1, 0] += 1.0  # the only unknown real entry
    assert torch.isclose(velocity_loss(pred, y, eps, known, atom_mask), torch.tensor(1.0))


def test_spaces_invert_and_relative_anchor_is_zero():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 5, 3, generator=g, dtype=torch.float64)
    anchor = x[:, 1]
    for space in (AbsoluteSpace(0.3), RelativeSpace(0.3)):
        assert torch.allclose(space.decode(space.encode(x, anchor), anchor), x, atol=1e-12)
    assert torch.allclose(RelativeSpace(0.3).encode(x, anchor)[:, 1], torch.zeros(2, 5, 3, dtype=torch.float64))
    centred = AbsoluteSpace(1.0).encode(x, anchor)[:, 1]
    assert torch.allclose(centred.mean(-2), torch.zeros(2, 3, dtype=torch.float64), atol=1e-12)


def test_random_rotations_are_proper_and_preserve_distances():
    rot = random_rotations(16, torch.Generator().manual_seed(4), torch.float64)
    assert torch.allclose(rot @ rot.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(16, 3, 3), atol=1e-12)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(16, dtype=torch.float64))
    frames = torch.randn(16, 3, 6, 3, dtype=torch.float64)
    moved, anchor = rotate_about_anchor(frames, frames[:, 0], rot)
    assert torch.allclose(torch.cdist(moved[:, 2], moved[:, 2]), torch.cdist(frames[:, 2], frames[:, 2]))
    assert torch.allclose(anchor.mean(1), torch.zeros(16, 3, dtype=torch.float64), atol=1e-12)


def test_auxiliary_losses_vanish_on_truth_and_grow_with_error():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1, 2, 4, 3, generator=g)
    bonds = torch.tensor([[[0, 1], [1, 2], [-1, -1]]])
    tau = torch.full((1, 2, 4), 0.8)
    known = torch.zeros(1, 2, 4, dtype=torch.bool)
    mask = torch.ones(1, 4, dtype=torch.bool)
    assert auxiliary.bond_length_loss(x, x, bonds, tau, known, mask) == 0
    stretched = x.clone()
    stretched[..., 0, :] += 0.5
    assert auxiliary.bond_length_loss(stretched, x, bonds, tau, known, mask) > 0
    lig = torch.tensor([[False, False, True, True]])
    assert auxiliary.centroid_loss(x, x, lig, tau, known) == 0
    assert auxiliary.centroid_loss(x + 1.0, x, lig, tau, known) > 0
    pairs = torch.tensor([[[1], [0], [3], [2]]])
    close = torch.zeros(1, 2, 4, 3)
    far = torch.arange(12.0).view(1, 1, 4, 3).expand(1, 2, 4, 3)
    pm = torch.ones(1, 4, 1, dtype=torch.bool)
    assert auxiliary.clash_loss(far, pairs, pm, 0.2, tau, known, mask) == 0
    assert auxiliary.clash_loss(close, pairs, pm, 0.2, tau, known, mask) > 0


def test_known_frame_prob_makes_extra_frames_known(alanine, alanine_graph, tiny_model):
    """``known_frame_prob`` marks frames beyond the task's as given: at 1 every frame is known and nothing is
    left to learn (all loss terms 0); at 0 the same draw (same generator seed) has unknown frames to learn."""
    from dataclasses import replace

    from biomd_core.model import batch_systems
    from biomd_core.sampling.schedules import forecast
    from biomd_core.training.objective import flow_matching_loss

    system = batch_systems([alanine_graph, alanine_graph])
    start = torch.as_tensor(alanine[1], dtype=torch.float32)
    frames = start + 0.01 * torch.randn(2, 4, *start.shape, generator=torch.Generator().manual_seed(0))
    plan = forecast(3, 1.0)

    def terms(p: float) -> dict:
        tiny_model.config = replace(tiny_model.config, flow=replace(tiny_model.config.flow, known_frame_prob=p))
        with torch.no_grad():
            return flow_matching_loss(tiny_model, system, frames, plan, torch.Generator().manual_seed(1))

    assert all(float(v) == 0.0 for v in terms(1.0).values())
    assert float(terms(0.0)["velocity"]) > 0.0 and float(terms(0.0)["bond"]) > 0.0
