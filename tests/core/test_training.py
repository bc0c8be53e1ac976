"""A tiny model trained on a process with a known answer learns it."""

from __future__ import annotations

import numpy as np
import pytest

from biomd_core.config import TimeConfig, TrainingConfig
from biomd_core.data.synthetic import HarmonicParticles
from biomd_core.training import TrajectorySet, WindowSampler


@pytest.fixture(scope="module")
def trained():
    from biomd_core.demo import train_harmonic

    return train_harmonic(steps=1000, seed=0)


def test_loss_clearly_decreases(trained):
    losses = np.array([r["loss"] for r in trained.history])
    assert np.isfinite(losses).all()
    first, last = losses[:20].mean(), losses[-20:].mean()
    assert last < 0.5 * first, (first, last)


def test_rollouts_reproduce_stationary_variance(trained):
    from biomd_core.demo import generated_variance

    quality = generated_variance(trained, n_replicas=64, n_coarse=20)
    assert 0.8 <= quality["variance_ratio"] <= 1.2, quality
    # No pair is far off either (loose: 64 replicas of one rollout are a noisy estimate).
    assert all(0.6 <= r <= 1.4 for r in quality["variance_ratio_per_pair"]), quality


def test_trained_model_survives_checkpoint_and_torchscript(trained, tmp_path):
    from biomd_core.export import script_network
    from biomd_core.io import load_model, save_model

    loaded = load_model(save_model(trained.model, tmp_path / "m.safetensors"))
    assert loaded.weights_hash() == trained.model.weights_hash()
    assert script_network(loaded) is not None


def test_window_sampler_tasks_and_strides():
    process = HarmonicParticles.square(3)
    data = process.trajectories(2, 60, 1.0, seed=1)
    time = TimeConfig(frame_interval_ps=1.0, coarse_stride=4, history_frames=2, block_frames=3)
    sampler = WindowSampler(TrajectorySet(data, [0, 0]), 3, time, TrainingConfig(fine_fraction=0.5))
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(60):
        rows, frames, plan = sampler.batch(4, rng)
        assert frames.shape == (4, plan.n_frames, 3, 3)
        interval = plan.t_ps[1] - plan.t_ps[0]
        seen.add((plan.n_frames, interval, len(plan.known_frames), bool(plan.known_atoms)))
        # Each window is a real slice of one trajectory at the plan's stride.
        stride = int(round(interval / time.frame_interval_ps))
        match = [
            any(np.array_equal(frames[0].numpy(), d[s : s + (plan.n_frames - 1) * stride + 1 : stride]) for s in range(len(d)))
            for d in data
        ]
        assert any(match)
    assert (time.coarse_stride + 1, 1.0, 2, False) in seen  # fine interpolation windows
    assert any(n == 5 and dt == 4.0 for n, dt, _, _ in seen)  # coarse windows
    assert any(inp for *_, inp in seen)  # inpainting


def test_too_short_trajectories_are_refused_with_advice():
    data = [np.zeros((5, 2, 3), np.float32)]
    with pytest.raises(ValueError, match="long enough"):
        WindowSampler(TrajectorySet(data, [0]), 2, TimeConfig(1.0, 10, 1, 4), TrainingConfig())
    with pytest.raises(ValueError, match="NaN"):
        TrajectorySet([np.full((50, 2, 3), np.nan, np.float32)], [0])
