"""Analytic velocity fields of Gaussian targets: samplers' known answers.

For a Gaussian target y ~ N(μ, Σ) and the interpolant y_τ = τ·y + (1 − τ)·ε,
the flow-matching velocity is the conditional mean of y − ε given y_τ:

    v(y_τ) = μ + (τΣ − (1 − τ)I)(τ²Σ + (1 − τ)²I)⁻¹ (y_τ − τμ),

which is finite at τ = 1 (no division by 1 − τ).  With some entries known,
the target of the unknown entries is the conditional Gaussian given the known
ones, so the same formula applies to (μ_c, Σ_c).

:class:`GaussianProcessField` builds Σ over a window from a covariance over
time (a function of the frame times in ps, so a window at any stride has the
right answer) and a covariance over atoms.  With an Ornstein–Uhlenbeck kernel
the process is Markov, so autoregressive blocks with one history frame and
interpolation between two frames are exact: a hierarchical rollout must then
reproduce the stationary variance and autocorrelation of the process.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..flow.space import IdentitySpace

TimeKernel = Callable[[torch.Tensor], torch.Tensor]


def ou_kernel(variance: float, correlation_time_ps: float) -> TimeKernel:
    """Ornstein–Uhlenbeck covariance ``σ²·exp(−|Δt|/τc)`` of times ``[T]`` ps → ``[T, T]``."""

    def kernel(t_ps: torch.Tensor) -> torch.Tensor:
        dt = (t_ps.unsqueeze(0) - t_ps.unsqueeze(1)).abs()
        return variance * torch.exp(-dt / correlation_time_ps)

    return kernel


def gaussian_velocity(y: torch.Tensor, tau: float, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """Velocity of N(mean, cov) at noise level ``tau``; ``y [B, D]``, ``mean [D]`` or ``[B, D]``, ``cov [D, D]``."""
    d = cov.shape[0]
    eye = torch.eye(d, dtype=cov.dtype)
    gain = torch.linalg.solve(tau**2 * cov + (1.0 - tau) ** 2 * eye, tau * cov - (1.0 - tau) * eye)
    # gain is symmetric-compatible: (A⁻¹B)ᵀ = B A⁻¹ since A and B commute (both functions of cov).
    return mean + (y - tau * mean) @ gain


class GaussianProcessField:
    """Trajectory model whose target is a Gaussian process over frames and atoms.

    The window's entries ``y[t, n, d]`` have mean ``mean[n, d]`` and covariance
    ``time_kernel(t_ps)[t, t'] · atom_cov[n, n'] · δ(d, d')``.

    Parameters
    ----------
    time_kernel : frame times ``[T]`` ps → covariance ``[T, T]``
    atom_cov : ``[N, N]`` correlation between atoms (identity: independent atoms)
    mean : ``[N, 3]`` stationary mean
    """

    def __init__(self, time_kernel: TimeKernel, atom_cov: torch.Tensor, mean: torch.Tensor) -> None:
        self.time_kernel = time_kernel
        self.atom_cov = atom_cov.to(torch.float64)
        self.mean = mean.to(torch.float64)
        self.space = IdentitySpace()
        self.calls = 0

    def window_distribution(self, t_ps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``[T·N·3]`` and covariance ``[T·N·3, T·N·3]`` of a window with times ``[T]`` ps."""
        k_t = self.time_kernel(t_ps.to(torch.float64))
        cov = torch.kron(torch.kron(k_t, self.atom_cov), torch.eye(3, dtype=torch.float64))
        mean = self.mean.reshape(-1).repeat(t_ps.shape[0])
        return mean, cov

    def conditional(
        self, t_ps: torch.Tensor, known: torch.Tensor, y_known: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Distribution of the unknown entries given the known ones.

        ``known [T, N]`` (one mask for the batch), ``y_known [B, T, N, 3]``.
        Returns ``unknown_index [U]`` into the flattened window, ``mean [B, U]``, ``cov [U, U]``.
        """
        mean, cov = self.window_distribution(t_ps)
        flat_known = known.unsqueeze(-1).expand(*known.shape, 3).reshape(-1)
        u = torch.nonzero(~flat_known).squeeze(-1)
        k = torch.nonzero(flat_known).squeeze(-1)
        if k.numel() == 0:
            return u, mean[u].expand(y_known.shape[0], -1), cov
        values = y_known.reshape(y_known.shape[0], -1)[:, k].to(torch.float64)
        gain = torch.linalg.solve(cov[k][:, k], cov[k][:, u])  # Σ_KK⁻¹ Σ_KU  [K,U]
        cond_mean = mean[u] + (values - mean[k]) @ gain
        cond_cov = cov[u][:, u] - cov[u][:, k] @ gain
        return u, cond_mean, 0.5 * (cond_cov + cond_cov.T)

    def field(self, anchor_nm: torch.Tensor):
        """The velocity field (the anchor adds nothing: known entries carry it)."""

        def velocity(y: torch.Tensor, tau: torch.Tensor, t_ps: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            known = tau[0] >= 1.0
            if not torch.equal(known.expand_as(tau), tau >= 1.0):
                raise ValueError("GaussianProcessField needs one known mask for the whole batch")
            level = float(tau[0][~known][0]) if (~known).any() else 1.0
            u, mean_c, cov_c = self.conditional(t_ps[0], known, y)
            flat = y.reshape(y.shape[0], -1).to(torch.float64)
            out = torch.zeros_like(flat)
            out[:, u] = gaussian_velocity(flat[:, u], level, mean_c, cov_c)
            return out.to(y.dtype).view_as(y)

        return velocity


def solver_covariance_error(target: GaussianProcessField, plan, solver, replicas: int = 64, seed: int = 0) -> float:
    """Relative error of the covariance a solver gives a window's unknown entries, free of sampling noise.

    The target's velocity is affine in ``y``, so every ODE solver maps the initial noise affinely,
    ``sample = noise·A + b``: ``A`` is recovered by least squares from ``replicas`` seeded draws (their
    noise re-drawn from the same generator), and the covariance the solver gives is ``AᵀA`` (to float32
    rounding: windows are integrated in float32).  The known entries are one draw of the target.

    Parameters
    ----------
    target : the Gaussian target
    plan : a :class:`~biomd_core.sampling.schedules.WindowPlan`
    solver : a :class:`~biomd_core.sampling.solvers.SolverConfig` (not ``sde``: its map is not affine in
        the initial noise alone)
    replicas : draws; more than the window's unknown entries

    Returns
    -------
    ``‖AᵀA − Σ‖ / ‖Σ‖`` (Frobenius), Σ the exact conditional covariance of the unknown entries
    """
    from .window import sample_window

    n_atoms = target.atom_cov.shape[0]
    mean, cov = target.window_distribution(plan.times(1)[0])
    g = torch.Generator().manual_seed(seed)
    draw = mean + torch.linalg.cholesky(cov) @ torch.randn(mean.shape[0], generator=g, dtype=torch.float64)
    frames = draw.view(1, plan.n_frames, n_atoms, 3).expand(replicas, -1, -1, -1).contiguous()
    known = plan.known_mask(n_atoms)
    out = sample_window(target, plan, frames, solver, torch.Generator().manual_seed(seed + 1))
    noise = torch.randn(frames.shape, generator=torch.Generator().manual_seed(seed + 1)).to(frames.dtype)
    unknown, _, cond_cov = target.conditional(plan.times(1)[0], known, frames[:1])
    if replicas <= len(unknown):
        raise ValueError(f"{replicas} replicas cannot determine the map of {len(unknown)} unknown entries")
    x = torch.cat([noise.reshape(replicas, -1)[:, unknown], torch.ones(replicas, 1, dtype=frames.dtype)], dim=1)
    y = out.reshape(replicas, -1)[:, unknown]
    fit = torch.linalg.lstsq(x, y).solution
    if (x @ fit - y).abs().max() > 1e-4:
        raise ValueError(f"solver {solver} does not map the noise affinely (a stochastic solver?)")
    a = fit[:-1]
    return float(torch.linalg.matrix_norm(a.T @ a - cond_cov) / torch.linalg.matrix_norm(cond_cov))


def ou_autocorrelation(lag_ps: float, correlation_time_ps: float) -> float:
    """Normalised autocorrelation of an Ornstein–Uhlenbeck process at a lag."""
    return math.exp(-lag_ps / correlation_time_ps)
