"""Sampling one window of a schedule with any trajectory model.

A *trajectory model* is anything with

- ``space``: a coordinate space (``encode(x, anchor)`` / ``decode(y, anchor)``), and
- ``field(anchor_nm [B, N, 3]) → VelocityField``: the velocity field for windows
  anchored on that frame (a network encodes the anchor once here).

:class:`~biomd_core.model.BioMDModel` is one; the analytic Gaussian fields in
:mod:`biomd_core.sampling.analytic` are others, which is how samplers are tested
against known answers apart from any network.
"""

from __future__ import annotations

from typing import Protocol

import torch

from .schedules import WindowPlan
from .solvers import SolverConfig, VelocityField, integrate


class TrajectoryModel(Protocol):
    space: object

    def field(self, anchor_nm: torch.Tensor) -> VelocityField: ...


def sample_window(
    model: TrajectoryModel,
    plan: WindowPlan,
    frames_nm: torch.Tensor,
    solver: SolverConfig,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fill the unknown entries of one window.

    Parameters
    ----------
    frames_nm : ``[B, T, N, 3]`` nm; entries the plan marks known are read, the
        others are ignored (any finite value)

    Returns
    -------
    ``[B, T, N, 3]`` in the dtype of ``frames_nm``; known entries are returned
    bit-exact.
    """
    b, t, n, _ = frames_nm.shape
    if t != plan.n_frames:
        raise ValueError(f"window has {t} frames but the plan expects {plan.n_frames}")
    known = plan.known_mask(n).to(frames_nm.device).expand(b, t, n)
    work = frames_nm.to(torch.float32)
    anchor = work[:, plan.anchor_index]
    space = model.space
    y_known = torch.where(known.unsqueeze(-1), space.encode(work, anchor), torch.zeros_like(work))
    y = integrate(model.field(anchor), y_known, known, plan.times(b).to(work.device), solver, generator)
    x = space.decode(y, anchor).to(frames_nm.dtype)
    return torch.where(known.unsqueeze(-1), frames_nm, x)
