"""Samplers against known answers: Gaussian targets with closed-form velocities.

No network is involved: :class:`GaussianProcessField` gives the exact velocity
of a Gaussian target, so a correct sampler must reproduce the (conditional)
mean and covariance, and keep known entries bit-exact.
"""

from __future__ import annotations

import math

import pytest
import torch

from biomd_core.config import TimeConfig
from biomd_core.sampling import HierarchicalSampler, SolverConfig, sample_window, schedules
from biomd_core.sampling.analytic import (
    GaussianProcessField,
    ou_autocorrelation,
    ou_kernel,
    solver_covariance_error,
)

N_ATOMS = 2
REPLICAS = 4000


def correlated_atoms() -> torch.Tensor:
    """A fixed, well-conditioned 2×2 atom correlation (so inpainting carries information)."""
    return torch.tensor([[1.0, 0.8], [0.8, 1.0]], dtype=torch.float64)


@pytest.fixture(scope="module")
def target() -> GaussianProcessField:
    mean = torch.tensor([[0.5, -0.2, 0.1], [1.0, 0.3, -0.4]], dtype=torch.float64)
    return GaussianProcessField(ou_kernel(variance=0.8, correlation_time_ps=3.0), correlated_atoms(), mean)


PLANS = {
    "forecast": schedules.forecast(3, 1.0),
    "autoregressive": schedules.autoregressive_block(2, 2, 1.0),
    "interpolate": schedules.interpolate(2, 1.0),
    "tps": schedules.transition_path(3, 2.5),
    "inpaint": schedules.inpaint(3, 1.0, known_atoms=(1,)),
}
SOLVERS = {
    "euler": SolverConfig("euler", n_steps=200),
    "heun": SolverConfig("heun", n_steps=20),
    "ab2": SolverConfig("ab2", n_steps=20),
    "ab2-graded": SolverConfig("ab2", n_steps=20, grid_power=1.5),
    "sde": SolverConfig("sde", n_steps=400, sde_gamma=1.0),
}


def one_draw(target: GaussianProcessField, plan, seed: int) -> torch.Tensor:
    """One window drawn from the target, repeated for every replica: ``[R, T, N, 3]`` float64."""
    mean, cov = target.window_distribution(plan.times(1)[0])
    g = torch.Generator().manual_seed(seed)
    draw = mean + torch.linalg.cholesky(cov) @ torch.randn(mean.shape[0], generator=g, dtype=torch.float64)
    return draw.view(1, plan.n_frames, N_ATOMS, 3).expand(REPLICAS, -1, -1, -1).contiguous()


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("task", PLANS)
def test_sampler_recovers_conditional_gaussian(target, task, solver):
    plan = PLANS[task]
    frames = one_draw(target, plan, seed=hash(task) % 1000)
    out = sample_window(target, plan, frames, SOLVERS[solver], torch.Generator().manual_seed(1))

    known = plan.known_mask(N_ATOMS)
    assert torch.equal(out[:, known], frames[:, known]), "known entries must come back bit-exact"

    u, cond_mean, cond_cov = target.conditional(plan.times(1)[0], known, frames[:1])
    samples = out.reshape(REPLICAS, -1)[:, u].to(torch.float64)
    std = cond_cov.diagonal().sqrt()
    mean_err = (samples.mean(0) - cond_mean[0]).abs() / std
    assert mean_err.max() < 0.12, f"mean off by {mean_err.max():.3f} standard deviations"
    emp_cov = torch.cov(samples.T)
    rel = torch.linalg.matrix_norm(emp_cov - cond_cov) / torch.linalg.matrix_norm(cond_cov)
    assert rel < 0.1, f"covariance relative error {rel:.3f}"


def test_ab2_beats_heun_at_equal_or_fewer_evaluations(target):
    """ab2 (one evaluation a step) against Heun (two), exact covariance errors on the forecast task."""
    plan = PLANS["forecast"]
    error = {name: solver_covariance_error(target, plan, config) for name, config in {
        "heun 6": SolverConfig("heun", 6), "ab2 6": SolverConfig("ab2", 6), "ab2 11": SolverConfig("ab2", 11),
        "ab2 22": SolverConfig("ab2", 22), "euler 11": SolverConfig("euler", 11)}.items()}
    assert SolverConfig("heun", 6).evaluations == 11 == SolverConfig("ab2", 11).evaluations
    assert error["ab2 11"] < 0.5 * error["heun 6"], error  # same 11 evaluations
    assert error["ab2 6"] < 1.1 * error["heun 6"], error  # as accurate with 6 evaluations instead of 11
    assert error["ab2 11"] < 0.2 * error["euler 11"], error
    assert error["ab2 22"] < 0.4 * error["ab2 11"], error  # second order: about a quarter per halving


def test_graded_grid_helps_a_narrow_target():
    """A target 30× narrower than the noise (as bond lengths are): steps graded towards τ = 1 pay."""
    narrow = GaussianProcessField(ou_kernel(variance=1e-3, correlation_time_ps=3.0), correlated_atoms(),
                                  torch.zeros(N_ATOMS, 3))
    plan = PLANS["forecast"]
    uniform = solver_covariance_error(narrow, plan, SolverConfig("ab2", 11))
    graded = solver_covariance_error(narrow, plan, SolverConfig("ab2", 11, grid_power=2.0))
    assert graded < 0.5 * uniform, (uniform, graded)


def test_covariance_error_refuses_what_it_cannot_measure(target):
    with pytest.raises(ValueError, match="affinely"):
        solver_covariance_error(target, PLANS["forecast"], SolverConfig("sde", 4))
    with pytest.raises(ValueError, match="cannot determine"):
        solver_covariance_error(target, PLANS["forecast"], SolverConfig("ab2", 4), replicas=8)


def test_solver_grid_and_validation():
    assert SolverConfig("ab2", 4).grid() == [0.0, 0.25, 0.5, 0.75, 1.0]
    graded = SolverConfig("ab2", 4, grid_power=2.0).grid()
    assert graded[0] == 0.0 and graded[-1] == 1.0 and graded[1] == pytest.approx(1 - 0.75**2)
    assert all(b - a > d - c for a, b, c, d in zip(graded, graded[1:], graded[1:], graded[2:]))  # shrinking steps
    assert SolverConfig("heun", 4, grid_power=2.0).describe() == "heun 4 steps, grid power 2"
    assert SolverConfig("ab2", 6).describe() == "ab2 6 steps"
    with pytest.raises(ValueError, match="grid_power"):
        SolverConfig("ab2", 4, grid_power=0.5)
    with pytest.raises(ValueError, match="unknown solver"):
        SolverConfig("rk4", 4)


def test_known_entries_bit_exact_with_float32_and_noisy_unknowns(target):
    plan = PLANS["inpaint"]
    frames = torch.randn(8, plan.n_frames, N_ATOMS, 3, dtype=torch.float32) * 3.7 + 1e-3
    known = plan.known_mask(N_ATOMS)
    for solver in ("heun", "ab2"):
        out = sample_window(target, plan, frames, SolverConfig(solver, 4), torch.Generator().manual_seed(0))
        assert out.dtype == frames.dtype
        assert torch.equal(out[:, known], frames[:, known])
        assert not torch.equal(out[:, ~known], frames[:, ~known])


def test_same_seed_same_samples_different_seed_differs(target):
    plan = PLANS["forecast"]
    frames = one_draw(target, plan, 3)[:16]
    run = lambda seed: sample_window(target, plan, frames, SOLVERS["sde"], torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))


def test_hierarchical_rollout_reproduces_ou_process():
    """Coarse AR (Markov: one history frame is exact) + interpolation (an OU bridge) = the OU process."""
    tau_c, variance = 20.0, 1.0
    field = GaussianProcessField(ou_kernel(variance, tau_c), torch.eye(1, dtype=torch.float64), torch.zeros(1, 3))
    time = TimeConfig(frame_interval_ps=1.0, coarse_stride=5, history_frames=1, block_frames=4)
    sampler = HierarchicalSampler(field, time, SolverConfig("heun", 16))
    g = torch.Generator().manual_seed(0)
    start = torch.randn(2000, 1, 3, generator=g, dtype=torch.float64) * math.sqrt(variance)
    traj = sampler.rollout(start, n_coarse=8, generator=g)  # [R, 41, 1, 3]
    assert traj.shape == (2000, 41, 1, 3)
    assert torch.equal(traj[:, 0], start)

    x = traj[..., 0, :].to(torch.float64)  # [R, T, 3]
    assert abs(x.var(dim=0).mean().item() - variance) < 0.05 * variance
    for lag in (1, 3, 5, 10, 20):
        corr = (x[:, lag:] * x[:, :-lag]).mean().item() / variance
        assert abs(corr - ou_autocorrelation(lag, tau_c)) < 0.03, (lag, corr)


def test_hierarchical_transition_path_keeps_end_states():
    field = GaussianProcessField(ou_kernel(1.0, 10.0), torch.eye(2, dtype=torch.float64), torch.zeros(2, 3))
    sampler = HierarchicalSampler(field, TimeConfig(1.0, 4, 1, 3), SolverConfig("heun", 8))
    # Seeded, and enough replicas that the bridge's mid-point mean is well estimated (3 unseeded
    # replicas made this test fail about once in ten runs).
    start, end = torch.zeros(200, 2, 3), torch.ones(200, 2, 3)
    path = sampler.transition_path(start, end, n_coarse=3, generator=torch.Generator().manual_seed(0))
    assert path.shape == (200, 13, 2, 3)
    assert torch.equal(path[:, 0], start) and torch.equal(path[:, -1], end)
    # The bridge's mean rises monotonically from one end state to the other.
    means = path.mean(dim=(0, 2, 3))
    assert means[6] > 0.2 and means[6] < 0.8


def test_whole_number_of_frames_required():
    field = GaussianProcessField(ou_kernel(1.0, 10.0), torch.eye(1, dtype=torch.float64), torch.zeros(1, 3))
    sampler = HierarchicalSampler(field, TimeConfig(2.0, 5, 1, 2))
    assert sampler.n_coarse_for(100.0) == 10
    with pytest.raises(ValueError, match="whole number"):
        sampler.n_coarse_for(101.0)


def test_tasks_at_full_resolution_keep_what_is_given():
    from biomd_core.sampling import tasks

    atoms = torch.tensor([[1.0, 0.9], [0.9, 1.0]], dtype=torch.float64)
    field = GaussianProcessField(ou_kernel(1.0, 10.0), atoms, torch.zeros(2, 3))
    time = TimeConfig(frame_interval_ps=2.0, coarse_stride=3, history_frames=1, block_frames=2)
    sampler = HierarchicalSampler(field, time, SolverConfig("heun", 6))
    g = torch.Generator().manual_seed(0)
    start, end = torch.randn(4, 2, 3, generator=g), torch.randn(4, 2, 3, generator=g)

    out = tasks.forecast(sampler, start, duration_ps=20.0, generator=g)
    assert out.shape == (4, 11, 2, 3) and torch.equal(out[:, 0], start)
    path = tasks.transition_path(sampler, start, end, duration_ps=12.0, generator=g)
    assert path.shape == (4, 7, 2, 3) and torch.equal(path[:, -1], end)
    between = tasks.interpolate(sampler, start, end, 6.0, g)
    assert between.shape == (4, 4, 2, 3) and torch.equal(between[:, 0], start) and torch.equal(between[:, -1], end)
    with pytest.raises(ValueError, match="tps"):
        tasks.interpolate(sampler, start, end, 8.0, g)
    with pytest.raises(ValueError, match="whole coarse"):
        tasks.transition_path(sampler, start, end, 8.0, g)
    with pytest.raises(ValueError, match="whole number"):
        tasks.forecast(sampler, start, 3.0, g)

    reference = torch.randn(4, 10, 2, 3, generator=g, dtype=torch.float64)
    filled = tasks.inpaint(sampler, reference, known_atoms=[0], generator=g)
    assert filled.shape == (4, 10, 2, 3)
    assert torch.equal(filled[:, :, 0], reference[:, :, 0]), "known atoms bit-exact in every frame"
    assert torch.equal(filled[:, 0], reference[:, 0])
    # The generated atom follows the known one it is correlated with (0.9).
    corr = torch.corrcoef(torch.stack([filled[:, 1:, 0].reshape(-1), filled[:, 1:, 1].reshape(-1)]))[0, 1]
    assert corr > 0.6
