"""Whole generation tasks at full resolution, built on the hierarchical sampler.

Each task returns frames ``Δt`` apart, ``[R, F, N, 3]`` nm for ``R`` replicas:

- ``forecast``: from a start frame, for a duration (coarse AR + refinement);
- ``tps``: a path joining two end states over a duration (coarse path + refinement);
- ``interpolate``: frames between two given frames at most ``k·Δt`` apart (one fine window);
- ``inpaint``: atoms given in every frame (e.g. a protein trajectory) and the
  rest generated (coarse AR + refinement, known atoms held in both levels).

Durations must be whole numbers of frames; known entries come back bit-exact.
"""

from __future__ import annotations

import torch

from ..config import TimeConfig
from . import schedules
from .hierarchical import HierarchicalSampler


def n_frames_for(duration_ps: float, time: TimeConfig) -> int:
    """Frames after the start covering ``duration_ps`` (refused unless whole)."""
    frames = duration_ps / time.frame_interval_ps
    if frames < 1 or abs(frames - round(frames)) > 1e-6:
        raise ValueError(
            f"{duration_ps} ps is not a positive whole number of the model's {time.frame_interval_ps} ps frames"
        )
    return int(round(frames))


def n_coarse_intervals_for(duration_ps: float, time: TimeConfig, task: str) -> int:
    """Coarse intervals ``k·Δt`` covering ``duration_ps`` (refused unless whole): ``task`` names what needs them."""
    n = n_frames_for(duration_ps, time)
    if n % time.coarse_stride:
        raise ValueError(
            f"{task} must span whole coarse intervals of {time.coarse_interval_ps:g} ps; got {duration_ps:g} ps"
        )
    return n // time.coarse_stride


def forecast(sampler: HierarchicalSampler, start_nm: torch.Tensor, duration_ps: float, generator=None) -> torch.Tensor:
    """``[R, N, 3]`` start → ``[R, F + 1, N, 3]`` covering ``duration_ps`` (rounded up to coarse steps, then cut)."""
    n = n_frames_for(duration_ps, sampler.time)
    n_coarse = -(-n // sampler.time.coarse_stride)
    return sampler.rollout(start_nm, n_coarse, generator)[:, : n + 1]


def transition_path(
    sampler: HierarchicalSampler, start_nm: torch.Tensor, end_nm: torch.Tensor, duration_ps: float, generator=None
) -> torch.Tensor:
    """Path between two states over ``duration_ps`` (a whole number of coarse intervals)."""
    n_coarse = n_coarse_intervals_for(duration_ps, sampler.time, "a transition path")
    return sampler.transition_path(start_nm, end_nm, n_coarse, generator)


def interpolate(
    sampler: HierarchicalSampler, start_nm: torch.Tensor, end_nm: torch.Tensor, duration_ps: float, generator=None,
) -> torch.Tensor:
    """Frames between two states at most ``k·Δt`` apart, in one fine window."""
    time = sampler.time
    n = n_frames_for(duration_ps, time)
    if n > time.coarse_stride:
        raise ValueError(
            f"interpolation spans at most one coarse interval ({time.coarse_interval_ps} ps); use the tps task for longer"
        )
    plan = schedules.interpolate(n - 1, time.frame_interval_ps)
    window = torch.stack([start_nm] * n + [end_nm], dim=1)
    return sampler.sample_window(plan, window, generator)


def inpaint(
    sampler: HierarchicalSampler, reference_nm: torch.Tensor, known_atoms: list[int], generator=None
) -> torch.Tensor:
    """Generate the atoms not in ``known_atoms`` along a reference trajectory.

    Parameters
    ----------
    reference_nm : ``[R, F, N, 3]`` nm at the model's Δt; frame 0 is the full start,
        later frames only need ``known_atoms`` (the rest is ignored)

    Returns
    -------
    ``[R, F', N, 3]`` with ``F' = F`` cut down to whole coarse intervals (+1).
    """
    time, k = sampler.time, sampler.time.coarse_stride
    n_coarse = (reference_nm.shape[1] - 1) // k
    if n_coarse < 1:
        raise ValueError(f"inpainting needs a reference of at least {k + 1} frames (one coarse interval)")
    known = tuple(int(a) for a in known_atoms)
    coarse_ref = reference_nm[:, : n_coarse * k + 1 : k]
    frames = coarse_ref[:, :1]
    interval = time.coarse_interval_ps
    produced = 0
    while produced < n_coarse:
        history = min(time.history_frames, frames.shape[1])
        block = min(time.block_frames, n_coarse - produced)
        base = schedules.autoregressive_block(history, block, interval)
        plan = schedules.WindowPlan(base.t_ps, base.known_frames, base.anchor_index, known)
        window = torch.cat([frames[:, -history:], coarse_ref[:, produced + 1 : produced + 1 + block]], dim=1)
        frames = torch.cat([frames, sampler.sample_window(plan, window, generator)[:, history:]], dim=1)
        produced += block
    fine_plan = schedules.WindowPlan(
        schedules.interpolate(k - 1, time.frame_interval_ps).t_ps, (0, k), 0, known
    )
    out = [frames[:, :1]]
    for c in range(n_coarse):
        window = reference_nm[:, c * k : (c + 1) * k + 1].clone()
        window[:, 0], window[:, -1] = frames[:, c], frames[:, c + 1]
        out.append(sampler.sample_window(fine_plan, window, generator)[:, 1:])
    return torch.cat(out, dim=1)

