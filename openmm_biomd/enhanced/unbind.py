"""``biomd unbind``: generated ligand dissociation paths from a bound complex.

Each *attempt* starts from a bound frame and rolls the model out
autoregressively and hierarchically — a block of coarse frames (``k·Δt``
apart), then the frames between them by interpolation — exactly as the
propagator's jumps are made (:class:`~openmm_biomd.propagator.generation.JumpGenerator`),
so every frame goes through the same :class:`~openmm_biomd.propagator.PhysicsGate`
(finite, bonds, clashes, relaxation, stereocentres, energy) with re-draws of
rejected pieces.  The rollout stops at the first frame where the ligand has
left the pocket, or at ``max_time_ps``.

**Success criterion** (:class:`Pocket`): the pocket is the receptor heavy atoms
in contact with the ligand in the bound frame (within ``pocket_radius_nm``), or
a user selection; its *radius* is the largest distance of a pocket atom from
the pocket centroid in the bound frame.  A frame is *unbound* when the ligand
centroid is farther than ``radius + margin_nm`` from the pocket centroid —
outside the pocket's own extent by a user-set margin, whatever the pocket's
size.

**Gate energy**: the gate relaxes each frame with the full intramolecular
energy (so a guest pressed into the host is pushed out) but scores it with the
ligand *decoupled* from the receptor (no nonbonded terms between them), so the
energy check compares each partner's own strain and does not reject a frame
for having lost the binding energy.  Overlaps are refused before the
relaxation only when severe (:data:`UNBIND_GATE`), and after it at the usual
threshold.

**Success@k** uses the unbiased estimator ``1 − C(n−c, k)/C(n, k)`` per
starting frame (``n`` attempts, ``c`` successes), averaged over starting
frames; ``success_at_1`` is the plain success fraction.

Layout of ``OUT``::

    OUT/topology.pdb              modelled atoms (what the paths hold)
    OUT/summary.json              settings, atoms, pocket, per-attempt results, totals (rewritten after each)
    OUT/attempt_000/path.dcd      frames Δt apart from the bound start (t = 0)
    OUT/attempt_000/result.json   success, exit time, centroid distances, gate statistics (written last)

Attempts whose ``result.json`` exists are kept when the same command runs
again: a killed run resumes attempt by attempt, and a larger ``attempts``
extends a finished run.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from biomd_core.config import differences, seed_argument
from biomd_core.io.output_folder import claim_output_folder, json_with_keys, refuse_results_without_record

from ..data.frame_checks import check_frames_fit
from ..data.md import _atomic_write_bytes, _atomic_write_json, read_json, replica_seed, require_positive
from ..data.metadynamics import pocket_atoms, select_atoms
from .seeding_common import load_recorded_path, unbind_attempt_remedy

SUMMARY_FORMAT = "biomd-unbind"
#: the files an unbinding run writes into its folder (claimed with biomd_core.io.output_folder)
#: what an attempt's ``result.json`` holds at least (what the run's summary reads from it)
ATTEMPT_RESULT_KEYS = ("attempt", "success", "wall_s", "gate_retries", "gate_rejections", "n_frames")
UNBIND_OUTPUTS = ("summary.json", "topology.pdb", "attempt_[0-9][0-9][0-9]")


# --------------------------------------------------------------------------- success criterion


@dataclass(frozen=True)
class Pocket:
    """Ligand, pocket and the exit distance that defines "unbound".

    Attributes
    ----------
    ligand : ligand atom indices (of the frames this is applied to)
    pocket : pocket atom indices
    radius_nm : largest pocket-atom distance from the pocket centroid, bound frame
    margin_nm : how far beyond that radius the ligand centroid must be
    bound_distance_nm : ligand–pocket centroid distance in the bound frame
    """

    ligand: np.ndarray
    pocket: np.ndarray
    radius_nm: float
    margin_nm: float
    bound_distance_nm: float

    @classmethod
    def from_bound_frame(cls, bound_nm: np.ndarray, ligand: Any, pocket: Any, margin_nm: float) -> "Pocket":
        """Pocket geometry from a bound frame ``[N, 3]`` nm."""
        if not margin_nm >= 0:
            raise ValueError(f"the exit margin must be >= 0 nm, got {margin_nm}")
        ligand, pocket = np.asarray(ligand, dtype=int), np.asarray(pocket, dtype=int)
        if len(ligand) == 0 or len(pocket) == 0:
            raise ValueError("the ligand and the pocket need at least one atom each")
        if set(ligand.tolist()) & set(pocket.tolist()):
            raise ValueError("the pocket selection overlaps the ligand")
        bound = np.asarray(bound_nm, dtype=np.float64)
        centre = bound[pocket].mean(0)
        radius = float(np.linalg.norm(bound[pocket] - centre, axis=1).max())
        pocket_obj = cls(ligand, pocket, radius, float(margin_nm), 0.0)
        d0 = float(pocket_obj.distances(bound[None])[0])
        if d0 > pocket_obj.exit_distance_nm:
            raise ValueError(f"the start frame is already unbound (ligand–pocket centroid distance {d0:.3f} nm > "
                             f"{pocket_obj.exit_distance_nm:.3f} nm): give a bound complex or a larger pocket")
        return cls(ligand, pocket, radius, float(margin_nm), d0)

    @property
    def exit_distance_nm(self) -> float:
        """Ligand–pocket centroid distance beyond which a frame is unbound, nm."""
        return self.radius_nm + self.margin_nm

    def distances(self, frames_nm: np.ndarray) -> np.ndarray:
        """Ligand–pocket centroid distance of frames ``[T, N, 3]`` nm → ``[T]`` nm."""
        f = np.asarray(frames_nm)
        return np.linalg.norm(f[:, self.ligand].mean(1) - f[:, self.pocket].mean(1), axis=-1)

    def unbound(self, frames_nm: np.ndarray) -> np.ndarray:
        """``[T]`` bool: whether each frame's ligand has left the pocket."""
        return self.distances(frames_nm) > self.exit_distance_nm

    def to_dict(self) -> dict:
        return {"ligand_atoms": self.ligand.tolist(), "pocket_atoms": self.pocket.tolist(),
                "pocket_radius_nm": self.radius_nm, "margin_nm": self.margin_nm,
                "exit_distance_nm": self.exit_distance_nm, "bound_distance_nm": self.bound_distance_nm}


def success_at_k(n_attempts: int, n_successes: int, k: int) -> float | None:
    """Unbiased probability that at least one of ``k`` attempts succeeds (``None`` when ``n < k``)."""
    if n_attempts < k:
        return None
    if n_attempts - n_successes < k:
        return 1.0
    return 1.0 - math.comb(n_attempts - n_successes, k) / math.comb(n_attempts, k)


def mean_success_at_k(results: list[dict], k: int) -> float | None:
    """:func:`success_at_k` of each start's attempts (``results``: ``start_index``, ``success``), averaged
    over the starts with at least ``k`` attempts; ``None`` when none has."""
    by_start: dict[int, list[bool]] = {}
    for r in results:
        by_start.setdefault(r["start_index"], []).append(bool(r["success"]))
    values = [success_at_k(len(v), sum(v), k) for v in by_start.values()]
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


# --------------------------------------------------------------------------- settings


#: What a run recorded before these settings existed did (so that it still resumes).
SETTINGS_BEFORE_THEY_EXISTED = {"keep_passing_prefix": False}


@dataclass(frozen=True)
class UnbindSettings:
    """Settings of an unbinding run (saved in ``summary.json``).

    Attributes
    ----------
    attempts : generated paths (spread round-robin over the starting frames)
    max_time_ps : longest path, ps (rounded down to whole coarse blocks; at least one block)
    margin_nm : exit margin beyond the pocket radius, nm
    pocket_radius_nm : pocket = receptor heavy atoms this close to the ligand in the bound frame, nm
    solver, ode_steps : ODE integration of the flow
    steering : strength of the sampler's physics steering (:mod:`biomd_core.sampling.steering`:
        overlaps, bond lengths and stereocentres of the predicted frame; 0 switches it off)
    retries : re-draws of a failing piece before the block is cut short
    keep_passing_prefix : a refused coarse block keeps its frames before the first failing one and the path
        goes on from them (:class:`~openmm_biomd.propagator.generation.JumpGenerator`) instead of being
        re-drawn whole
    stall_limit : consecutive blocks of which nothing passes the gate before an attempt is given up
    seed : master seed (attempt ``i`` uses ``replica_seed(seed, i)``)
    calibration_frames, calibration_interval_ps, calibration_equilibration_ps : short MD of the bound
        complex measuring the gate's equilibrium energies when the model stores none for this energy model
    """

    attempts: int = 10
    max_time_ps: float = 500.0
    margin_nm: float = 0.5
    pocket_radius_nm: float = 0.5
    solver: str = "ab2"
    ode_steps: int = 6
    steering: float = 1.0
    retries: int = 6
    keep_passing_prefix: bool = False
    stall_limit: int = 3
    seed: int = 0
    calibration_frames: int = 50
    calibration_interval_ps: float = 0.5
    calibration_equilibration_ps: float = 5.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.stall_limit < 1 or self.retries < 0:
            raise ValueError("attempts and stall_limit must be at least 1, retries at least 0")
        # (an infinite --max-time had been a traceback)
        require_positive(self, ("max_time_ps", "pocket_radius_nm", "calibration_interval_ps"))
        if not 0 <= self.margin_nm < math.inf:  # (NaN too; an infinite margin had run attempts that cannot leave)
            raise ValueError(f"margin_nm (--margin) must be >= 0 and finite, got {self.margin_nm}")
        if not 0 <= self.steering < math.inf:  # (NaN, inf: they had failed deep in the sampler, "data must be finite")
            raise ValueError(f"steering (--steering) must be >= 0 and finite (0: off), got {self.steering}")


# --------------------------------------------------------------------------- the generator


def _unbind_gate():
    from ..propagator.gate import GateConfig

    # A generated guest often sits a little too close to the host (an H 0.12–0.14 nm from a portal O),
    # and a 156-atom frame has more bonds to get wrong than a dipeptide.  So only gross defects are
    # refused before the relaxation (bonds off by > 0.15 nm, overlaps < 0.2 of the radii sum); the
    # relaxation is longer (300 L-BFGS steps, full coupled energy: it pushes milder overlaps apart and
    # restores bonds) and what it cannot repair fails the usual tests afterwards (bonds within 0.03 nm,
    # overlaps, stereocentres, energy against statistics measured with the same 300-step relaxation).
    # Why 300 steps (benchmarks/bench_steering.py, shipped host-guest model, 128 steered frames): after 100
    # steps 33 frames still lay above the equilibrium energy range, after 300 steps 14 — a generated frame
    # starts farther from its minimum than an MD frame, and 100 steps refused frames for being slow to relax,
    # not for being strained (in a first test 1000 steps refused about as many as 300); ~60 instead of
    # ~40 ms a frame.  Early acceptance after 100 steps (a frame that already passes every check then goes on
    # as it is): on 285 generated frames the verdicts were the same as after 300 steps for every frame, and
    # the gate took 61 instead of 100 ms a frame (after 100 steps 217 of the 244 frames accepted at 300 pass).
    return GateConfig(max_bond_deviation_nm=0.15, clash_fraction=0.2, relaxed_clash_fraction=0.5,
                      minimize_iterations=300, early_accept_iterations=(100,))


#: The unbinding gate's thresholds (:class:`~openmm_biomd.propagator.gate.GateConfig`).
UNBIND_GATE = _unbind_gate()


class Unbinder:
    """Generates gated dissociation paths of one complex with one model.

    Parameters
    ----------
    loaded : the complex (:class:`~openmm_biomd.data.systems.LoadedSystem`), positions bound
    model : shipped name, ``.safetensors``, exported ``.pt``, or a loaded model
    ligand_selection, pocket_selection : mdtraj selections (default: the bundled system's
        ligand residue; the pocket from contacts)
    settings : :class:`UnbindSettings`
    allow_transfer : use a model on a system it was not trained on
    ligand_sdf : ligand chemistry for featurisation
    gate_config : the gate's thresholds (default :data:`UNBIND_GATE`); stored energy statistics are
        used only when they were measured with the same relaxation
    device : torch device of the network
    """

    def __init__(self, loaded: Any, model: Any, *, ligand_selection: str | None = None,
                 pocket_selection: str | None = None, settings: UnbindSettings = UnbindSettings(),
                 allow_transfer: bool = False, ligand_sdf: Any = None, gate_config: Any = None,
                 device: str | torch.device = "cpu") -> None:
        from biomd_core.sampling import HierarchicalSampler, SolverConfig
        from biomd_core.sampling.steering import SteeredModel, SteeringConfig

        from ..propagator.compatibility import check_compatibility
        from ..propagator.gate import PhysicsGate
        from ..propagator.generation import JumpGenerator
        from ..propagator.model_source import model_label, resolve_model
        from ..propagator.solute_system import build_solute_system, rigid_bonds

        t0 = time.perf_counter()
        self.loaded = loaded
        self.settings = settings
        self.model = resolve_model(model, torch.device(device))
        self.model_label = model_label(self.model)
        self.model_hash = self.model.weights_hash()
        self.time = self.model.time
        positions = np.asarray(loaded.positions, dtype=np.float64)
        self.graph = self.model.featurize(loaded.topology, positions_nm=positions, ligand_sdf=ligand_sdf)
        # first: a model for another system is the problem to name, not its block length (it had said the latter)
        check_compatibility(self.model, self.graph, allow_transfer=allow_transfer)
        block_ps = self.block_frames * self.time.frame_interval_ps
        if settings.max_time_ps < block_ps * (1 - 1e-9):
            raise ValueError(f"max_time_ps {settings.max_time_ps:g} is shorter than one generated block of this model "
                             f"({block_ps:g} ps): give at least {block_ps:g} ps (paths are whole blocks)")
        whole_ps = int(settings.max_time_ps / block_ps + 1e-9) * block_ps
        if settings.max_time_ps - whole_ps > 1e-6 * block_ps:  # (had been rounded down without a word)
            warnings.warn(f"max_time_ps {settings.max_time_ps:g}: paths are whole generated blocks of {block_ps:g} ps, "
                          f"so the longest path is {whole_ps:g} ps", stacklevel=2)
        self.modelled = np.asarray(self.graph.atom_indices, dtype=np.int64)

        ligand_selection = ligand_selection or _default_ligand_selection(loaded)
        ligand = select_atoms(loaded.topology, ligand_selection, "--ligand selection")
        if pocket_selection is None:
            pocket_selection = _bundled_pocket_selection(loaded)
        pocket = (select_atoms(loaded.topology, pocket_selection, "--pocket selection") if pocket_selection
                  else pocket_atoms(loaded.topology, positions, ligand, settings.pocket_radius_nm))
        local = {int(a): i for i, a in enumerate(self.modelled)}
        missing = [int(a) for a in np.concatenate([ligand, pocket]) if int(a) not in local]
        if missing:
            raise ValueError(f"{len(missing)} ligand/pocket atoms are not modelled by this model's selection "
                             f"(e.g. atom {missing[0]}): the model must see the ligand and its pocket")
        self.ligand_selection, self.pocket_selection = ligand_selection, pocket_selection or "contacts"
        self.pocket = Pocket.from_bound_frame(positions[self.modelled], [local[int(a)] for a in ligand],
                                              [local[int(a)] for a in pocket], settings.margin_nm)

        solute = build_solute_system(loaded.system, self.modelled, decoupled=ligand)
        config = gate_config or UNBIND_GATE
        self.gate = PhysicsGate(solute, self.graph.bonds, self.graph.element_labels, positions[self.modelled], config)
        self.calibration_wall_s = 0.0
        if config.check_energy:
            self._set_energy_reference()
        bound = self.model.bind(self.graph)
        if settings.steering:
            bound = SteeredModel(bound, self.gate.geometry_prior(), SteeringConfig(strength=settings.steering))
        sampler = HierarchicalSampler(bound, self.time,
                                      SolverConfig(settings.solver, settings.ode_steps),
                                      constraints=rigid_bonds(loaded.system, self.modelled))
        # steps_per_frame = 1: a jump's step offsets are then model-frame indices
        self.generator = JumpGenerator(sampler, self.gate, 1, settings.retries, settings.keep_passing_prefix)
        self.setup_wall_s = time.perf_counter() - t0

    # -- gate reference ----------------------------------------------------------------
    def _set_energy_reference(self) -> None:
        from ..propagator.gate import EnergyReference

        stored = (self.model.provenance or {}).get("gate_reference", {}).get(self.gate.solute.key)
        if stored is not None:
            reference = EnergyReference.from_dict(stored)
            if self.gate.reference_matches(reference):
                self.gate.energy_reference = reference
                return
        t0 = time.perf_counter()
        frames = bound_md_frames(self.loaded, self.settings.calibration_frames,
                                 self.settings.calibration_interval_ps, seed=replica_seed(self.settings.seed, 10**6),
                                 equilibration_ps=self.settings.calibration_equilibration_ps)
        self.gate.calibrate(frames[:, self.modelled],
                            f"{len(frames)} frames of MD of the bound complex, "
                            f"{self.settings.calibration_interval_ps} ps apart")
        self.calibration_wall_s = time.perf_counter() - t0

    # -- one attempt ----------------------------------------------------------------------
    @property
    def block_frames(self) -> int:
        """Model frames generated per autoregressive block (``block_frames · k``)."""
        return self.time.block_frames * self.time.coarse_stride

    @property
    def max_frames(self) -> int:
        blocks = int(self.settings.max_time_ps / (self.block_frames * self.time.frame_interval_ps) + 1e-9)
        return blocks * self.block_frames

    def attempt(self, start_nm: np.ndarray, seed: int) -> tuple[np.ndarray, dict]:
        """One path from ``start_nm`` (``[N_modelled, 3]`` nm).

        Returns
        -------
        frames : ``[T, N_modelled, 3]`` nm, Δt apart, frame 0 the start; ends at the first unbound frame
        result : success, exit time, distances, gate statistics, wall time
        """
        t0 = time.perf_counter()
        generator = torch.Generator().manual_seed(int(seed))
        frames = [np.asarray(start_nm, dtype=np.float64)]
        history = frames[0][None]
        rejections: Counter = Counter()
        retries = 0
        exit_index, stopped = None, "max_time"
        stalls = 0
        while len(frames) - 1 < self.max_frames:
            # interpolation stops at the block's first unbound coarse frame: the exit lies at or before it
            jump = self.generator.generate(history, self.block_frames, [], generator, until=self.pocket.unbound)
            retries += jump.retries
            rejections.update(jump.rejections)
            if jump.n_frames == 0:
                stalls += 1
                if stalls >= self.settings.stall_limit:
                    stopped = "gate"  # block after block, nothing passed the gate
                    break
                continue
            stalls = 0
            new = np.stack([jump.frames[s] for s in sorted(jump.frames)])
            new = new[: self.max_frames - (len(frames) - 1)]  # shortened blocks must not overshoot the limit
            out = self.pocket.unbound(new)
            if out.any():
                first = int(np.argmax(out))
                frames.extend(new[: first + 1])
                exit_index, stopped = len(frames) - 1, "unbound"
                break
            frames.extend(new)
            history = np.concatenate([history, jump.coarse])[-self.time.history_frames:]
            if jump.n_frames < self.block_frames:
                history[-1] = new[-1]
        path = np.asarray(frames)
        d = self.pocket.distances(path)
        dt = self.time.frame_interval_ps
        return path, {
            "success": exit_index is not None,
            "stopped": stopped,
            "exit_time_ps": None if exit_index is None else exit_index * dt,
            "path_time_ps": (len(path) - 1) * dt,
            "n_frames": int(len(path)),
            "bound_distance_nm": float(d[0]),
            "final_distance_nm": float(d[-1]),
            "max_distance_nm": float(d.max()),
            "gate_retries": int(retries),
            "gate_rejections": dict(rejections),
            "wall_s": time.perf_counter() - t0,
        }


def _default_ligand_selection(loaded: Any) -> str:
    from ..data.systems import BUNDLED_SYSTEMS

    bundled = BUNDLED_SYSTEMS.get(loaded.description.get("name", ""))
    if bundled is None or not bundled.ligand_residue:
        raise ValueError("give the ligand as an mdtraj selection (e.g. --ligand 'resname LIG')")
    return f"resname {bundled.ligand_residue}"


def _bundled_pocket_selection(loaded: Any) -> str | None:
    from ..data.systems import BUNDLED_SYSTEMS

    bundled = BUNDLED_SYSTEMS.get(loaded.description.get("name", ""))
    return getattr(bundled, "pocket_selection", None) if bundled is not None else None


def bound_md_frames(loaded: Any, n_frames: int, interval_ps: float, seed: int, equilibration_ps: float = 5.0,
                    temperature_k: float = 300.0, timestep_fs: float = 2.0) -> np.ndarray:
    """Short unbiased MD of the complex from its input positions → frames ``[n_frames, N, 3]`` nm.

    Minimised, given velocities, ``equilibration_ps`` of MD, then a frame every ``interval_ps``.
    """
    import openmm
    from openmm import unit

    from ..data.md import select_platform, whole_steps

    system = openmm.XmlSerializer.clone(loaded.system)
    integrator = openmm.LangevinMiddleIntegrator(temperature_k * unit.kelvin, 1.0 / unit.picosecond,
                                                 timestep_fs * unit.femtosecond)
    integrator.setRandomNumberSeed(int(seed))
    platform, properties = select_platform(None, n_atoms=system.getNumParticles())
    context = openmm.Context(system, integrator, platform, properties)
    try:
        context.setPositions(np.ascontiguousarray(loaded.positions, dtype=np.float64))
        openmm.LocalEnergyMinimizer.minimize(context, 10.0, 200)
        context.setVelocitiesToTemperature(temperature_k * unit.kelvin, int(seed))
        integrator.step(whole_steps(equilibration_ps, timestep_fs))
        every = whole_steps(interval_ps, timestep_fs)
        frames = []
        for _ in range(n_frames):
            integrator.step(every)
            state = context.getState(getPositions=True, enforcePeriodicBox=False)
            frames.append(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
    finally:
        del context
    return np.asarray(frames, dtype=np.float64)


def attach_unbind_gate_reference(model_path: str | os.PathLike, loaded: Any, frames_nm: np.ndarray, source: str,
                                 ligand_selection: str | None = None) -> Any:
    """Measure the unbinding gate's energy statistics on MD frames ``[T, N, 3]`` nm (whole system) and store
    them in the checkpoint (``gate_reference[key]``), so :class:`Unbinder` needs no calibration MD."""
    from biomd_core.io import load_model, save_model

    unbinder = Unbinder(loaded, load_model(model_path), ligand_selection=ligand_selection,
                        gate_config=replace(UNBIND_GATE, check_energy=False))
    frames = np.asarray(frames_nm, dtype=np.float64)
    reference = unbinder.gate.calibrate(frames[:, unbinder.modelled], source)
    model = load_model(model_path)
    model.provenance.setdefault("gate_reference", {})[reference.key] = reference.to_dict()
    save_model(model, model_path)
    return reference


# --------------------------------------------------------------------------- the campaign


def _write_subset_pdb(path: Path, loaded: Any, atoms: np.ndarray) -> None:
    import mdtraj

    top = mdtraj.Topology.from_openmm(loaded.topology).subset(atoms)
    traj = mdtraj.Trajectory(np.asarray(loaded.positions)[atoms][None].astype(np.float32), top)
    tmp = path.with_suffix(".pdb.tmp")
    traj.save_pdb(str(tmp))
    os.replace(tmp, path)


def _write_path_dcd(path: Path, frames_nm: np.ndarray, topology_pdb: Path, frame_interval_ps: float) -> None:
    """Frames ``[T, N, 3]`` nm as a DCD whose header says they are ``frame_interval_ps`` apart, atomically.

    (Written by OpenMM's DCDFile: mdtraj's writer leaves a placeholder time step of 1 AKMA unit, 0.0489 ps.)
    """
    import mdtraj

    from ..trajectory_io import write_dcd

    top = mdtraj.load_topology(str(topology_pdb)).to_openmm()
    tmp = path.with_name(path.name + ".tmp")
    write_dcd(tmp, top, frames_nm, frame_interval_ps)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _start_frames(unbinder: Unbinder, starts_nm: np.ndarray | None) -> np.ndarray:
    """Starting frames ``[S, N_modelled, 3]`` nm: the given ones (full system or modelled atoms) or the input pose."""
    if starts_nm is None:
        return np.asarray(unbinder.loaded.positions, dtype=np.float64)[unbinder.modelled][None]
    starts = np.asarray(starts_nm, dtype=np.float64)
    if starts.ndim == 2:
        starts = starts[None]
    n_system = unbinder.loaded.system.getNumParticles()
    if starts.shape[1] == n_system:
        starts = starts[:, unbinder.modelled]
    elif starts.shape[1] != len(unbinder.modelled):
        raise ValueError(f"starting frames have {starts.shape[1]} atoms; expected {n_system} (whole system) or "
                         f"{len(unbinder.modelled)} (modelled atoms)")
    check_frames_fit(starts, unbinder.loaded.system, "starting frames", atoms=unbinder.modelled)
    bound = ~unbinder.pocket.unbound(starts)
    if not bound.all():
        raise ValueError(f"starting frame {int(np.argmin(bound))} is not bound (ligand beyond the pocket's exit "
                         "distance)")
    return starts


def unbind(loaded: Any, model: Any, out_dir: str | os.PathLike, *, settings: UnbindSettings = UnbindSettings(),
           ligand_selection: str | None = None, pocket_selection: str | None = None,
           starts_nm: np.ndarray | None = None, allow_transfer: bool = False, ligand_sdf: Any = None,
           log: Any = None, unbinder: Unbinder | None = None) -> dict:
    """Generate ``settings.attempts`` dissociation paths; write them and ``summary.json``; return the summary.

    Parameters
    ----------
    loaded : the bound complex (a bundled system name or a :class:`LoadedSystem`)
    model : shipped name, checkpoint or loaded model
    out_dir : output directory (resumed when it holds the same run)
    starts_nm : optional starting frames ``[S, N, 3]`` nm (whole system or modelled atoms); attempts go
        round-robin over them (default: the input positions)
    log : a file-like object for one progress line per attempt
    unbinder : a ready :class:`Unbinder` (reuses its model and gate; the other set-up arguments are ignored)

    Notes
    -----
    ``time_to_first_path_s`` counts, from the start of the first attempt of this call, the wall time until a
    successful path is in hand (generation and gate); set-up (model load, gate calibration) is reported
    apart as ``setup_wall_s`` / ``calibration_wall_s``.
    """
    from ..data.systems import as_loaded_system

    loaded = as_loaded_system(loaded)
    out = Path(out_dir)
    unbinder = unbinder or Unbinder(loaded, model, ligand_selection=ligand_selection,
                                    pocket_selection=pocket_selection, settings=settings,
                                    allow_transfer=allow_transfer, ligand_sdf=ligand_sdf)
    settings = unbinder.settings
    starts = _start_frames(unbinder, starts_nm)
    # only once the inputs are known to be good; a run's or a sample's folder is refused by name
    refuse_results_without_record(out, "summary.json", ("attempt_[0-9][0-9][0-9]/result.json",))
    claim_output_folder(out, "unbind", UNBIND_OUTPUTS, json_with_keys("summary.json", "format", "starts_sha"))
    identity = _json_shaped({
        "format": SUMMARY_FORMAT,
        "system": loaded.description,
        "model": unbinder.model_label,
        "model_hash": unbinder.model_hash,
        "settings": asdict(settings),
        "gate": asdict(unbinder.gate.config),
        "ligand_selection": unbinder.ligand_selection,
        "pocket_selection": unbinder.pocket_selection,
        "n_starts": int(len(starts)),
        "starts_sha": _array_hash(starts),
    })
    summary_path = out / "summary.json"
    first_path_s = None
    if summary_path.exists():
        old = read_json(summary_path)
        first_path_s = old.get("time_to_first_path_s")  # a success found before a restart still counts
        # more attempts extend a run; anything else makes it another run (the same weights from another
        # path are the same model: the hash decides, not the label)
        comparable = {**identity, "settings": {**identity["settings"], "attempts": None}}
        stored = {**old, "settings": {**SETTINGS_BEFORE_THEY_EXISTED, **old.get("settings", {}), "attempts": None}}
        keys = [k for k in comparable if k != "model"]
        different = differences({k: stored.get(k) for k in keys}, {k: comparable[k] for k in keys})
        if different:  # (it had named only the section, e.g. "different settings")
            raise ValueError(f"{out} holds another unbinding run: {'; '.join(different)}. Rerun with the same "
                             "settings (more --attempts extend it), or use a new --out directory")
    topology_pdb = out / "topology.pdb"
    if not topology_pdb.exists():
        _write_subset_pdb(topology_pdb, loaded, unbinder.modelled)

    if not summary_path.exists():  # the record is on disk before the first attempt: one without it is another run's
        _atomic_write_json(summary_path, _summary(identity, unbinder, [], None, settings))
    results: list[dict] = []
    campaign_start = time.perf_counter()
    for i in range(settings.attempts):
        folder = out / f"attempt_{i:03d}"
        done = folder / "result.json"
        if done.exists():  # its path is checked too: a DCD cut short would enter every later analysis
            results.append(read_json(done, unbind_attempt_remedy(folder), keys=ATTEMPT_RESULT_KEYS))
            frames = load_recorded_path(folder / "path.dcd", topology_pdb, results[-1].get("n_frames"),
                                        unbind_attempt_remedy(folder))
            if not (folder / "distance.csv").exists():  # derived from the path: a deleted one is written again
                _write_distances(folder / "distance.csv", unbinder, frames)
            continue
        start_index = i % len(starts)
        frames, result = unbinder.attempt(starts[start_index], replica_seed(settings.seed, i))
        result = {"attempt": i, "start_index": start_index, "seed": replica_seed(settings.seed, i), **result}
        folder.mkdir(exist_ok=True)
        _write_path_dcd(folder / "path.dcd", frames, topology_pdb, unbinder.time.frame_interval_ps)
        _write_distances(folder / "distance.csv", unbinder, frames)
        _atomic_write_json(done, result)
        if result["success"] and first_path_s is None:
            first_path_s = time.perf_counter() - campaign_start
        results.append(result)
        if log is not None:
            print(f"attempt {i + 1}/{settings.attempts}: {'unbound' if result['success'] else result['stopped']} "
                  f"after {result['path_time_ps']:.0f} ps ({result['wall_s']:.1f} s)", file=log, flush=True)
        _atomic_write_json(summary_path, _summary(identity, unbinder, results, first_path_s, settings))
    summary = _summary(identity, unbinder, results, first_path_s, settings)
    _atomic_write_json(summary_path, summary)
    return summary


def _json_shaped(data: dict) -> dict:
    """``data`` as it reads back from JSON (tuples become lists), so a stored run compares equal to itself."""
    return json.loads(json.dumps(data))


def _array_hash(a: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(a, dtype=np.float32).tobytes()).hexdigest()[:16]


def _write_distances(path: Path, unbinder: Unbinder, frames: np.ndarray) -> None:
    """An attempt's ``distance.csv``: the ligand–pocket centroid distance (nm) of each frame ``[T, N, 3]`` nm."""
    distances = unbinder.pocket.distances(frames)
    csv = "time_ps,centroid_distance_nm\n" + "".join(
        f"{t * unbinder.time.frame_interval_ps:.6g},{d:.5f}\n" for t, d in enumerate(distances))
    _atomic_write_bytes(path, csv.encode())


def _summary(identity: dict, unbinder: Unbinder, results: list[dict], first_path_s: float | None,
             settings: UnbindSettings) -> dict:
    successes = sum(r["success"] for r in results)
    rejections: Counter = Counter()
    for r in results:
        rejections.update(r["gate_rejections"])
    summary = {
        **identity,
        "attempts": len(results),
        "successes": int(successes),
        "success_at_1": successes / len(results) if results else None,
        "time_to_first_path_s": first_path_s,
        "first_success_attempt": next((r["attempt"] for r in results if r["success"]), None),
        "setup_wall_s": unbinder.setup_wall_s,
        "calibration_wall_s": unbinder.calibration_wall_s,
        "generation_wall_s": float(sum(r["wall_s"] for r in results)),
        "mean_exit_time_ps": (float(np.mean([r["exit_time_ps"] for r in results if r["success"]]))
                              if successes else None),
        "gate_retries": int(sum(r["gate_retries"] for r in results)),
        "gate_rejections": dict(rejections),
        "frame_interval_ps": unbinder.time.frame_interval_ps,
        "modelled_atoms": int(len(unbinder.modelled)),
        # indices into topology.pdb / the paths (the modelled atoms)
        "ligand_atoms": unbinder.pocket.ligand.tolist(),
        "pocket_atoms": unbinder.pocket.pocket.tolist(),
        "pocket": unbinder.pocket.to_dict(),
        "results": results,
    }
    if len(results) >= 10:
        summary["success_at_10"] = mean_success_at_k(results, 10)
    return summary


# --------------------------------------------------------------------------- command line


def add_arguments(p: Any) -> None:
    """Arguments of ``biomd unbind``."""
    from biomd_core.sampling.solvers import SOLVERS

    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--system", help="bundled complex, e.g. host-guest or t4l-pxylene")
    source.add_argument("--inputs", nargs="+", metavar="FILE",
                        help="your complex: a.prmtop a.inpcrd | system.xml state.xml top.pdb | x.pdb (+ --forcefield)")
    p.add_argument("--forcefield", nargs="+", metavar="XML", help="force-field XMLs for a PDB input")
    p.add_argument("--model", help="model name, .safetensors or exported .pt (default: the system's shipped weights)")
    p.add_argument("--ligand", help="mdtraj selection of the ligand (default: the bundled system's ligand residue)")
    p.add_argument("--pocket", help="mdtraj selection of the pocket (default: receptor heavy atoms in contact)")
    p.add_argument("--starts", help="trajectory of bound starting frames (with --starts-topology unless PDB/H5)")
    p.add_argument("--starts-topology", help="topology of --starts")
    p.add_argument("--attempts", type=int, default=10, help="generated paths (default 10)")
    p.add_argument("--max-time", default="500ps", help="longest path, e.g. 1ns (default 500ps)")
    p.add_argument("--margin", type=float, default=0.5, help="exit margin beyond the pocket radius, nm (default 0.5)")
    p.add_argument("--pocket-radius", type=float, default=0.5, help="contact distance defining the pocket, nm")
    p.add_argument("--solver", default=UnbindSettings.solver, choices=SOLVERS,
                   help=f"how generated windows are integrated (default {UnbindSettings.solver}: one network "
                        "evaluation per step)")
    p.add_argument("--ode-steps", type=int, default=UnbindSettings.ode_steps,
                   help=f"integration steps per window (default {UnbindSettings.ode_steps})")
    p.add_argument("--steering", type=float, default=UnbindSettings.steering,
                   help="strength of the sampler's physics steering away from overlaps, broken bonds and inverted "
                        f"stereocentres (0: off; default {UnbindSettings.steering:g})")
    p.add_argument("--keep-passing-prefix", action="store_true",
                   help="a coarse block the gate refuses keeps its frames before the refused one and the path goes "
                        "on from them, instead of being re-drawn whole: fewer re-draws, paths closer to metadynamics "
                        "ones, later exits (BENCHMARKS.md, re-draw section)")
    p.add_argument("--seed", type=seed_argument, default=0)
    p.add_argument("--allow-transfer", action="store_true", help="use a model on a system it was not trained on")
    p.add_argument("--out", required=True, help="output directory (resumed when it holds the same run)")
    p.add_argument("--quiet", action="store_true")


def main(args: Any) -> int:
    """``biomd unbind``: prints the summary's headline numbers as JSON."""
    import sys

    from ..data.md import parse_time_ps

    if args.inputs:
        from ..data import load_input_files

        loaded = load_input_files(args.inputs, forcefield=args.forcefield or ())
    else:
        from ..data.systems import get_system

        loaded = get_system(args.system).load()
    model = args.model or _shipped_model_for(loaded)
    starts = None
    if args.starts:
        from .seeding_common import load_path_frames

        starts = load_path_frames(args.starts, args.starts_topology, what="--starts",
                                  topology_flag="--starts-topology")
    settings = UnbindSettings(attempts=args.attempts, max_time_ps=parse_time_ps(args.max_time), margin_nm=args.margin,
                              pocket_radius_nm=args.pocket_radius, solver=args.solver, ode_steps=args.ode_steps,
                              steering=args.steering, keep_passing_prefix=args.keep_passing_prefix, seed=args.seed)
    summary = unbind(loaded, model, args.out, settings=settings, ligand_selection=args.ligand,
                     pocket_selection=args.pocket, starts_nm=starts, allow_transfer=args.allow_transfer,
                     log=None if args.quiet else sys.stderr)
    keys = ("attempts", "successes", "success_at_1", "success_at_10", "time_to_first_path_s", "mean_exit_time_ps",
            "setup_wall_s", "generation_wall_s")
    print(json.dumps({k: summary.get(k) for k in keys}, indent=2))
    return 0


def _shipped_model_for(loaded: Any) -> str:
    from biomd_core.io.checkpoint import shipped_models

    name = loaded.description.get("name", "")
    if name not in shipped_models():
        raise ValueError(f"no shipped weights for {name!r} (shipped: {', '.join(shipped_models())}): give --model, "
                         "a checkpoint trained on this complex (`biomd train`)")
    return name
