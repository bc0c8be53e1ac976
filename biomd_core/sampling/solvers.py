"""Integrating the flow from noise (τ = 0) to data (τ = 1), known entries held fixed.

The velocity field is any callable ``field(y [B,T,N,3], tau [B,T,N], t_ps [B,T])
→ v [B,T,N,3]`` in network space: a trained network or an analytic one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

VelocityField = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

SOLVERS = ("euler", "heun", "ab2", "sde")


#: most ODE steps per window (hundreds already converge; more is a typo)
MAX_STEPS = 10_000


@dataclass(frozen=True)
class SolverConfig:
    """How to integrate.

    Attributes
    ----------
    solver : ``"euler"``, ``"heun"`` (2nd order, 2 evaluations per step),
        ``"ab2"`` (2nd order, 1 evaluation per step: see :func:`integrate`) or
        ``"sde"`` (Euler–Maruyama on the SDE with the same marginals; more diverse)
    n_steps : steps from τ = 0 to 1
    sde_gamma : noise strength γ of the SDE (``g² = 2γ(1 − τ)``)
    grid_power : the steps end at ``τ_i = 1 − (1 − i/n)^p``; ``p = 1`` is a uniform grid, ``p > 1``
        takes shorter steps towards τ = 1, where a narrow target (bond lengths against unit noise)
        makes the velocity change fastest
    """

    solver: str = "heun"
    n_steps: int = 20
    sde_gamma: float = 1.0
    grid_power: float = 1.0

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise ValueError(f"unknown solver {self.solver!r}; choose one of {SOLVERS}")
        if not 1 <= self.n_steps <= MAX_STEPS:  # (10**20 steps had been torch's "Overflow when unpacking long long")
            raise ValueError(f"the solver's steps (--ode-steps) must lie in [1, {MAX_STEPS}], got {self.n_steps}")
        if not 1.0 <= self.grid_power <= 4.0:
            raise ValueError(f"grid_power must lie in [1, 4], got {self.grid_power}")

    @property
    def evaluations(self) -> int:
        """Velocity evaluations per window."""
        return 2 * self.n_steps - 1 if self.solver == "heun" else self.n_steps

    def grid(self) -> list[float]:
        """The noise levels ``τ_0 = 0 < … < τ_n = 1`` the steps run between."""
        n, p = self.n_steps, self.grid_power
        if p == 1.0:
            return torch.linspace(0.0, 1.0, n + 1, dtype=torch.float64).tolist()
        return [0.0, *(1.0 - (1.0 - i / n) ** p for i in range(1, n)), 1.0]

    def describe(self) -> str:
        """``"heun 6 steps"``, with the grid when it is not uniform (for summaries and model cards)."""
        grid = f", grid power {self.grid_power:g}" if self.grid_power != 1.0 else ""
        return f"{self.solver} {self.n_steps} steps{grid}"


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

    Notes
    -----
    ``ab2`` is a two-step Adams–Bashforth method on the *predicted endpoint*
    ``x̂ = y + (1 − τ)·v`` rather than on ``v``: along the interpolant
    ``dy/dτ = (x̂ − y)/(1 − τ)`` is linear in ``y``, so a step solves that part
    exactly, ``y₁ = r·y₀ + (1 − r)·x̂`` with ``r = (1 − τ₁)/(1 − τ₀)`` (with ``x̂``
    held at ``x̂₀`` this is the Euler step), and only ``x̂`` is extrapolated, to
    the middle of the step from the last two evaluations.  One evaluation per
    step, never at τ = 1.  On Gaussian targets with closed-form velocities its
    covariance error is 2–5× smaller than Heun's with the same number of
    evaluations, and about Heun's with half as many (``tests/core/test_samplers.py``).
    """
    keep = known.unsqueeze(-1)
    noise = torch.randn(y_known.shape, generator=generator, dtype=y_known.dtype, device=y_known.device)
    y = torch.where(keep, y_known, noise)
    grid = config.grid()
    ones = torch.ones_like(known, dtype=y_known.dtype)
    previous: tuple[torch.Tensor, float] | None = None  # ab2: the last endpoint prediction and its step

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
        elif config.solver == "ab2":
            x_hat = y + (1.0 - t0) * v
            x_mid = x_hat if previous is None else x_hat + (0.5 * h / previous[1]) * (x_hat - previous[0])
            previous = (x_hat, h)
            ratio = (1.0 - t1) / (1.0 - t0)
            y_next = ratio * y + (1.0 - ratio) * x_mid
        else:
            y_next = y + h * v
        y = torch.where(keep, y_known, y_next)
    return y
