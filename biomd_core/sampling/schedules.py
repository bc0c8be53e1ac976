"""Schedules: which entries of a window are known, and when each frame is.

A :class:`WindowPlan` describes one window of ``T`` frames: each frame's time
relative to the anchor (ps), which frames are known in full, which atoms are
known in every frame (inpainting) and which known frame is the anchor (the
start frame the network is conditioned on).  One model serves every plan.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class WindowPlan:
    """One window of a generation task.

    Attributes
    ----------
    t_ps : frame times relative to the anchor frame, ps (length T)
    known_frames : indices of frames given in full
    anchor_index : the known frame that conditions the network (rel origin)
    known_atoms : atom indices given in *every* frame (inpainting), or ``()``
    """

    t_ps: tuple[float, ...]
    known_frames: tuple[int, ...]
    anchor_index: int
    known_atoms: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.anchor_index not in self.known_frames:
            raise ValueError("the anchor frame must be a known frame")
        if not all(0 <= i < len(self.t_ps) for i in self.known_frames):
            raise ValueError(f"known frame indices {self.known_frames} outside a window of {len(self.t_ps)} frames")

    @property
    def n_frames(self) -> int:
        return len(self.t_ps)

    def known_mask(self, n_atoms: int) -> torch.Tensor:
        """``[T, N]`` bool: True where the entry is given."""
        mask = torch.zeros(self.n_frames, n_atoms, dtype=torch.bool)
        mask[list(self.known_frames)] = True
        if self.known_atoms:
            mask[:, list(self.known_atoms)] = True
        return mask

    def times(self, batch: int) -> torch.Tensor:
        """``[B, T]`` float32 frame times, ps."""
        return torch.tensor(self.t_ps, dtype=torch.float32).expand(batch, -1)


def _grid(n_frames: int, interval_ps: float, origin_index: int = 0) -> tuple[float, ...]:
    return tuple((i - origin_index) * interval_ps for i in range(n_frames))


def forecast(n_new: int, interval_ps: float) -> WindowPlan:
    """Start frame known; ``n_new`` frames after it, ``interval_ps`` apart."""
    return WindowPlan(_grid(n_new + 1, interval_ps), (0,), 0)


def autoregressive_block(history: int, block: int, interval_ps: float) -> WindowPlan:
    """``history`` known frames, then ``block`` new ones; the anchor is the latest known frame."""
    if history < 1:
        raise ValueError("an autoregressive block needs at least one history frame")
    return WindowPlan(_grid(history + block, interval_ps, history - 1), tuple(range(history)), history - 1)


def interpolate(n_between: int, interval_ps: float) -> WindowPlan:
    """Two known anchors with ``n_between`` frames between them (fine level of the hierarchy)."""
    return WindowPlan(_grid(n_between + 2, interval_ps), (0, n_between + 1), 0)


def transition_path(n_between: int, interval_ps: float) -> WindowPlan:
    """Two given end states (e.g. bound and unbound) and ``n_between`` frames joining them.

    Structurally an interpolation, but over coarse, long time gaps.
    """
    return interpolate(n_between, interval_ps)


def inpaint(n_new: int, interval_ps: float, known_atoms: tuple[int, ...] | list[int]) -> WindowPlan:
    """Start frame known, and ``known_atoms`` known in every later frame too."""
    return WindowPlan(_grid(n_new + 1, interval_ps), (0,), 0, tuple(int(a) for a in known_atoms))


SCHEDULES = {
    "forecast": forecast,
    "autoregressive": autoregressive_block,
    "interpolate": interpolate,
    "tps": transition_path,
    "inpaint": inpaint,
}
