"""Training windows: slices of trajectories plus the task that says what is known.

Coarse windows take every ``k``-th frame (``history + block`` frames) and train
forecasting, autoregressive extension, transition paths and inpainting; fine
windows take ``k + 1`` consecutive frames and train interpolation between two
coarse frames.  One batch shares one :class:`WindowPlan`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..config import TimeConfig, TrainingConfig
from ..sampling import schedules
from ..sampling.schedules import WindowPlan


@dataclass
class TrajectorySet:
    """Trajectories of one or more systems.

    Attributes
    ----------
    frames : list of ``[F_i, N_i, 3]`` float32 arrays, nm, frame interval Δt
    system_index : for each trajectory, the row of its system in the ``SystemBatch``
    """

    frames: list[np.ndarray]
    system_index: list[int]

    def __post_init__(self) -> None:
        if len(self.frames) != len(self.system_index):
            raise ValueError("one system index per trajectory is needed")
        for i, f in enumerate(self.frames):
            if f.ndim != 3 or f.shape[-1] != 3:
                raise ValueError(f"trajectory {i} has shape {f.shape}; expected [frames, atoms, 3]")
            if not np.isfinite(f).all():
                raise ValueError(f"trajectory {i} contains NaN or infinite coordinates")


class WindowSampler:
    """Draws batches of training windows.

    Parameters
    ----------
    data : the trajectories
    n_atoms : padded atom count ``N`` of the system batch
    time : Δt, k, history h, block j
    training : task mixture and fine-window share
    """

    def __init__(self, data: TrajectorySet, n_atoms: int, time: TimeConfig, training: TrainingConfig) -> None:
        self.data = data
        self.n_atoms = n_atoms
        self.time = time
        self.training = training
        self.coarse_len = time.history_frames + time.block_frames
        self.coarse_span = (self.coarse_len - 1) * time.coarse_stride + 1
        lengths = np.array([len(f) for f in data.frames])
        if not (lengths >= self.coarse_span).any():
            raise ValueError(
                f"no trajectory is long enough for a coarse window of {self.coarse_span} frames "
                f"(longest has {lengths.max()}); use longer trajectories or a smaller stride/block"
            )
        self.lengths = lengths
        names = sorted(training.task_weights)
        weights = np.array([training.task_weights[n] for n in names], dtype=float)
        self.task_names = [n for n, w in zip(names, weights) if w > 0]
        self.task_probs = weights[weights > 0] / weights[weights > 0].sum()

    def plan(self, rng: np.random.Generator) -> tuple[WindowPlan, int]:
        """A task for the next batch and the stride (in frames) of its window."""
        t = self.time
        if t.coarse_stride > 1 and rng.random() < self.training.fine_fraction:
            return schedules.interpolate(t.coarse_stride - 1, t.frame_interval_ps), 1
        return self._coarse_plan(rng), t.coarse_stride

    def _coarse_plan(self, rng: np.random.Generator) -> WindowPlan:
        t = self.time
        task = rng.choice(self.task_names, p=self.task_probs)
        interval = t.coarse_interval_ps
        new = self.coarse_len - 1
        if task == "forecast":
            return schedules.forecast(new, interval)
        if task == "autoregressive":
            history = int(rng.integers(1, t.history_frames + 1))
            return schedules.autoregressive_block(history, self.coarse_len - history, interval)
        if task == "tps":
            return schedules.transition_path(new - 1, interval)
        n_known = int(rng.integers(1, max(2, self.n_atoms // 2) + 1))
        atoms = rng.choice(self.n_atoms, size=n_known, replace=False)
        return schedules.inpaint(new, interval, tuple(sorted(int(a) for a in atoms)))

    def batch(self, batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, torch.Tensor, WindowPlan]:
        """``(system_rows [B], frames [B, T, N, 3] nm float32, plan)``; frames zero-padded to ``N`` atoms."""
        plan, stride = self.plan(rng)
        span = (plan.n_frames - 1) * stride + 1
        eligible = np.flatnonzero(self.lengths >= span)
        traj = rng.choice(eligible, size=batch_size)
        out = np.zeros((batch_size, plan.n_frames, self.n_atoms, 3), dtype=np.float32)
        for row, i in enumerate(traj):
            start = int(rng.integers(0, self.lengths[i] - span + 1))
            window = self.data.frames[i][start : start + span : stride]
            out[row, :, : window.shape[1]] = window
        rows = np.array([self.data.system_index[i] for i in traj])
        return rows, torch.from_numpy(out), plan
