"""Generating one gated jump: coarse blocks, interpolation, sub-grid report frames.

:func:`generate_jump` produces the frames of a jump of ``n_frames`` model
frames (``Δt`` apart) and gates them *piece by piece*, so a bad frame costs a
re-draw of its own piece, not of the whole jump:

- **coarse frames** (every ``k``-th frame) come block by block; a block that
  fails the gate is re-drawn with new noise up to ``retries`` times; when
  every draw fails, the jump keeps the frames before the first failing one
  of the draw that got furthest (not of the last draw, which may fail at
  its first frame where an earlier one passed three).  With
  ``keep_passing_prefix`` a draw's frames before its first failing one are
  kept at once and the next block goes on from them: every frame is then
  the model's draw given the accepted frames before it, refused by the gate
  on its own (as a step of MD would be), where a whole-block re-draw also
  refuses frames that passed for the sake of a later one.  At the
  host–guest model's ~2/3 of frames passing, a four-frame block passes
  whole in ~1/5 of draws, and a draw then yields ~1.6 accepted frames
  against ~0.8;
- **intervals** between consecutive coarse frames are filled by interpolation,
  all intervals in one batch, and every frame is gated on its own; a rejected
  frame (or run of frames) is re-drawn by a small interpolation window between
  its accepted neighbours, all such windows in batches, up to ``retries``
  times (at the shipped alanine model's ~3 % per-frame rejection rate,
  re-drawing whole 20-frame intervals would fail almost every jump);
- **sub-grid frames**: a reporter due at a step between two model frames gets
  a frame generated at that exact time, by an interpolation window whose two
  known ends are the neighbouring model frames (the network is conditioned on
  continuous time offsets in ps).

When a piece still fails after its retries, the jump is *shortened* to the
whole intervals before it; if not even the first interval survives the jump
yields nothing and the caller falls back to plain MD.  Every rejection is
counted by the gate's reason.

All frames returned are the gate's relaxed frames, float64 nm, keyed by their
step offset from the jump's start.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch

from biomd_core.sampling import HierarchicalSampler, schedules

from .gate import PhysicsGate


@dataclass
class GeneratedJump:
    """Result of :func:`generate_jump`.

    Attributes
    ----------
    n_frames : model frames actually covered (``0`` = nothing usable)
    frames : ``{step offset: [N, 3] nm}``, every grid frame ``1..n_frames`` and
        every requested sub-grid frame inside them (relaxed, float64)
    coarse : ``[C, N, 3]`` nm, the accepted coarse frames (for the next history)
    retries : pieces re-drawn
    rejections : ``{gate reason: count}``
    details : first few gate messages, for the log
    """

    n_frames: int
    frames: dict
    coarse: np.ndarray
    retries: int = 0
    rejections: Counter = field(default_factory=Counter)
    details: list = field(default_factory=list)

    def reject(self, verdict) -> None:
        self.rejections[verdict.reason] += 1
        if len(self.details) < 5:
            self.details.append(verdict.detail)


def _subgrid_plan(offsets_ps: tuple, frame_ps: float) -> schedules.WindowPlan:
    t = (0.0, *offsets_ps, frame_ps)
    return schedules.WindowPlan(t, (0, len(t) - 1), 0)


class JumpGenerator:
    """Draws gated jumps for one bound model.

    Parameters
    ----------
    sampler : the hierarchical sampler (model, time grid, solver)
    gate : the physics gate of the modelled atoms
    steps_per_frame : integrator steps per model frame ``Δt``
    retries : re-draws of a failing piece before the jump is shortened
    keep_passing_prefix : keep a refused coarse block's frames before its first failing one and go on
        from them (see the module docstring) instead of re-drawing the whole block
    """

    def __init__(self, sampler: HierarchicalSampler, gate: PhysicsGate, steps_per_frame: int, retries: int = 3,
                 keep_passing_prefix: bool = False):
        self.sampler = sampler
        self.gate = gate
        self.steps_per_frame = steps_per_frame
        self.retries = retries
        self.keep_passing_prefix = keep_passing_prefix

    @property
    def _time(self):
        return self.sampler.time

    def _sample(self, plan, window, generator) -> np.ndarray:
        return self.sampler.sample_window(plan, window, generator).numpy()

    # -- coarse ---------------------------------------------------------------
    def _coarse(self, history: np.ndarray, n_coarse: int, out: GeneratedJump, generator) -> np.ndarray:
        """``history [H, N, 3]`` → accepted coarse frames ``[C ≤ n_coarse, N, 3]`` (relaxed)."""
        frames = [f for f in history]
        new: list[np.ndarray] = []
        interval = self._time.coarse_interval_ps
        while len(new) < n_coarse:
            h = min(self._time.history_frames, len(frames))
            block = min(self._time.block_frames, n_coarse - len(new))
            plan = schedules.autoregressive_block(h, block, interval)
            past = torch.from_numpy(np.stack(frames[-h:]))
            window = torch.cat([past, past[-1:].expand(block, -1, -1)]).unsqueeze(0)
            best, best_keep = None, 0  # the draw with the most frames before its first failing one
            passed = None  # [P, N, 3]: the relaxed frames this block adds
            for attempt in range(self.retries + 1):
                drawn = self._sample(plan, window, generator)[0, h:]
                verdict = self.gate.check(drawn)
                if verdict.accepted:
                    passed = verdict.frames
                    break
                out.reject(verdict)
                if self.keep_passing_prefix and (passed := self._passing_prefix(drawn, verdict, out)) is not None:
                    break
                out.retries += attempt < self.retries
                if (verdict.frame or 0) > best_keep:
                    best, best_keep = drawn, verdict.frame
            if passed is None:
                # keep the frames before the failing one of the draw that got furthest (re-checked as a unit)
                if best_keep and (prefix := self.gate.check(best[:best_keep])).accepted:
                    new.extend(prefix.frames)
                break
            frames.extend(passed)
            new.extend(passed)
        return np.asarray(new).reshape(-1, *history.shape[1:])

    def _passing_prefix(self, drawn: np.ndarray, verdict, out: GeneratedJump) -> np.ndarray | None:
        """The relaxed frames of ``drawn [T, N, 3]`` before its first refused one (``verdict``), or ``None``.

        A refusal after the relaxation carries them; one before it (bonds, overlaps: checked on all frames
        first) leaves the frames before it to be relaxed and judged, which may refuse an earlier one.
        """
        while verdict.frame:
            if verdict.passed_frames is not None:
                return verdict.passed_frames
            drawn = drawn[: verdict.frame]
            verdict = self.gate.check(drawn)
            if verdict.accepted:
                return verdict.frames
            out.reject(verdict)
        return None

    # -- intervals --------------------------------------------------------------
    def _fill_intervals(self, anchors: np.ndarray, n_frames: int, subgrid: dict, out: GeneratedJump,
                        generator) -> int:
        """Interpolate between consecutive anchors, gate frame by frame, repair; returns accepted intervals."""
        n_intervals = len(anchors) - 1
        drawn = self._draw_intervals(anchors, list(range(n_intervals)), n_frames, subgrid, generator)
        timelines = [self._timeline(anchors, c, frames) for c, frames in enumerate(drawn)]
        self._gate_entries([e for line in timelines for e in line[1:-1]], out)
        for attempt in range(self.retries):
            broken = [line for line in timelines if not all(ok for _, _, ok in line)]
            if not broken:
                break
            out.retries += sum(1 for line in broken for _, _, ok in line if not ok)
            self._repair(broken, out, generator)
        accepted = 0
        while accepted < n_intervals and all(ok for _, _, ok in timelines[accepted]):
            out.frames.update({offset: frame for offset, frame, _ in timelines[accepted][1:-1]})
            accepted += 1
        return accepted

    def _timeline(self, anchors: np.ndarray, c: int, frames: dict) -> list:
        """Interval ``c`` as ``[[step offset, frame, ok], ...]`` in time order, anchors (ok) at both ends."""
        span = self._time.coarse_stride * self.steps_per_frame
        inner = [[o, f, None] for o, f in sorted(frames.items())]
        return [[c * span, anchors[c], True], *inner, [(c + 1) * span, anchors[c + 1], True]]

    def _gate_entries(self, entries: list, out: GeneratedJump) -> None:
        """Gate timeline entries, each on its own (relaxed side by side); accepted entries receive their relaxed
        frame."""
        if not entries:
            return
        for entry, verdict in zip(entries, self.gate.check_each(np.stack([entry[1] for entry in entries]))):
            entry[2] = verdict.accepted
            if verdict.accepted:
                entry[1] = verdict.frames[0]
            else:
                out.reject(verdict)

    def _repair(self, timelines: list, out: GeneratedJump, generator) -> None:
        """Re-draw every run of rejected entries between its accepted neighbours (batched by time pattern)."""
        dt_step = self.timestep_ps
        groups: dict[tuple, list] = {}
        for line in timelines:
            i = 1
            while i < len(line) - 1:
                if line[i][2]:
                    i += 1
                    continue
                j = i
                while not line[j][2]:
                    j += 1  # the right anchor is always ok
                left = line[i - 1]
                times = tuple((e[0] - left[0]) * dt_step for e in line[i - 1:j + 1])
                groups.setdefault(times, []).append(line[i - 1:j + 1])
                i = j + 1
        for times, runs in groups.items():
            plan = schedules.WindowPlan(times, (0, len(times) - 1), 0)
            windows = torch.from_numpy(np.stack([np.stack([e[1] if e[2] else run[0][1] for e in run])
                                                 for run in runs]))
            drawn = self._sample(plan, windows, generator)
            for run, frames in zip(runs, drawn):
                for entry, frame in zip(run[1:-1], frames[1:-1]):
                    entry[1] = frame
                self._gate_entries(run[1:-1], out)

    @property
    def timestep_ps(self) -> float:
        return self._time.frame_interval_ps / self.steps_per_frame

    def _draw_intervals(self, anchors: np.ndarray, which: list[int], n_frames: int, subgrid: dict,
                        generator) -> list[dict]:
        """Fine frames (and sub-grid frames) of intervals ``which``; ``{step offset: raw frame}`` each."""
        k, spf, dt = self._time.coarse_stride, self.steps_per_frame, self._time.frame_interval_ps
        left = torch.from_numpy(anchors[which])
        right = torch.from_numpy(anchors[[c + 1 for c in which]])
        if k > 1:
            plan = schedules.interpolate(k - 1, dt)
            windows = torch.cat([left.unsqueeze(1).expand(-1, k, -1, -1), right.unsqueeze(1)], dim=1)
            fine = np.concatenate([self._sample(plan, windows[i:i + self.sampler.max_batch], generator)
                                   for i in range(0, len(which), self.sampler.max_batch)])
        else:
            fine = torch.stack([left, right], dim=1).numpy()
        results = []
        for row, c in enumerate(which):
            frames = {}
            for j in range(1, k):  # the anchors are gated already
                f = c * k + j
                if f <= n_frames:
                    frames[f * spf] = fine[row, j]
            results.append(frames)
        self._add_subgrid(fine, which, n_frames, subgrid, results, generator)
        return results

    def _add_subgrid(self, fine, which, n_frames, subgrid, results, generator) -> None:
        """Generate the sub-grid frames requested inside intervals ``which`` (batched by offset pattern)."""
        k, spf, dt = self._time.coarse_stride, self.steps_per_frame, self._time.frame_interval_ps
        groups: dict[tuple, list] = {}
        for row, c in enumerate(which):
            for j in range(k):
                f = c * k + j  # model frame left of the gap
                if f >= n_frames or f not in subgrid:
                    continue
                groups.setdefault(tuple(subgrid[f]), []).append((row, j, f))
        for rel_steps, members in groups.items():
            plan = _subgrid_plan(tuple(s * dt / spf for s in rel_steps), dt)
            windows = torch.stack([
                torch.from_numpy(np.stack([fine[row, j]] * (len(rel_steps) + 1) + [fine[row, j + 1]]))
                for row, j, _ in members
            ])
            drawn = self._sample(plan, windows, generator)
            for (row, _, f), frames in zip(members, drawn):
                for s, frame in zip(rel_steps, frames[1:-1]):
                    results[row][f * spf + s] = frame

    # -- whole jump ---------------------------------------------------------------
    def generate(self, history: np.ndarray, n_frames: int, report_offsets: list[int],
                 generator: torch.Generator, until=None) -> GeneratedJump:
        """Draw and gate a jump of ``n_frames`` model frames.

        Parameters
        ----------
        history : ``[H, N, 3]`` nm, known coarse frames ``k·Δt`` apart, the last
            one the current state
        n_frames : model frames to cover
        report_offsets : step offsets in ``(0, n_frames·steps_per_frame]`` at
            which a reporter is due (grid offsets need nothing extra)
        until : optional predicate on the accepted coarse frames (``[C, N, 3]`` nm →
            ``[C]`` bool): the jump ends at the first coarse frame for which it holds,
            so no interval beyond it is interpolated (an unbinding path stops at
            its exit; the frames before that coarse frame are all made)
        """
        k, spf = self._time.coarse_stride, self.steps_per_frame
        out = GeneratedJump(0, {}, np.zeros((0, *history.shape[1:])))
        subgrid: dict[int, list[int]] = {}
        for s in sorted(report_offsets):
            if s % spf:
                subgrid.setdefault(s // spf, []).append(s % spf)
        n_coarse = -(-n_frames // k)
        coarse = self._coarse(history, n_coarse, out, generator)
        if until is not None and len(coarse) and (hits := np.flatnonzero(until(coarse))).size:
            coarse = coarse[: hits[0] + 1]
            n_frames = min(n_frames, len(coarse) * k)
        out.coarse = coarse
        if len(coarse) == 0:
            return out
        anchors = np.concatenate([history[-1:], coarse])
        for c, frame in enumerate(coarse, start=1):
            if c * k <= n_frames:
                out.frames[c * k * spf] = frame
        intervals = self._fill_intervals(anchors, n_frames, subgrid, out, generator)
        out.n_frames = min(intervals * k, n_frames)
        horizon = out.n_frames * spf
        out.frames = {s: f for s, f in out.frames.items() if s <= horizon}
        out.coarse = coarse[:intervals]
        # invariant: the last frame is a coarse frame (shortened jump) or a fine one (n_frames not a multiple of k)
        assert out.n_frames == 0 or horizon in out.frames
        return out
