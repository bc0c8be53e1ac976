"""``GenerativePropagator``: ``simulation.step(n)`` by generative jumps.

One *cycle* advances the simulation by a gated jump and hands it back::

    jump (J steps of generated frames) → hand-back (minimise, velocities,
    uncounted thermalisation) → relax MD (m counted steps, 0 by default)

``step(n)`` runs cycles while ``J + m`` steps remain, then one shorter jump
of whole model frames if one fits, then plain MD for the rest, so exactly
``n`` steps pass.  Inside a jump the propagator drives the
Context itself: the last frame is handed back (:mod:`.handback`), and each
reporter due at a step inside the jump is called at that step with the frame
for that step (``currentStep`` and ``context.getTime()`` set exactly), the
Context's handed-back state put back afterwards.  (Hand-back first, so that
it runs beside the frame MD of the reported frames, and each report as soon
as its frame is done.  Neither depends on the other: the reports set
positions, step, seeded velocities and the jump's box and step no integrator,
and the hand-back sets all of them anew, so frames and files are those of
reports first.)  A jump
the gate shortens covers fewer steps (the loop goes on); a jump of which
nothing survives is replaced by plain MD for its first coarse interval
(``fallback``).  The Context only ever sees accepted, relaxed frames.

Frames reported inside a jump carry velocities drawn at the bath temperature
(generated frames ``Δt`` apart have no meaningful finite-difference velocity);
in explicit solvent the unmodelled atoms stay where they were at the start of
the jump until the hand-back relaxes them, so energies reported inside a jump
are those of the generated solute in the old solvent.

Units: steps, ps, nm, K.
"""

from __future__ import annotations

import base64
import io
import json
import os
import time
import zipfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import openmm
import openmm.unit as unit
import torch

from biomd_core.sampling import HierarchicalSampler, SolverConfig
from biomd_core.sampling.steering import SteeredModel, SteeringConfig

from ..affinity import pinned_to_cpu
from ..data.md import replica_seed
from .compatibility import check_compatibility
from .gate import EnergyReference, GateConfig, PhysicsGate
from .generation import JumpGenerator
from .handback import (
    HandBackConfig,
    add_solute_restraint,
    hand_back,
    integrator_temperature,
    set_positions,
    uncounted_steps,
)
from .model_source import model_label, resolve_model
from .reporting import emit_reports, plan_reports
from .solute_system import build_solute_system, rigid_bonds
from .thermalize import FrameThermalizer

CHECKPOINT_FORMAT = "biomd-propagator-checkpoint"
CHECKPOINT_VERSION = 1


class PropagatorCheckpointError(RuntimeError):
    """A propagator checkpoint cannot be used with this simulation or model."""


@dataclass
class PropagatorStatistics:
    """Counters of a propagator's life (steps are integrator steps)."""

    jumps_attempted: int = 0
    jumps_accepted: int = 0
    jumps_shortened: int = 0
    jumps_fallback: int = 0
    retries: int = 0
    rejections: dict = field(default_factory=dict)
    generated_steps: int = 0
    relax_md_steps: int = 0
    fallback_md_steps: int = 0
    remainder_md_steps: int = 0
    uncounted_relaxation_steps: int = 0
    frame_md_steps: int = 0
    generation_wall_s: float = 0.0
    handback_wall_s: float = 0.0
    md_wall_s: float = 0.0
    frame_md_wall_s: float = 0.0  # beyond the hand-back, which runs beside it
    report_wall_s: float = 0.0

    @classmethod
    def from_dict(cls, stored: dict) -> "PropagatorStatistics":
        """The counters of a checkpoint, each checked for its type (an edited one failed later, in arithmetic)."""
        statistics = cls(**stored)
        for counter in fields(cls):
            value = getattr(statistics, counter.name)
            if counter.type == "dict":
                ok = isinstance(value, dict)
            else:
                ok = isinstance(value, int if counter.type == "int" else (int, float)) and not isinstance(value, bool)
            if not ok:
                kind = {"int": "a whole number", "dict": "a mapping"}.get(counter.type, "a number")
                raise TypeError(f"statistics.{counter.name} is {value!r}, not {kind}")
        return statistics

    def to_dict(self, timestep_ps: float) -> dict:
        out = asdict(self)
        for name in ("generated", "relax_md", "fallback_md", "remainder_md"):
            out[f"{name}_ps"] = getattr(self, f"{name}_steps") * timestep_ps
        out["acceptance"] = self.jumps_accepted / self.jumps_attempted if self.jumps_attempted else None
        return out


def _default_seed_from(generator: torch.Generator) -> int:
    return int(torch.randint(1, 2**31 - 1, (1,), generator=generator))


class GenerativePropagator:
    """Advance an ``openmm.app.Simulation`` with generative jumps.

    Parameters
    ----------
    simulation : the user's Simulation (reporters, integrator, platform as they are)
    model : a shipped model name, a ``.safetensors`` checkpoint, an exported
        TorchScript ``velocity_net.pt`` or a loaded model
    selection : modelled atoms (featurisation selection; default the solute)
    jump_ps : generative time per jump (default one autoregressive block,
        ``block_frames · k · Δt``); a whole number of model frames and of
        integrator steps
    solver, ode_steps : ODE integration of the flow
    steering : physics steering of the sampler towards what the gate accepts
        (:class:`biomd_core.sampling.steering.SteeringConfig`); default off (the shipped alanine
        model's frames pass the gate without it)
    gate : :class:`~.gate.GateConfig`
    handback : :class:`~.handback.HandBackConfig`
    retries : re-draws of a failing piece of a jump before it is shortened
    seed : seeds the propagator's random stream (noise, velocities)
    energy_reference : gate energy statistics; default: stored with the model
        for this system, else calibrated from short MD of a copy of the Context
    calibration_frames, calibration_interval_steps : that calibration MD
    allow_transfer : use the model on a system it was not trained on
    temperature_k : bath temperature when the integrator has none
    log_file : JSON-lines file receiving one record per jump (:meth:`load_checkpoint` cuts it back to the
        records the checkpoint had seen)
    ligand_sdf, ligand_residues : ligand chemistry for featurisation
    device : where the network runs (default: the Context's device)
    openmm_cpu : the core the Simulation's (single-thread CPU) Context was created on, pinned
        (:mod:`openmm_biomd.affinity`); the propagator then drives the Context from that core too (reports,
        hand-back, MD), restoring the calling thread's CPU mask after each.  Default ``None``: no pinning
    """

    def __init__(
        self,
        simulation: Any,
        model: Any,
        *,
        selection: Any = "solute",
        jump_ps: float | None = None,
        solver: str = "heun",
        ode_steps: int = 10,
        steering: SteeringConfig | None = None,
        gate: GateConfig = GateConfig(),
        handback: HandBackConfig = HandBackConfig(),
        retries: int = 3,
        seed: int = 0,
        energy_reference: EnergyReference | None = None,
        calibration_frames: int = 50,
        calibration_interval_steps: int = 250,
        allow_transfer: bool = False,
        temperature_k: float | None = None,
        log_file: str | os.PathLike | None = None,
        ligand_sdf: Any = None,
        ligand_residues: Any = None,
        device: str | torch.device | None = None,
        openmm_cpu: int | None = None,
    ) -> None:
        self.simulation = simulation
        self.openmm_cpu = openmm_cpu
        self.context = simulation.context
        device = device or _device_for(self.context)
        self.model = resolve_model(model, device)
        self.model_label = model_label(self.model)
        self.model_hash = self.model.weights_hash()
        self.time = self.model.time
        self.timestep_ps = float(simulation.integrator.getStepSize().value_in_unit(unit.picosecond))
        self.steps_per_frame = _whole(self.time.frame_interval_ps / self.timestep_ps,
                                      f"the model's frame interval {self.time.frame_interval_ps} ps",
                                      f"integrator steps of {self.timestep_ps} ps")
        self.temperature_k = temperature_k or integrator_temperature(simulation.integrator)
        if self.temperature_k is None:
            raise ValueError("the integrator has no temperature: pass temperature_k= (the bath temperature, K)")
        positions = self._positions()
        self.graph = self.model.featurize(simulation.topology, selection=selection, positions_nm=positions,
                                          ligand_sdf=ligand_sdf, ligand_residues=ligand_residues)
        check_compatibility(self.model, self.graph, allow_transfer=allow_transfer)
        self.modelled = np.asarray(self.graph.atom_indices, dtype=np.int64)
        jump_ps = self.time.block_frames * self.time.coarse_interval_ps if jump_ps is None else float(jump_ps)
        self.jump_steps = _whole(jump_ps / self.timestep_ps, f"jump_ps={jump_ps}", f"{self.timestep_ps} ps steps")
        _whole(self.jump_steps / self.steps_per_frame, f"jump_ps={jump_ps}",
               f"model frames of {self.time.frame_interval_ps} ps")
        self.coarse_steps = self.time.coarse_stride * self.steps_per_frame
        self.handback = handback
        self.retries = retries
        self.seed = seed
        self._rng = torch.Generator().manual_seed(seed)
        self.statistics = PropagatorStatistics()
        self.records: list[dict] = []
        self.log_file = Path(log_file) if log_file else None

        solute = build_solute_system(simulation.system, self.modelled)
        self.gate = PhysicsGate(solute, self.graph.bonds, self.graph.element_labels, positions[self.modelled], gate)
        self.gate.energy_reference = self._find_energy_reference(energy_reference)
        self._calibration = (calibration_frames, calibration_interval_steps)
        # generated frames already satisfy the System's constraints among modelled atoms (as after an MD step)
        bound = self.model.bind(self.graph)
        if steering is not None and steering.strength:
            bound = SteeredModel(bound, self.gate.geometry_prior(), steering)
        sampler = HierarchicalSampler(bound, self.time, SolverConfig(solver, ode_steps),
                                      constraints=rigid_bonds(simulation.system, self.modelled))
        self.generator = JumpGenerator(sampler, self.gate, self.steps_per_frame, retries)
        self._history = positions[self.modelled][None]
        unmodelled = _has_unmodelled_atoms(simulation.system, self.modelled)
        self.thermalizer = self._frame_thermalizer(unmodelled)  # before the restraint changes the System
        with pinned_to_cpu(openmm_cpu):  # reinitialize() rebuilds the Context, perhaps with new threads
            self.restraint = add_solute_restraint(simulation, self.modelled, positions) if unmodelled else None
        self._busy = False
        self._pending_checkpoints: list = []
        # (counter name, start step) of the plain MD running outside a cycle, so that a checkpoint a
        # reporter writes in the middle of it counts the steps already done (see _state)
        self._md_progress: tuple[str, int] | None = None

    # -- set-up helpers ----------------------------------------------------------
    def _frame_thermalizer(self, unmodelled: bool) -> FrameThermalizer | None:
        if not self.handback.frame_md_steps:
            return None
        if unmodelled:
            raise ValueError("HandBackConfig.frame_md_steps needs every atom of the System modelled (implicit "
                             "solvent or vacuum): in explicit solvent a reported frame holds the water of the "
                             "jump's start around the new solute, and MD of that is not a thermal sample; "
                             "set frame_md_steps=0 (biomd run: --frame-md-steps 0)")
        platform = self.context.getPlatform()
        workers = self.handback.frame_md_workers
        if not workers:  # one single-thread Context per core on the CPU (at most 8: a jump has ~80 frames)
            workers = min(os.cpu_count() or 1, 8) if platform.getName() == "CPU" else 1
        return FrameThermalizer(self.simulation.system, self.temperature_k, self.timestep_ps,
                                self.handback.frame_md_steps, self.handback.frame_md_refresh_steps,
                                platform=platform, workers=workers, pin=platform.getName() == "CPU")

    def _positions(self) -> np.ndarray:
        state = self.context.getState(getPositions=True, enforcePeriodicBox=False)
        return state.getPositions(asNumpy=True).value_in_unit(unit.nanometer).astype(np.float64)

    def _find_energy_reference(self, given: EnergyReference | None) -> EnergyReference | None:
        if given is not None:
            if not self.gate.reference_matches(given):
                raise ValueError("the energy_reference given was measured with another gate energy model "
                                 "or minimisation; calibrate it for this system")
            return given
        stored = self.model.provenance.get("gate_reference", {}).get(self.gate.solute.key)
        if stored:
            reference = EnergyReference.from_dict(stored)
            if self.gate.reference_matches(reference):
                return reference
        return None

    def calibrate_gate(self, frames_nm: np.ndarray | None = None) -> EnergyReference:
        """Measure the gate's equilibrium energy statistics.

        From ``frames_nm`` ``[T, N_modelled, 3]`` (e.g. an equilibrium MD
        trajectory) if given, else from short MD of a *copy* of the Context:
        the simulation itself does not move.
        """
        if frames_nm is None:
            frames_nm = self._calibration_md()
        source = f"calibrated on {len(frames_nm)} MD frames"
        return self.gate.calibrate(frames_nm, source)

    def _calibration_md(self) -> np.ndarray:
        n_frames, interval = self._calibration
        integrator = openmm.XmlSerializer.clone(self.simulation.integrator)
        context = openmm.Context(self.simulation.system, integrator, self.context.getPlatform())
        try:
            state = self.context.getState(getPositions=True, getVelocities=True, getParameters=True)
            context.setState(state)
            context.setVelocitiesToTemperature(self.temperature_k * unit.kelvin, self.seed + 1)
            frames = []
            for _ in range(n_frames):
                integrator.step(interval)
                pos = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
                frames.append(pos[self.modelled])
        finally:
            del context
        return np.asarray(frames)

    # -- public API ------------------------------------------------------------------
    def step(self, steps: int) -> None:
        """Advance exactly ``steps`` integrator steps.

        Cycles of the configured jump while they fit, then one shorter jump of
        whole model frames if one fits, then plain MD for the remainder (less
        than one model frame plus ``relax_steps``).
        """
        if not isinstance(steps, (int, np.integer)) or steps < 0:
            raise TypeError(f"steps must be a non-negative integer, got {steps!r}")
        end = self.simulation.currentStep + int(steps)
        relax, spf = self.handback.relax_steps, self.steps_per_frame
        while (left := end - self.simulation.currentStep) >= relax + spf:
            # the configured jump, or the longest whole-frame jump that still fits
            self._cycle(min(self.jump_steps, (left - relax) // spf * spf))
        remainder = end - self.simulation.currentStep
        if remainder:
            self._md(remainder, "remainder_md_steps")

    def jump(self, jump_ps: float | None = None) -> dict:
        """One cycle: a gated jump of ``jump_ps`` (default the configured jump), hand-back, relax MD.

        Returns the jump's record (outcome, steps, retries, rejections, timings).
        """
        steps = self.jump_steps if jump_ps is None else _whole(
            float(jump_ps) / self.timestep_ps, f"jump_ps={jump_ps}", f"{self.timestep_ps} ps steps")
        _whole(steps / self.steps_per_frame, f"jump_ps={jump_ps}", f"model frames of {self.time.frame_interval_ps} ps")
        return self._cycle(steps)

    def restart(self, seed: int) -> None:
        """Forget the frame history and reseed the random stream.

        The next jump then depends on the current frame and ``seed`` only
        (what a Markov-chain move needs, see :mod:`.mcmc`).
        """
        self._rng.manual_seed(int(seed))
        self._history = self._history[-1:].copy()  # [1, N_modelled, 3]; the frame is replaced by the jump

    def physical_md(self, steps: int) -> None:
        """Plain MD through the stock ``simulation.step`` (counted as MD in the statistics)."""
        self._md(int(steps), "remainder_md_steps")

    def summary(self) -> dict:
        """Statistics in steps and ps, plus the model and gate settings."""
        return {
            "model": self.model_label,
            "model_sha256": self.model_hash,
            "jump_steps": self.jump_steps,
            "jump_ps": self.jump_steps * self.timestep_ps,
            "frame_interval_ps": self.time.frame_interval_ps,
            "modelled_atoms": int(len(self.modelled)),
            "energy_reference": self.gate.energy_reference.to_dict() if self.gate.energy_reference else None,
            **self.statistics.to_dict(self.timestep_ps),
        }

    # -- one cycle ---------------------------------------------------------------------
    def _ensure_energy_reference(self) -> None:
        if self.gate.config.check_energy and self.gate.energy_reference is None:
            self.calibrate_gate()

    def _cycle(self, n_steps: int) -> dict:
        self._ensure_energy_reference()
        stats = self.statistics
        stats.jumps_attempted += 1
        start_step = self.simulation.currentStep
        t0 = self.context.getTime().value_in_unit(unit.picosecond)
        base = self._positions()
        history = self._history.copy()
        history[-1] = base[self.modelled]
        plan = plan_reports(self.simulation, start_step, n_steps)
        record: dict[str, Any] = {"step": start_step, "time_ps": t0, "planned_steps": n_steps}
        wall = time.perf_counter()
        self._busy = True
        try:
            jump = self.generator.generate(history, n_steps // self.steps_per_frame, [o for o, _ in plan], self._rng)
            stats.generation_wall_s += time.perf_counter() - wall
            stats.retries += jump.retries
            for reason, count in jump.rejections.items():
                stats.rejections[reason] = stats.rejections.get(reason, 0) + count
            record.update(retries=jump.retries, rejections=dict(jump.rejections), gate_messages=jump.details)
            if jump.n_frames == 0:
                fallback = min(n_steps, self.coarse_steps)
                stats.jumps_fallback += 1
                record.update(outcome="fallback", generated_steps=0, fallback_md_steps=fallback)
                # The fallback MD belongs to the cycle: checkpoints due inside it are deferred to the
                # cycle's end (written by _log), so a resumed run starts on a cycle boundary.
                self._md(fallback, "fallback_md_steps")
                self._busy = False
                return self._log(record, wall)
            horizon = jump.n_frames * self.steps_per_frame
            stats.jumps_accepted += 1
            stats.jumps_shortened += horizon < n_steps
            with pinned_to_cpu(self.openmm_cpu):
                self._report_and_hand_back(base, jump, plan, horizon, start_step, t0)
            stats.generated_steps += horizon
            record.update(outcome="accepted" if horizon == n_steps else "shortened", generated_steps=horizon)
            self._history = np.concatenate([history, jump.coarse])[-self.time.history_frames:]
            # The relax MD belongs to the cycle too (it used to run after _busy was cleared): a
            # checkpoint due inside it was written mid-cycle, with relax_md_steps not yet counted and
            # the history not yet updated, and a run resumed from it started a new jump where the
            # uninterrupted run was still relaxing.  Now it is deferred to the cycle's end.
            self._md(self.handback.relax_steps, "relax_md_steps")
            self._history[-1] = self._positions()[self.modelled]
        finally:
            self._busy = False
        return self._log(record, wall)

    def _report_and_hand_back(self, base: np.ndarray, jump, plan: list, horizon: int, start_step: int,
                              t0: float) -> None:
        """The jump's last frame handed back; then the reporters due inside the jump, each at its step with its
        frame, and the Context's state put back to the hand-back's.

        The hand-back first: with frame MD it runs on this thread while the other workers of the thermaliser
        start on the reported frames (it needs none of them, and they need nothing of the Context), and each
        frame's reporters are called as soon as it and the frames before it are done, between this thread's
        own frames.  Frames and files are those of reports first: the reports set positions, step, seeded
        velocities and the jump's box and step no integrator, and the hand-back sets all of them anew.
        """
        box = self.context.getState().getPeriodicBoxVectors()  # the jump's (a barostat may act in the hand-back)
        plan = [(offset, due) for offset, due in plan if offset <= horizon]
        reported = []
        for offset, _ in plan:
            reported.append(base.copy())
            reported[-1][self.modelled] = jump.frames[offset]
        end = base.copy()
        end[self.modelled] = jump.frames[horizon]
        step, time_ps = start_step + horizon, t0 + horizon * self.timestep_ps
        handed_back: list = []  # the Context's state after the hand-back, taken before the first report
        report_wall = [0.0]

        def report(i: int, frame: np.ndarray) -> None:
            wall = time.perf_counter()
            if not handed_back:
                handed_back.append(self.context.getState(getPositions=True, getVelocities=True, getParameters=True))
                self.context.setPeriodicBoxVectors(*box)
            offset, due = plan[i]
            self._place(frame, start_step + offset, t0 + offset * self.timestep_ps)
            emit_reports(self.simulation, due)
            report_wall[0] += time.perf_counter() - wall

        wall, handback_before = time.perf_counter(), self.statistics.handback_wall_s
        try:
            if self.thermalizer is None or not plan:
                self._hand_back(end, step, time_ps)
                for i, frame in enumerate(reported):
                    report(i, frame)
            else:
                # the frame at step s gets the seed replica_seed(run seed, s), whichever worker runs it
                self.thermalizer.many(reported, [replica_seed(self.seed, start_step + o) for o, _ in plan],
                                      beside=lambda: self._hand_back(end, step, time_ps), each=report)
                self.statistics.frame_md_steps += self.thermalizer.steps * len(plan)
                # what the frame MD added to the wall time beyond the hand-back and reports it ran beside
                self.statistics.frame_md_wall_s += (time.perf_counter() - wall - report_wall[0]
                                                    - (self.statistics.handback_wall_s - handback_before))
        finally:
            if handed_back:  # also after a failing reporter: the Context holds the handed-back state
                self.context.setState(handed_back[0])
                self.context.setStepCount(step)
                self.context.setTime(time_ps)
            self.statistics.report_wall_s += report_wall[0]

    def _hand_back(self, positions: np.ndarray, step: int, time_ps: float) -> None:
        """:func:`~.handback.hand_back` of the whole-System ``positions [N_total, 3]`` nm at ``step`` / ``time_ps``."""
        handback_start = time.perf_counter()
        self.context.setStepCount(step)
        self.context.setTime(time_ps)
        hand_back(self.simulation, positions, config=self.handback, temperature_k=self.temperature_k,
                  seed=_default_seed_from(self._rng), restraint=self.restraint, modelled=self.modelled)
        self.statistics.uncounted_relaxation_steps += uncounted_steps(self.handback, self.restraint is not None)
        self.statistics.handback_wall_s += time.perf_counter() - handback_start

    def _place(self, positions: np.ndarray, step: int, time_ps: float) -> None:
        """Put one reported frame ``[N_total, 3]`` nm into the Context at ``step`` / ``time_ps`` for reporters."""
        set_positions(self.context, positions, self.simulation.system.getNumConstraints() > 0,
                      self.handback.constraint_tolerance)
        self.context.setStepCount(step)
        self.context.setTime(time_ps)
        # a seed fixed by (seed, step), not drawn from the generative stream: adding a reporter on the
        # model's frame grid must not change the trajectory
        self.context.setVelocitiesToTemperature(self.temperature_k * unit.kelvin, replica_seed(self.seed, step))

    def _md(self, steps: int, counter: str) -> None:
        if steps <= 0:
            return
        wall = time.perf_counter()
        self._md_progress = (counter, int(self.simulation.currentStep))
        try:
            with pinned_to_cpu(self.openmm_cpu):
                self.simulation.step(steps)
        finally:
            self._md_progress = None
        self.statistics.md_wall_s += time.perf_counter() - wall
        setattr(self.statistics, counter, getattr(self.statistics, counter) + steps)
        self._flush_pending_checkpoints()

    def _log(self, record: dict, wall_start: float) -> dict:
        record["wall_s"] = time.perf_counter() - wall_start
        self.records.append(record)
        if self.log_file is not None:
            with open(self.log_file, "a") as fh:
                fh.write(json.dumps(record) + "\n")
        self._flush_pending_checkpoints()
        return record

    # -- checkpoints ----------------------------------------------------------------------
    def _state(self) -> dict:
        statistics = asdict(self.statistics)
        if self._md_progress is not None:
            # A reporter writes this checkpoint in the middle of plain MD (remainder or physical_md):
            # count the steps done so far, or the counters of a resumed run fall short of its steps.
            counter, start = self._md_progress
            statistics[counter] += int(self.simulation.currentStep) - start
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "model_sha256": self.model_hash,
            "model": self.model_label,
            "step": int(self.simulation.currentStep),
            "seed": self.seed,
            "rng": base64.b64encode(self._rng.get_state().numpy().tobytes()).decode(),
            "history": {"shape": list(self._history.shape),
                        "data": base64.b64encode(np.ascontiguousarray(self._history).tobytes()).decode()},
            "statistics": statistics,
            "energy_reference": self.gate.energy_reference.to_dict() if self.gate.energy_reference else None,
            "n_records": len(self.records),
            # the jump log as this checkpoint leaves it: a resumed run cuts off what a killed one logged later
            "log": {"name": self.log_file.name, "bytes": self._log_size()} if self.log_file is not None else None,
        }

    def _log_size(self) -> int:
        return self.log_file.stat().st_size if self.log_file.exists() else 0

    def _cut_log(self, logged: dict | None) -> None:
        """Cut the jump log back to what it held when the checkpoint being loaded was written.

        Records logged after that checkpoint (a run killed before its next one) are logged again by
        the resumed run; kept, they would be counted twice.  Only the same log (by name) is cut, and
        only at a line's end.
        """
        if self.log_file is None or not isinstance(logged, dict) or logged.get("name") != self.log_file.name:
            return
        size = logged.get("bytes")
        if not isinstance(size, int) or not 0 <= size < self._log_size():
            return
        with open(self.log_file, "rb+") as fh:
            if size > 0:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":
                    return
            fh.truncate(size)

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Write OpenMM's checkpoint and the propagator's state into one file, atomically.

        The file is a zip holding ``openmm.chk`` (``Context.createCheckpoint``,
        untouched) and ``propagator.json`` (random stream, frame history,
        statistics, model hash).  Inside a cycle (jump, hand-back, relax or
        fallback MD) the write is deferred to the end of the cycle, so a
        checkpoint always holds a physical state on a cycle boundary and a run
        resumed from it repeats the uninterrupted run.
        """
        if self._busy:
            if Path(path) not in self._pending_checkpoints:  # one write per file, not one per due report
                self._pending_checkpoints.append(Path(path))
            return
        path = Path(path)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as zf:
            zf.writestr("openmm.chk", self.context.createCheckpoint())
            zf.writestr("propagator.json", json.dumps(self._state()))
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(buffer.getvalue())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def load_checkpoint(self, path: str | os.PathLike) -> dict:
        """Restore a checkpoint written by :meth:`save_checkpoint`; returns the stored state.

        Everything is read and validated before the Context is touched, so a
        damaged file raises :class:`PropagatorCheckpointError` and leaves the
        simulation as it was.
        """
        path = Path(path)
        try:
            with zipfile.ZipFile(path) as zf:
                chk = zf.read("openmm.chk")
                state = json.loads(zf.read("propagator.json"))
        except (OSError, KeyError, zipfile.BadZipFile, ValueError) as exc:  # ValueError: bad JSON or encoding
            raise PropagatorCheckpointError(f"{path} is not a readable propagator checkpoint: {exc}") from exc
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise PropagatorCheckpointError(f"{path} is not a propagator checkpoint")
        if state.get("model_sha256") != self.model_hash:
            raise PropagatorCheckpointError(
                f"{path} was written with model {state.get('model')} "
                f"(sha256 {str(state.get('model_sha256'))[:12]}…), not {self.model_label} "
                f"({self.model_hash[:12]}…): resume with the same model")
        # Parse the propagator's part first: a damaged field used to surface as a bare KeyError /
        # RuntimeError *after* OpenMM had already loaded its half of the checkpoint.
        try:
            rng = torch.frombuffer(bytearray(base64.b64decode(state["rng"], validate=True)), dtype=torch.uint8)
            torch.Generator().set_state(rng)  # validates the random stream's state
            shape = tuple(int(n) for n in state["history"]["shape"])
            history = np.frombuffer(base64.b64decode(state["history"]["data"], validate=True),
                                    dtype=np.float64).reshape(shape).copy()
            statistics = PropagatorStatistics.from_dict(state["statistics"])
            seed = int(state["seed"])
            reference = EnergyReference.from_dict(state["energy_reference"]) if state.get("energy_reference") else None
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise PropagatorCheckpointError(f"{path} is a damaged propagator checkpoint: {exc!r}") from exc
        if history.ndim != 3 or history.shape[1:] != (len(self.modelled), 3):
            raise PropagatorCheckpointError(
                f"{path} holds a frame history of shape {history.shape}, but this simulation models "
                f"{len(self.modelled)} atoms: it belongs to another system")
        try:
            self.context.loadCheckpoint(chk)
        except Exception as exc:
            raise PropagatorCheckpointError(
                f"OpenMM refused the checkpoint in {path} (it needs the same System, platform and OpenMM "
                f"build): {exc}") from exc
        self._rng.set_state(rng)
        # the run's seed, not this propagator's: the velocities of reported frames and their frame MD are
        # seeded by (seed, step), and a resumed run must report what the uninterrupted one would have
        self.seed = seed
        self._history = history
        self.statistics = statistics
        self._cut_log(state.get("log"))
        if reference is not None and self.gate.reference_matches(reference):
            # (a reference measured with other gate settings is not adopted: it would set a wrong threshold)
            self.gate.energy_reference = reference
        return state

    def _flush_pending_checkpoints(self) -> None:
        pending, self._pending_checkpoints = self._pending_checkpoints, []
        for path in pending:
            self.save_checkpoint(path)


class PropagatorCheckpointReporter:
    """An OpenMM reporter that saves :meth:`GenerativePropagator.save_checkpoint` every ``reportInterval`` steps."""

    def __init__(self, propagator: GenerativePropagator, file: str | os.PathLike, reportInterval: int) -> None:
        self._propagator = propagator
        self._file = Path(file)
        self._interval = int(reportInterval)

    def describeNextReport(self, simulation) -> dict:
        steps = self._interval - simulation.currentStep % self._interval
        return {"steps": steps, "periodic": None, "include": []}

    def report(self, simulation, state) -> None:
        self._propagator.save_checkpoint(self._file)


def _whole(value: float, what: str, unit_text: str) -> int:
    rounded = int(round(value))
    if rounded < 1 or abs(value - rounded) > 1e-6:
        raise ValueError(f"{what} is not a whole number of {unit_text} ({value:g}); choose one that is")
    return rounded


def _has_unmodelled_atoms(system, modelled: np.ndarray) -> bool:
    massive = [i for i in range(system.getNumParticles()) if system.getParticleMass(i).value_in_unit(unit.dalton) > 0]
    return len(set(massive) - set(modelled.tolist())) > 0


def _device_for(context) -> torch.device:
    """CUDA when the Context runs on CUDA and torch sees a GPU, else CPU."""
    if context.getPlatform().getName() == "CUDA" and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")
