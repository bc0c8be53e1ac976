"""``RigidBonds``: projecting generated frames onto constrained bond lengths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from biomd_core.sampling.constraints import RigidBonds


@pytest.fixture
def hydrogen_bonds(alanine, alanine_graph):
    """Alanine dipeptide's X–H bonds held at their lengths in the openmmtools structure."""
    g = alanine_graph
    return RigidBonds.hydrogen_bonds(g.bonds, g.element_labels, g.masses, alanine[1])


def _noisy(frame: np.ndarray, n: int, sigma_nm: float, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(frame[None] + rng.normal(0.0, sigma_nm, (n, *frame.shape)))


def test_hydrogen_bonds_are_every_bond_to_a_hydrogen(alanine_graph, hydrogen_bonds):
    g = alanine_graph
    is_h = g.element_labels == "H"
    assert hydrogen_bonds.n_constraints == int(is_h.sum()) == 12  # each H has exactly one bond
    assert all(is_h[i] or is_h[j] for i, j in hydrogen_bonds.pairs)
    np.testing.assert_array_less(0.09, hydrogen_bonds.lengths_nm)
    np.testing.assert_array_less(hydrogen_bonds.lengths_nm, 0.112)


def test_projection_restores_the_lengths_and_keeps_the_centre_of_mass(alanine, alanine_graph, hydrogen_bonds):
    frames = _noisy(alanine[1], 16, 0.02)
    assert hydrogen_bonds.max_relative_error(frames) > 0.2
    projected = hydrogen_bonds.project(frames)
    assert projected.shape == frames.shape and projected.dtype == frames.dtype
    assert hydrogen_bonds.max_relative_error(projected) < 1e-5
    # mass-weighted updates along the bonds: internal forces, so the centre of mass does not move
    m = torch.from_numpy(alanine_graph.masses.astype(np.float64))[:, None]
    np.testing.assert_allclose((projected * m).sum(1) / m.sum(), (frames * m).sum(1) / m.sum(), atol=1e-12)
    # only atoms of a constraint move, and heavy atoms far less than hydrogens
    moved = (projected - frames).norm(dim=-1).max(0).values.numpy()
    in_constraint = np.zeros(alanine_graph.n_atoms, bool)
    in_constraint[hydrogen_bonds.pairs.ravel()] = True
    assert (moved[~in_constraint] == 0).all()
    is_h = alanine_graph.element_labels == "H"
    assert moved[is_h].mean() > 5 * moved[in_constraint & ~is_h].mean()


def test_a_methyl_hydrogen_far_off_is_pulled_back_along_its_bond(alanine, alanine_graph, hydrogen_bonds):
    frame = torch.from_numpy(alanine[1].copy())
    i, j = hydrogen_bonds.pairs[0]
    h, heavy = (j, i) if alanine_graph.element_labels[j] == "H" else (i, j)
    bond = frame[h] - frame[heavy]
    frame[h] = frame[heavy] + bond * (1.0 + 0.06 / float(bond.norm()))  # stretched by 0.6 Å
    projected = hydrogen_bonds.project(frame[None])[0]
    assert hydrogen_bonds.max_relative_error(projected) < 1e-5
    direction = projected[h] - projected[heavy]
    assert torch.nn.functional.cosine_similarity(direction, bond, dim=0) > 0.9999


def test_fixed_atoms_do_not_move_and_nothing_to_do_is_a_no_op(alanine, hydrogen_bonds):
    frames = _noisy(alanine[1], 2, 0.01)
    fixed = [int(hydrogen_bonds.pairs[0, 0]), int(hydrogen_bonds.pairs[0, 1])]
    projected = hydrogen_bonds.project(frames, fixed_atoms=fixed)
    assert torch.equal(projected[:, fixed], frames[:, fixed])
    assert hydrogen_bonds.max_relative_error(projected) < 0.2  # the fixed pair keeps its error
    empty = RigidBonds.from_masses(np.zeros((0, 2)), [], np.ones(22))
    assert empty.project(frames) is frames


def test_bad_constraints_are_refused():
    with pytest.raises(ValueError, match="lengths"):
        RigidBonds.from_masses([[0, 1]], [0.1, 0.2], [1.0, 1.0])
    with pytest.raises(ValueError, match="outside"):
        RigidBonds.from_masses([[0, 5]], [0.1], [1.0, 1.0])
    with pytest.raises(ValueError, match="positive"):
        RigidBonds.from_masses([[0, 1]], [0.0], [1.0, 1.0])


def test_the_sampler_returns_constrained_frames_and_keeps_known_ones_bit_exact(alanine, hydrogen_bonds):
    from biomd_core.config import TimeConfig
    from biomd_core.sampling import HierarchicalSampler, SolverConfig
    from biomd_core.sampling.analytic import GaussianProcessField, ou_kernel

    start = torch.from_numpy(alanine[1])
    # an analytic field whose samples (4 Heun steps) are the start structure plus ~0.01 nm of noise
    atoms = torch.eye(start.shape[0], dtype=torch.float64)
    field = GaussianProcessField(ou_kernel(0.1, 1.0), atoms, start.float())
    time = TimeConfig(frame_interval_ps=2.0, coarse_stride=3, history_frames=1, block_frames=2)
    raw = HierarchicalSampler(field, time, SolverConfig("heun", 4))
    rigid = HierarchicalSampler(field, time, SolverConfig("heun", 4), constraints=hydrogen_bonds)
    g = torch.Generator().manual_seed(0)
    start2 = start.unsqueeze(0).expand(2, -1, -1).contiguous()
    unconstrained = raw.rollout(start2, 2, torch.Generator().manual_seed(0))
    constrained = rigid.rollout(start2, 2, g)
    assert constrained.shape == unconstrained.shape == (2, 7, 22, 3)
    assert hydrogen_bonds.max_relative_error(unconstrained[:, 1:]) > 0.05
    assert hydrogen_bonds.max_relative_error(constrained[:, 1:]) < 1e-5
    assert torch.equal(constrained[:, 0], start2)
