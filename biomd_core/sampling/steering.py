"""Physics steering: nudging the flow away from overlaps, broken bonds and inverted stereocentres.

A small network trained on little data places atoms only approximately.  For
ligand unbinding that shows as frames the physics gate must refuse: a guest
atom inside the host's wall, a bond stretched far off, a stereocentre whose
handedness flipped.  Every refusal costs a re-draw of the whole piece.
Steering adds, during the last part of the integration, a term that moves the
*predicted endpoint* of the flow down a simple geometric potential, so that
frames arrive closer to physical and the gate refuses fewer of them.  It is
an inference-time prior, not a change of the model: with no violation the
velocity is returned untouched.  (BioEmu steers its protein-ensemble sampler
the same way, with potentials on chain breaks and clashes of the predicted
clean structure.)

The potential of a frame ``x [N, 3]`` nm (:class:`GeometryPrior`), in nm²::

    U(x) = Σ_overlap (σ_ij − r_ij)₊²                       pairs ≥ 3 bonds apart, σ_ij = f (R_i + R_j)
         + w_bond Σ_bonds (|r_ij − r0_ij| − δ)₊²                 δ: bond_tolerance_nm
         + w_chiral Σ_centres (v_min − s_c · v_c)₊²        v_c: normalised triple product of three
                                                           neighbour bonds, s_c: its sign in the reference

(``R`` van der Waals radii; ``(·)₊ = max(·, 0)``; the chirality term is
unitless, so ``w_chiral`` carries nm²).  Every term is flat where the geometry
is sound — no overlap, bonds within ``δ`` of their length (thermal noise and
what the gate's relaxation removes anyway), handedness clear — so steering
touches only defects.

With the linear interpolant the flow at ``τ`` with velocity ``v`` predicts the
endpoint ``x̂₁ = decode(y + (1 − τ) v)``.  For ``τ ≥ start_tau`` the steered
velocity is::

    v' = v − strength · ∇U(x̂₁) / scale

(``scale``: the space's nm per network unit), i.e. the endpoint moves by
``−strength · ∇U`` nm per unit of flow time, each atom's move capped at
``max_step_nm`` per unit flow time so a stiff term cannot make the explicit
solver overshoot.  Known entries are unaffected (the solver holds them).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from scipy.spatial import cKDTree

from .solvers import VelocityField
from .window import TrajectoryModel


@dataclass(frozen=True)
class SteeringConfig:
    """How hard and when to steer (see the module docstring for the formulas).

    Attributes
    ----------
    strength : endpoint displacement per unit flow time per nm of gradient (0 switches steering off)
    start_tau : flow time from which steering acts (early endpoints are blurred averages)
    overlap_fraction : ``f``: pairs closer than ``f`` × the sum of their van der Waals radii are pushed apart
    bond_weight, chirality_weight : ``w_bond`` (unitless), ``w_chiral`` (nm²)
    bond_tolerance_nm : ``δ``, bond deviations steering leaves alone, nm
    chirality_min_volume : ``v_min``, the normalised triple product a stereocentre is pushed towards
    max_step_nm : cap on any atom's endpoint displacement per unit flow time, nm
    """

    strength: float = 1.0
    start_tau: float = 0.3
    overlap_fraction: float = 0.6
    bond_weight: float = 1.0
    chirality_weight: float = 0.3
    bond_tolerance_nm: float = 0.01
    chirality_min_volume: float = 0.3
    max_step_nm: float = 1.0

    def __post_init__(self) -> None:
        if self.strength < 0 or self.max_step_nm <= 0:
            raise ValueError("steering strength must be >= 0 and max_step_nm > 0")
        if not 0.0 <= self.start_tau < 1.0:
            raise ValueError(f"start_tau must lie in [0, 1), got {self.start_tau}")
        if not 0.0 < self.overlap_fraction < 1.0:
            raise ValueError(f"overlap_fraction must lie in (0, 1), got {self.overlap_fraction}")
        if min(self.bond_weight, self.chirality_weight, self.chirality_min_volume, self.bond_tolerance_nm) < 0:
            raise ValueError("steering weights, bond_tolerance_nm and chirality_min_volume must be >= 0")


@dataclass(frozen=True)
class GeometryPrior:
    """What the steering potential knows of a system's ``N`` atoms (local indices ``0..N-1``).

    Attributes
    ----------
    radii_nm : ``[N]`` van der Waals radii, nm
    excluded_pairs : ``[P, 2]`` pairs never tested for overlap (one or two bonds apart)
    bonds : ``[E, 2]`` bonded pairs; ``bond_lengths_nm`` ``[E]`` their equilibrium lengths, nm
    chiral_centres : ``[C]`` stereocentres; ``chiral_neighbours`` ``[C, 3]`` three of their neighbours;
        ``chiral_signs`` ``[C]`` ±1, the sign of the triple product in a physical reference frame
    """

    radii_nm: np.ndarray
    excluded_pairs: np.ndarray
    bonds: np.ndarray
    bond_lengths_nm: np.ndarray
    chiral_centres: np.ndarray
    chiral_neighbours: np.ndarray
    chiral_signs: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.radii_nm)
        for name in ("excluded_pairs", "bonds", "chiral_neighbours"):
            a = np.asarray(getattr(self, name))
            if a.size and (a.min() < 0 or a.max() >= n):
                raise ValueError(f"{name} refers to an atom outside 0..{n - 1}")
        if len(self.bonds) != len(self.bond_lengths_nm) or len(self.chiral_centres) != len(self.chiral_signs):
            raise ValueError("bonds / lengths or centres / signs differ in number")

    @property
    def n_atoms(self) -> int:
        return int(len(self.radii_nm))

    @cached_property
    def _excluded_codes(self) -> np.ndarray:
        """Sorted codes ``i·N + j`` (``i < j``) of the excluded pairs (computed once: used at every evaluation)."""
        pairs = np.sort(np.asarray(self.excluded_pairs, dtype=np.int64).reshape(-1, 2), axis=1)
        return np.unique(pairs[:, 0] * self.n_atoms + pairs[:, 1])

    def overlap_pairs(self, frames_nm: np.ndarray, fraction: float) -> np.ndarray:
        """``[P, 2]`` pairs (``i < j``, not excluded) closer than ``fraction`` × radii sum in any of the
        frames ``[..., N, 3]`` nm: the only pairs whose overlap term is not zero."""
        frames = np.asarray(frames_nm, dtype=np.float64).reshape(-1, self.n_atoms, 3)
        cutoff = fraction * 2.0 * float(np.max(self.radii_nm)) if self.n_atoms else 0.0
        codes = [np.zeros(0, np.int64)]
        for frame in frames:
            pairs = cKDTree(frame).query_pairs(cutoff, output_type="ndarray")
            if len(pairs):
                pairs = np.sort(pairs, axis=1)
                codes.append(pairs[:, 0] * self.n_atoms + pairs[:, 1])
        candidates = np.setdiff1d(np.unique(np.concatenate(codes)), self._excluded_codes, assume_unique=True)
        return np.stack([candidates // self.n_atoms, candidates % self.n_atoms], axis=1)

    def energy(self, x_nm: torch.Tensor, config: SteeringConfig, pairs: np.ndarray | None = None) -> torch.Tensor:
        """``U`` summed over frames ``x_nm [..., N, 3]`` nm → scalar, nm² (``pairs``: :meth:`overlap_pairs`,
        found here when not given)."""
        if pairs is None:
            pairs = self.overlap_pairs(x_nm.detach().cpu().numpy(), config.overlap_fraction)
        total = x_nm.new_zeros(())
        if len(pairs):
            i, j = (torch.as_tensor(pairs[:, k], device=x_nm.device) for k in (0, 1))
            radii = torch.as_tensor(self.radii_nm, dtype=x_nm.dtype, device=x_nm.device)
            sigma = config.overlap_fraction * (radii[i] + radii[j])
            r = (x_nm[..., i, :] - x_nm[..., j, :]).norm(dim=-1)
            total = total + ((sigma - r).clamp(min=0.0) ** 2).sum()
        if len(self.bonds) and config.bond_weight:
            b = torch.as_tensor(np.asarray(self.bonds, dtype=np.int64), device=x_nm.device)
            r0 = torch.as_tensor(self.bond_lengths_nm, dtype=x_nm.dtype, device=x_nm.device)
            r = (x_nm[..., b[:, 0], :] - x_nm[..., b[:, 1], :]).norm(dim=-1)
            excess = ((r - r0).abs() - config.bond_tolerance_nm).clamp(min=0.0)
            total = total + config.bond_weight * (excess**2).sum()
        if len(self.chiral_centres) and config.chirality_weight:
            c = torch.as_tensor(np.asarray(self.chiral_centres, dtype=np.int64), device=x_nm.device)
            nb = torch.as_tensor(np.asarray(self.chiral_neighbours, dtype=np.int64), device=x_nm.device)
            sign = torch.as_tensor(self.chiral_signs, dtype=x_nm.dtype, device=x_nm.device)
            total = total + config.chirality_weight * (
                (config.chirality_min_volume - sign * signed_volumes(x_nm, c, nb)).clamp(min=0.0) ** 2).sum()
        return total

    def gradient(self, x_nm: torch.Tensor, config: SteeringConfig) -> torch.Tensor:
        """``∇U`` at frames ``x_nm [..., N, 3]`` nm → same shape, nm (works inside ``torch.inference_mode``)."""
        pairs = self.overlap_pairs(x_nm.detach().cpu().numpy(), config.overlap_fraction)
        with torch.inference_mode(False), torch.enable_grad():
            x = x_nm.detach().clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.energy(x, config, pairs), x)
        return grad


def signed_volumes(x_nm: torch.Tensor, centres: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
    """Normalised triple products ``[..., C]`` of the bonds from each centre to its three neighbours
    (``x_nm [..., N, 3]``, ``centres [C]``, ``neighbours [C, 3]``); ±0.77 for an ideal tetrahedron."""
    vec = x_nm[..., neighbours, :] - x_nm[..., centres, :].unsqueeze(-2)  # [..., C, 3, 3]
    a, b, c = vec[..., 0, :], vec[..., 1, :], vec[..., 2, :]
    volume = (a * torch.cross(b, c, dim=-1)).sum(-1)
    return volume / (a.norm(dim=-1) * b.norm(dim=-1) * c.norm(dim=-1)).clamp(min=1e-12)


class SteeredModel:
    """A :class:`~.window.TrajectoryModel` whose velocity field is steered by a :class:`GeometryPrior`.

    Parameters
    ----------
    model : the model to steer (its ``space`` must be affine with a ``scale_nm``, as every
        :mod:`biomd_core.flow.space` space but the identity is; the identity counts as 1 nm)
    prior : the system's geometry
    config : strength and weights
    """

    def __init__(self, model: TrajectoryModel, prior: GeometryPrior, config: SteeringConfig = SteeringConfig()):
        self.model = model
        self.prior = prior
        self.config = config
        self.space = model.space
        self.steered_evaluations = 0  # velocity evaluations a steering term was added to

    def field(self, anchor_nm: torch.Tensor) -> VelocityField:
        inner = self.model.field(anchor_nm)
        if self.config.strength == 0:
            return inner
        space, config = self.space, self.config
        scale = float(getattr(space, "scale_nm", 1.0))

        def velocity(y: torch.Tensor, tau: torch.Tensor, t_ps: torch.Tensor) -> torch.Tensor:
            v = inner(y, tau, t_ps)
            steer = (tau >= config.start_tau) & (tau < 1.0)  # [B, T, N]; τ = 1: known entries
            if not bool(steer.any()):
                return v
            endpoint = space.decode(y + (1.0 - tau).unsqueeze(-1) * v, anchor_nm.to(y.dtype))
            step = config.strength * self.prior.gradient(endpoint, config)
            norm = step.norm(dim=-1, keepdim=True)
            step = step * (config.max_step_nm / norm.clamp(min=config.max_step_nm))  # cap each atom's move
            self.steered_evaluations += 1
            return v - torch.where(steer.unsqueeze(-1), step / scale, torch.zeros_like(step)).to(v.dtype)

        return velocity
