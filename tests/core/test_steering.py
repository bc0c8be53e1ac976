"""Physics steering (:mod:`biomd_core.sampling.steering`) on a six-atom molecule with known geometry.

A tetrahedral centre (atom 0) bonded to atoms 1–4, atom 5 bonded to atom 1;
all bonds 0.15 nm, every radius 0.17 nm.  The ideal frame has no overlap, no
bond off its length and the reference handedness, so its potential is exactly
zero; the "broken" frame has all three defects.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from biomd_core.flow.space import IdentitySpace, RelativeSpace
from biomd_core.sampling import SolverConfig, sample_window, schedules
from biomd_core.sampling.analytic import GaussianProcessField, ou_kernel
from biomd_core.sampling.steering import GeometryPrior, SteeredModel, SteeringConfig, signed_volumes

BOND_NM = 0.15
DIRECTIONS = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=np.float64) / np.sqrt(3.0)


def ideal_frame() -> np.ndarray:
    x = np.zeros((6, 3))
    x[1:5] = BOND_NM * DIRECTIONS
    x[5] = x[1] + BOND_NM * DIRECTIONS[0]
    return x


def broken_frame() -> np.ndarray:
    """Handedness of atom 0 inverted (atoms 2 and 3 swapped), bond 0–4 stretched to 0.25 nm, atom 5 on top of
    atom 2 (three bonds apart: 5–1–0–2)."""
    x = ideal_frame()
    x[[2, 3]] = x[[3, 2]]
    x[4] = 0.25 * DIRECTIONS[3]
    x[5] = x[2] + np.array([0.04, 0.0, 0.0])
    return x


def prior() -> GeometryPrior:
    bonds = np.array([[0, 1], [0, 2], [0, 3], [0, 4], [1, 5]])
    excluded = [(0, 1), (0, 2), (0, 3), (0, 4), (1, 5), (1, 2), (1, 3), (1, 4), (2, 3), (2, 4), (3, 4), (0, 5)]
    centres, neighbours = np.array([0]), np.array([[1, 2, 3]])
    sign = np.sign(signed_volumes(torch.from_numpy(ideal_frame()), torch.from_numpy(centres),
                                  torch.from_numpy(neighbours)).numpy())
    return GeometryPrior(np.full(6, 0.17), np.array(excluded), bonds, np.full(5, BOND_NM), centres, neighbours, sign)


def test_ideal_frame_has_zero_potential_and_the_broken_one_all_three_terms():
    p, config = prior(), SteeringConfig()
    assert p.energy(torch.from_numpy(ideal_frame()), config).item() == 0.0
    broken = torch.from_numpy(broken_frame())
    assert p.overlap_pairs(broken.numpy(), config.overlap_fraction).tolist() == [[2, 5]]
    alone = {name: p.energy(broken, SteeringConfig(bond_weight=b, chirality_weight=c)).item()
             for name, b, c in (("overlap", 0.0, 0.0), ("bonds", 1.0, 0.0), ("all", 1.0, 0.3))}
    assert 0 < alone["overlap"] < alone["bonds"] < alone["all"]
    assert alone["overlap"] == pytest.approx((0.6 * 0.34 - 0.04) ** 2)


def test_gradient_matches_finite_differences():
    p, config = prior(), SteeringConfig()
    x = torch.from_numpy(broken_frame()) + 0.01 * torch.randn(6, 3, generator=torch.Generator().manual_seed(0),
                                                              dtype=torch.float64)
    grad = p.gradient(x, config)
    pairs = p.overlap_pairs(x.numpy(), config.overlap_fraction)
    numeric = torch.zeros_like(x)
    eps = 1e-6
    for i in range(6):
        for d in range(3):
            plus, minus = x.clone(), x.clone()
            plus[i, d] += eps
            minus[i, d] -= eps
            numeric[i, d] = (p.energy(plus, config, pairs) - p.energy(minus, config, pairs)) / (2 * eps)
    torch.testing.assert_close(grad, numeric, rtol=1e-5, atol=1e-7)


class PointTarget:
    """A model whose predicted endpoint is always ``target`` (``v = (x₁ − y)/(1 − τ)``), identity space."""

    def __init__(self, target: np.ndarray) -> None:
        self.space = IdentitySpace()
        self.target = torch.from_numpy(target)

    def field(self, anchor_nm):
        def velocity(y, tau, t_ps):
            return (self.target.to(y.dtype) - y) / (1.0 - tau).clamp(min=1e-9).unsqueeze(-1)

        return velocity


def test_physical_endpoint_leaves_velocity_bit_identical():
    y = torch.randn(2, 3, 6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    tau = torch.full((2, 3, 6), 0.8, dtype=torch.float64)
    anchor = torch.zeros(2, 6, 3, dtype=torch.float64)
    plain = PointTarget(ideal_frame()).field(anchor)(y, tau, None)
    steered = SteeredModel(PointTarget(ideal_frame()), prior()).field(anchor)(y, tau, None)
    assert torch.equal(plain, steered)


def test_steered_velocity_is_the_capped_gradient_step_only_where_steering_acts():
    config = SteeringConfig(strength=2.0, start_tau=0.5, max_step_nm=0.3)
    model = SteeredModel(PointTarget(broken_frame()), prior(), config)
    y = torch.zeros(1, 3, 6, 3, dtype=torch.float64)
    tau = torch.tensor([0.2, 0.7, 1.0], dtype=torch.float64).view(1, 3, 1).expand(1, 3, 6)  # early, steered, known
    anchor = torch.zeros(1, 6, 3, dtype=torch.float64)
    difference = model.model.field(anchor)(y, tau, None) - model.field(anchor)(y, tau, None)
    step = 2.0 * prior().gradient(torch.from_numpy(broken_frame()), config)
    step = step * (0.3 / step.norm(dim=-1, keepdim=True).clamp(min=0.3))
    assert step.norm(dim=-1).max().item() == pytest.approx(0.3)  # the cap binds for some atom
    assert torch.count_nonzero(difference[0, 0]) == 0 and torch.count_nonzero(difference[0, 2]) == 0
    torch.testing.assert_close(difference[0, 1], step)
    assert model.steered_evaluations == 1


def test_network_space_scale_divides_the_step():
    """In a space of ``scale`` nm per unit the velocity changes by the step / scale."""
    scale = 0.5

    class Scaled(PointTarget):
        def __init__(self, target):
            super().__init__(target)
            self.space = RelativeSpace(scale)

        def field(self, anchor_nm):
            target_y = (self.target - anchor_nm[0]) / scale
            return lambda y, tau, t: (target_y - y) / (1.0 - tau).unsqueeze(-1)

    anchor = torch.from_numpy(ideal_frame())[None]
    config = SteeringConfig(chirality_weight=0.0)  # its gradient would reach the cap
    model = SteeredModel(Scaled(broken_frame()), prior(), config)
    y = torch.zeros(1, 1, 6, 3, dtype=torch.float64)
    tau = torch.full((1, 1, 6), 0.5, dtype=torch.float64)
    difference = model.model.field(anchor)(y, tau, None) - model.field(anchor)(y, tau, None)
    step = prior().gradient(torch.from_numpy(broken_frame()), config)
    assert step.norm(dim=-1).max() < config.max_step_nm  # no cap involved
    torch.testing.assert_close(difference[0, 0], step / scale)


def test_steering_repairs_a_broken_target_distribution():
    """Sampling a narrow Gaussian around the broken frame: unsteered draws keep its defects, steered ones lose
    most of them (the handedness in every draw); without the chirality term, bond and overlap improve."""
    target = GaussianProcessField(ou_kernel(0.02**2, 1.0), torch.eye(6, dtype=torch.float64),
                                  torch.from_numpy(broken_frame()))
    plan = schedules.forecast(1, 1.0)
    window = torch.from_numpy(broken_frame())[None, None].expand(32, 2, 6, 3).contiguous()
    p = prior()

    def draws(config: SteeringConfig | None) -> torch.Tensor:
        model = target if config is None else SteeredModel(target, p, config)
        return sample_window(model, plan, window, SolverConfig("euler", n_steps=20),
                             torch.Generator().manual_seed(2))[:, 1]

    def distance(frames: torch.Tensor, i: int, j: int) -> float:
        return (frames[:, i] - frames[:, j]).norm(dim=-1).mean().item()

    plain, steered, no_chirality = draws(None), draws(SteeringConfig()), draws(SteeringConfig(chirality_weight=0.0))
    energy = [np.mean([p.energy(f, SteeringConfig()).item() for f in frames]) for frames in (plain, steered)]
    assert energy[1] < 0.1 * energy[0]
    handedness = [signed_volumes(frames, torch.tensor([0]), torch.tensor([[1, 2, 3]]))[:, 0] * p.chiral_signs[0]
                  for frames in (plain, steered)]
    assert (handedness[0] < 0).all() and (handedness[1] > 0).all()
    assert distance(plain, 0, 4) > 0.23 and distance(no_chirality, 0, 4) < distance(plain, 0, 4) - 0.015
    assert distance(plain, 2, 5) < 0.09 < distance(steered, 2, 5)  # the overlap is pushed apart


def test_steering_works_inside_inference_mode():
    model = SteeredModel(PointTarget(broken_frame()), prior())
    anchor = torch.zeros(1, 6, 3, dtype=torch.float64)
    y = torch.zeros(1, 1, 6, 3, dtype=torch.float64)
    tau = torch.full((1, 1, 6), 0.5, dtype=torch.float64)
    with torch.inference_mode():
        v = model.field(anchor)(y, tau, None)
    assert torch.isfinite(v).all() and model.steered_evaluations == 1


def test_zero_strength_is_the_models_own_field():
    model = SteeredModel(PointTarget(broken_frame()), prior(), SteeringConfig(strength=0.0))
    y = torch.zeros(1, 1, 6, 3, dtype=torch.float64)
    tau = torch.full((1, 1, 6), 0.5, dtype=torch.float64)
    anchor = torch.zeros(1, 6, 3, dtype=torch.float64)
    assert torch.equal(model.field(anchor)(y, tau, None), model.model.field(anchor)(y, tau, None))
    assert model.steered_evaluations == 0


@pytest.mark.parametrize("bad", [dict(strength=-1.0), dict(start_tau=1.0), dict(overlap_fraction=0.0),
                                 dict(bond_weight=-0.1), dict(max_step_nm=0.0)])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError):
        SteeringConfig(**bad)


def test_prior_refuses_indices_outside_the_atoms():
    p = prior()
    with pytest.raises(ValueError, match="outside"):
        GeometryPrior(p.radii_nm, p.excluded_pairs, np.array([[0, 6]]), np.array([0.15]), p.chiral_centres,
                      p.chiral_neighbours, p.chiral_signs)
