"""Integrating the flow from noise (τ = 0) to data (τ = 1), known entries held fixed.

The velocity field is any callable ``field(y [B,T,N,3], tau [B,T,N], t_ps [B,T])
→ v [B,T,N,3]`` in network space: a trained network or an analytic one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

VelocityField = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

SOLVERS = ("euler", "heun", "sde")


@dataclass(frozen=True)
class SolverConfig:
    """How to integrate.

    Attributes
    ----------
    solver : ``"euler"``, ``"heun"`` (2nd order, 2 evaluations per step) or
        ``"sde"`` (Euler–Maruyama on the SDE with the same marginals; more diverse)
    n_steps : steps from τ = 0 to 1
    sde_gamma : noise strength γ of the SDE (``g² = 2γ(1 − τ)``)
    """

    solver: str = "heun"
    n_steps: int = 20
    sde_gamma: float = 1.0

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise ValueError(f"unknown solver {self.solver!r}; choose one of {SOLVERS}")
        if self.n_steps < 1:
            raise ValueError("n_steps must be >= 1")


def integrate(
    field: VelocityField,
    y_known: torch.Tensor,
    known: torch.Tensor,
    t_ps: torch.Tensor,
    config: SolverConfig,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample unknown entries given known ones.

    Parameters
    ----------
    y_known : ``[B, T, N, 3]`` network-space values; only entries with ``known`` are read
    known : ``[B, T, N]`` bool
    t_ps : ``[B, T]`` frame times, ps

    Returns
    -------
    ``[B, T, N, 3]``: known entries equal ``y_known`` bit for bit.
    """
    keep = known.unsqueeze(-1)
    noise = torch.randn(y_known.shape, generator=generator, dtype=y_known.dtype, device=y_known.device)
    y = torch.where(keep, y_known, noise)
    grid = torch.linspace(0.0, 1.0, config.n_steps + 1, dtype=torch.float64).tolist()
    ones = torch.ones_like(known, dtype=y_known.dtype)

    def tau_at(level: float) -> torch.Tensor:
        return torch.where(known, ones, torch.full_like(ones, level))

    for step in range(config.n_steps):
        t0, t1 = grid[step], grid[step + 1]
        h = t1 - t0
        v = field(y, tau_at(t0), t_ps)
        if config.solver == "sde":
            drift = v - config.sde_gamma * (y - t0 * v)
            kick = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
            y_next = y + h * drift + (2.0 * config.sde_gamma * (1.0 - t0) * h) ** 0.5 * kick
        elif config.solver == "heun" and step < config.n_steps - 1:
            # The last step stays first order: it ends at τ = 1, where some
            # parameterisations of the field are singular.
            y_pred = torch.where(keep, y_known, y + h * v)
            v_next = field(y_pred, tau_at(t1), t_ps)
            y_next = y + 0.5 * h * (v + v_next)
        else:
            y_next = y + h * v
        y = torch.where(keep, y_known, y_next)
    return y
