"""Hierarchical generation of long trajectories.

Coarse frames every ``k``-th frame come first, block by block
(autoregressive, ``history`` known frames → ``block`` new ones); then the
``k − 1`` frames between each consecutive coarse pair are filled in by
interpolation, all pairs in batches.  Transition paths replace the coarse
rollout by one window joining two given end states.  With ``constraints``
every generated frame is projected onto the system's constrained bond lengths
before it is used as history or returned (:mod:`.constraints`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import TimeConfig
from . import schedules
from .constraints import RigidBonds
from .schedules import WindowPlan
from .solvers import SolverConfig
from .window import TrajectoryModel, sample_window


@dataclass
class HierarchicalSampler:
    """Coarse autoregressive rollout, then fine interpolation.

    Attributes
    ----------
    model : a :class:`~biomd_core.sampling.window.TrajectoryModel`
    time : Δt, stride k, history h and block j the model was trained for
    solver : ODE/SDE settings
    max_batch : windows integrated at once in the fine stage (bounds memory)
    constraints : bond lengths every generated frame is projected onto (``None``: raw network output)
    """

    model: TrajectoryModel
    time: TimeConfig
    solver: SolverConfig = SolverConfig()
    max_batch: int = 64
    constraints: RigidBonds | None = None

    def sample_window(
        self, plan: WindowPlan, frames_nm: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """:func:`~.window.sample_window` with this sampler's model and solver, generated frames projected
        onto ``constraints``; known entries are returned bit-exact."""
        out = sample_window(self.model, plan, frames_nm, self.solver, generator)
        if self.constraints is None:
            return out
        known = set(plan.known_frames)
        generated = [f for f in range(plan.n_frames) if f not in known]
        out[:, generated] = self.constraints.project(out[:, generated], fixed_atoms=plan.known_atoms)
        return out

    def coarse(
        self, start_nm: torch.Tensor, n_coarse: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Roll out ``n_coarse`` coarse frames after the given history.

        Parameters
        ----------
        start_nm : ``[B, H0, N, 3]`` nm, the known frames (latest last), ``k·Δt`` apart;
            ``[B, N, 3]`` is taken as a single start frame

        Returns
        -------
        ``[B, H0 + n_coarse, N, 3]``: the history followed by the new coarse frames.
        """
        frames = start_nm.unsqueeze(1) if start_nm.dim() == 3 else start_nm
        interval = self.time.coarse_interval_ps
        produced = 0
        while produced < n_coarse:
            history = min(self.time.history_frames, frames.shape[1])
            block = min(self.time.block_frames, n_coarse - produced)
            plan = schedules.autoregressive_block(history, block, interval)
            window = torch.cat([frames[:, -history:], frames[:, -1:].expand(-1, block, -1, -1)], dim=1)
            new = self.sample_window(plan, window, generator)[:, history:]
            frames = torch.cat([frames, new], dim=1)
            produced += block
        return frames

    def refine(self, coarse_nm: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Fill ``k − 1`` frames between every consecutive pair of coarse frames.

        ``[B, Tc, N, 3]`` → ``[B, (Tc − 1)·k + 1, N, 3]``; coarse frames are kept bit-exact.
        """
        k = self.time.coarse_stride
        b, tc, n, _ = coarse_nm.shape
        if k == 1 or tc < 2:
            return coarse_nm
        plan = schedules.interpolate(k - 1, self.time.frame_interval_ps)
        left, right = coarse_nm[:, :-1], coarse_nm[:, 1:]  # [B,Tc-1,N,3]
        windows = torch.cat([left.unsqueeze(2).expand(-1, -1, k, -1, -1), right.unsqueeze(2)], dim=2)
        windows = windows.reshape(b * (tc - 1), k + 1, n, 3)
        filled = torch.cat(
            [
                self.sample_window(plan, windows[i : i + self.max_batch], generator)
                for i in range(0, windows.shape[0], self.max_batch)
            ]
        ).view(b, tc - 1, k + 1, n, 3)
        body = filled[:, :, :k].reshape(b, (tc - 1) * k, n, 3)
        return torch.cat([body, coarse_nm[:, -1:]], dim=1)

    def rollout(
        self, start_nm: torch.Tensor, n_coarse: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Full-resolution trajectory from a start frame ``[B, N, 3]``.

        Returns ``[B, n_coarse·k + 1, N, 3]`` frames ``Δt`` apart, frame 0 the start.
        """
        return self.refine(self.coarse(start_nm, n_coarse, generator), generator)

    def transition_path(
        self, start_nm: torch.Tensor, end_nm: torch.Tensor, n_coarse: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Path joining two end states ``[B, N, 3]`` over ``n_coarse`` coarse intervals.

        Returns ``[B, n_coarse·k + 1, N, 3]``, first and last frames bit-exact.
        """
        plan = schedules.transition_path(n_coarse - 1, self.time.coarse_interval_ps)
        window = torch.stack([start_nm] * n_coarse + [end_nm], dim=1)
        coarse = self.sample_window(plan, window, generator)
        return self.refine(coarse, generator)

    def n_coarse_for(self, duration_ps: float) -> int:
        """Coarse steps needed to cover ``duration_ps`` (refused if not a whole number of frames)."""
        frames = duration_ps / self.time.frame_interval_ps
        if abs(frames - round(frames)) > 1e-6:
            raise ValueError(
                f"{duration_ps} ps is not a whole number of {self.time.frame_interval_ps} ps frames"
            )
        return max(1, -(-int(round(frames)) // self.time.coarse_stride))
