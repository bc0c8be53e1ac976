"""``PhysicsGate``: decides whether generated frames may reach OpenMM.

Every generated frame (coarse, interpolated, and sub-grid frames made for a
reporter) is checked, and the verdict names the first failure.  A raw
generated frame is first tested for being *repairable*:

1. ``finite``: every coordinate is a finite number;
2. ``bond``: no bonded (or constrained) pair deviates from its force-field
   equilibrium length by more than ``max_bond_deviation_nm``;
3. ``clash``: no two atoms three or more bonds apart are closer than
   ``clash_fraction`` × the sum of their van der Waals radii.

It is then *relaxed*: ``minimize_iterations`` L-BFGS steps on the modelled
atoms' intramolecular energy (:mod:`.solute_system`).  Bonds the System
constrains (to hydrogens, usually) reach the gate already at their lengths:
the sampler projects every generated frame onto them
(:mod:`biomd_core.sampling.constraints`).  The relaxation removes the rest of
the bond and angle noise without moving torsions measurably.  The relaxed
frame must pass checks 4–6 below.  With ``early_accept_iterations`` the
relaxation stops at the first of those points where the frame already passes
all of them (the frame handed on is the one checked, so no check is weakened;
the energy statistics stay those of the full relaxation, which for the coupled
energy only lowers a frame's energy further); a frame that fails is relaxed
on to ``minimize_iterations`` and judged there.  The checks after relaxation:

4. ``relaxed_bond``: every bond within ``relaxed_bond_deviation_nm``;
   ``relaxed_clash``: no pair closer than ``relaxed_clash_fraction`` × the
   radii sum (an overlap the relaxation did not resolve; with a decoupled
   scoring energy, below, the energy check cannot see one between partners);
5. ``chirality``: every stereocentre (four bonded neighbours, at most one a
   hydrogen, clearly non-planar in the reference) keeps its handedness; a
   methyl or methylene "inversion" only permutes equivalent hydrogens and is
   not tested;
6. ``energy``: the relaxed frame's energy is below ``mean + energy_z · std``
   of the same quantity over equilibrium MD frames (:class:`EnergyReference`,
   stored with the model or calibrated from MD).  With a *scoring* System
   (:func:`~.solute_system.build_solute_system` ``decoupled=``, used for ligand
   unbinding) the frame is relaxed with the full energy but scored with the
   partners' own energies.

Relaxed frames are what reaches OpenMM.  The energy model runs on OpenMM's
Reference platform for the smallest solutes and on the CPU platform (one
thread) beyond :data:`REFERENCE_PLATFORM_MAX_ATOMS`: measured on the 2-core CI
VM (2026-12-03, solute Systems, 20 perturbed frames), alanine dipeptide's 22
atoms take 0.29 ms a relaxation (20 L-BFGS steps) on Reference against 1.1 ms
on the CPU platform, whose per-call overhead dominates at this size, and
host–guest's 156 atoms 35–36 ms against 19–23 ms.  Several frames are relaxed
side by side on ``workers`` threads, each pinned to a core of its own
(:mod:`openmm_biomd.affinity`: a single-thread CPU Context made and driven
from one core pays no hand-off to an idle vCPU) and each with its own
Contexts (OpenMM's Python wrapper releases the GIL while it minimises); every
frame's relaxation is the same deterministic computation wherever it runs, so
verdicts do not depend on the number of workers.  The platform is not part of
an energy reference's key: over the 595 frames of the held-out host–guest
metadynamics paths, Reference (double precision) and CPU (mixed) relaxations
gave statistics 0.02 kJ/mol (mean) and 0.06 kJ/mol (σ) apart, σ being 3.5
kJ/mol (per frame: median 0.2 kJ/mol apart, at most 9.7 where the two ended in
different local minima).

Units: nm, kJ/mol.
"""

from __future__ import annotations

import itertools
import os
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np
import openmm
import torch
from scipy.spatial import cKDTree

from biomd_core.sampling.steering import GeometryPrior, signed_volumes

from ..affinity import cpu_for, pin_calling_thread
from .solute_system import SoluteSystem

#: Bondi van der Waals radii, nm (unknown elements: carbon's).
VDW_RADIUS_NM = {"H": 0.120, "C": 0.170, "N": 0.155, "O": 0.152, "F": 0.147, "P": 0.180, "S": 0.180,
                 "Cl": 0.175, "Br": 0.185, "I": 0.198, "Na": 0.227, "K": 0.275, "Mg": 0.173, "Zn": 0.139}
_DEFAULT_RADIUS_NM = 0.170

#: |normalised signed volume| above which a 4-connected centre counts as tetrahedral.
TETRAHEDRAL_MIN_VOLUME = 0.3

#: Solutes up to this size are scored on the Reference platform (see the module docstring).
REFERENCE_PLATFORM_MAX_ATOMS = 64

#: Most threads a gate relaxes frames on by default (one per CPU core up to this).
MAX_DEFAULT_WORKERS = 8


def default_workers() -> int:
    """Threads a gate relaxes frames on unless told: one per CPU core available to this process, at most
    :data:`MAX_DEFAULT_WORKERS`."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_DEFAULT_WORKERS))


@dataclass(frozen=True)
class GateConfig:
    """Thresholds of the physics gate (nm, kJ/mol); see the module docstring.

    ``energy_z`` is generous on purpose: a short minimisation removes most of
    the bond-stretch noise of generated frames, what remains far above the
    equilibrium distribution is a real defect (a clash the minimiser cannot
    resolve, a twisted amide).  ``early_accept_iterations``: cumulative L-BFGS
    iteration counts (positive, rising) at which a frame that passes every
    post-relaxation check is accepted without relaxing on; those not below
    ``minimize_iterations`` are unused.
    """

    max_bond_deviation_nm: float = 0.1
    clash_fraction: float = 0.5
    relaxed_clash_fraction: float = 0.5
    relaxed_bond_deviation_nm: float = 0.03
    check_chirality: bool = True
    check_energy: bool = True
    minimize_iterations: int = 20
    energy_z: float = 6.0
    early_accept_iterations: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if min(self.max_bond_deviation_nm, self.relaxed_bond_deviation_nm) <= 0 or not (
                0 < self.clash_fraction < 1 and 0 < self.relaxed_clash_fraction < 1):
            raise ValueError("bond deviations must be > 0 and the clash fractions in (0, 1)")
        if self.minimize_iterations < 0 or self.energy_z <= 0:
            raise ValueError("minimize_iterations must be >= 0 and energy_z > 0")
        early = tuple(int(i) for i in self.early_accept_iterations)  # a YAML or JSON list becomes a tuple
        object.__setattr__(self, "early_accept_iterations", early)
        if any(b <= a for a, b in zip((0, *early), early)):
            raise ValueError(f"early_accept_iterations must be positive and rise strictly, got {list(early)}")

    @property
    def relaxation_stages(self) -> tuple[int, ...]:
        """Cumulative L-BFGS iterations after which a frame is checked: the early points below
        ``minimize_iterations`` (a shorter relaxation has nothing to stop early), then the full count."""
        return (*(i for i in self.early_accept_iterations if i < self.minimize_iterations), self.minimize_iterations)


@dataclass(frozen=True)
class EnergyReference:
    """Equilibrium statistics of the gate energy, kJ/mol.

    ``key`` is :attr:`SoluteSystem.key` of the energy model and
    ``minimize_iterations`` the minimisation they were measured with: a
    reference is only valid for the same pair.
    """

    mean: float
    std: float
    maximum: float
    n_frames: int
    key: str
    minimize_iterations: int
    source: str = ""

    def threshold(self, z: float) -> float:
        """Largest accepted energy: ``mean + z·std`` (never below the largest MD value)."""
        return max(self.mean + z * self.std, self.maximum)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "EnergyReference":
        return cls(**data)


@dataclass
class GateVerdict:
    """Outcome of checking one batch of frames.

    ``reason`` is ``None`` when accepted, else the failed check's name;
    ``frame`` the first failing frame; ``detail`` a human-readable sentence;
    ``energies`` the gate energies of the frames scored (kJ/mol); ``frames``
    the relaxed frames ``[T, N, 3]`` nm when accepted.  A refusal after the
    relaxation carries in ``passed_frames`` the relaxed frames before the
    failing one (each passed every check; ``[frame, N, 3]``); ``None`` where
    the refusal came before anything was relaxed.
    """

    accepted: bool
    reason: str | None = None
    frame: int | None = None
    detail: str = ""
    energies: list = field(default_factory=list)
    frames: np.ndarray | None = None
    passed_frames: np.ndarray | None = None


def _vdw_radii(elements: np.ndarray) -> np.ndarray:
    """``[N]`` van der Waals radii of element symbols, nm."""
    return np.array([VDW_RADIUS_NM.get(str(e), _DEFAULT_RADIUS_NM) for e in elements])


def _clash_thresholds(radii_nm: np.ndarray, fraction: float) -> np.ndarray:
    return fraction * (radii_nm[:, None] + radii_nm[None, :])


def _near_pairs(n: int, bonds: np.ndarray) -> set:
    """Pairs (i < j) one or two bonds apart: excluded from the clash test."""
    neighbours: list[set] = [set() for _ in range(n)]
    for i, j in bonds:
        neighbours[i].add(int(j))
        neighbours[j].add(int(i))
    near = set()
    for i in range(n):
        for j in neighbours[i]:
            near.add((min(i, j), max(i, j)))
            for m in neighbours[j]:
                if m != i:
                    near.add((min(i, m), max(i, m)))
    return near


def _signed_volumes(frames: np.ndarray, centres: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """``[T, C]`` normalised triple products of three neighbour vectors per centre: the steering prior's
    :func:`~biomd_core.sampling.steering.signed_volumes`, so the gate and steering agree on handedness."""
    return signed_volumes(torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float64)),
                          torch.from_numpy(np.asarray(centres, dtype=np.int64)),
                          torch.from_numpy(np.asarray(neighbours, dtype=np.int64))).numpy()


class PhysicsGate:
    """Checks generated frames of the modelled atoms.

    Parameters
    ----------
    solute : the gate's energy model (:func:`~.solute_system.build_solute_system`)
    bonds : ``[E, 2]`` bonds between modelled atoms (local indices)
    elements : ``[N]`` element symbols
    reference_nm : ``[N, 3]`` a physical frame (handedness of stereocentres)
    config : thresholds
    energy_reference : equilibrium statistics; ``None`` until :meth:`calibrate`
    workers : threads relaxing frames side by side (default :func:`default_workers`); 1 relaxes them one by
        one in the calling thread
    """

    def __init__(self, solute: SoluteSystem, bonds: np.ndarray, elements: np.ndarray, reference_nm: np.ndarray,
                 config: GateConfig = GateConfig(), energy_reference: EnergyReference | None = None,
                 workers: int | None = None) -> None:
        self.solute = solute
        self.config = config
        self.workers = default_workers() if workers is None else int(workers)
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        n = len(elements)
        self.n_atoms = n
        self._elements = np.asarray(elements).astype(str)
        bonded = dict(solute.bond_lengths_nm)
        for i, j in np.asarray(bonds).reshape(-1, 2):  # bonds without a force-field term: reference length
            key = (int(min(i, j)), int(max(i, j)))
            bonded.setdefault(key, float(np.linalg.norm(reference_nm[key[0]] - reference_nm[key[1]])))
        self._bond_pairs = np.array(sorted(bonded), dtype=np.int64).reshape(-1, 2)
        self._bond_r0 = np.array([bonded[tuple(p)] for p in self._bond_pairs.tolist()])
        all_bonds = self._bond_pairs
        self._near = _near_pairs(n, all_bonds)
        self._radii_nm = _vdw_radii(self._elements)
        self._clash_nm = _clash_thresholds(self._radii_nm, config.clash_fraction)
        self._relaxed_clash_nm = _clash_thresholds(self._radii_nm, config.relaxed_clash_fraction)
        self._centres, self._chiral_nb, self._chiral_sign = self._stereocentres(all_bonds, reference_nm)
        self.energy_reference = energy_reference
        self._contexts = threading.local()  # each thread relaxes in Contexts of its own
        self._pool: ThreadPoolExecutor | None = None

    # -- set-up -------------------------------------------------------------
    def _stereocentres(self, bonds: np.ndarray, reference_nm: np.ndarray):
        neighbours: list[list[int]] = [[] for _ in range(self.n_atoms)]
        for i, j in bonds:
            neighbours[i].append(int(j))
            neighbours[j].append(int(i))
        hydrogen = self._elements == "H"
        centres = [a for a in range(self.n_atoms)
                   if len(neighbours[a]) == 4 and hydrogen[neighbours[a]].sum() <= 1]
        if not centres:
            return np.zeros(0, np.int64), np.zeros((0, 3), np.int64), np.zeros(0)
        nb = np.array([sorted(neighbours[a])[:3] for a in centres], dtype=np.int64)
        centres = np.array(centres, dtype=np.int64)
        vol = _signed_volumes(reference_nm[None], centres, nb)[0]
        keep = np.abs(vol) > TETRAHEDRAL_MIN_VOLUME
        return centres[keep], nb[keep], np.sign(vol[keep])

    @property
    def n_stereocentres(self) -> int:
        return int(len(self._centres))

    def geometry_prior(self) -> GeometryPrior:
        """The gate's geometry (radii, bonds and their lengths, pairs exempt from the overlap test,
        stereocentres and their handedness) as the sampler's steering prior
        (:class:`biomd_core.sampling.steering.GeometryPrior`): steering pushes generated frames towards
        what this gate accepts."""
        excluded = np.array(sorted(self._near), dtype=np.int64).reshape(-1, 2)
        return GeometryPrior(self._radii_nm, excluded, self._bond_pairs, self._bond_r0, self._centres,
                             self._chiral_nb, self._chiral_sign)

    @property
    def _on_reference(self) -> bool:
        """Whether the energy model runs on the Reference platform (else the CPU platform, one thread)."""
        return self.n_atoms <= REFERENCE_PLATFORM_MAX_ATOMS

    def _new_context(self, system: openmm.System) -> openmm.Context:
        small = self._on_reference
        platform = openmm.Platform.getPlatformByName("Reference" if small else "CPU")
        return openmm.Context(system, openmm.VerletIntegrator(0.001), platform, {} if small else {"Threads": "1"})

    def _energy_context(self) -> openmm.Context:
        if getattr(self._contexts, "energy", None) is None:
            self._contexts.energy = self._new_context(self.solute.system)
        return self._contexts.energy

    def _scoring_context(self) -> openmm.Context | None:
        if self.solute.scoring_system is None:
            return None
        if getattr(self._contexts, "scoring", None) is None:
            self._contexts.scoring = self._new_context(self.solute.scoring_system)
        return self._contexts.scoring

    def _submit(self, function, *args):
        """Run ``function(*args)`` on the gate's worker threads (started on first use, stopped with the gate)."""
        if self._pool is None:
            slots = itertools.count()
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="biomd-gate",
                                            initializer=lambda: pin_calling_thread(cpu_for(next(slots))))
            weakref.finalize(self, self._pool.shutdown, wait=False, cancel_futures=True)
        return self._pool.submit(function, *args)

    def _judge_frames(self, frames: np.ndarray, numbers: list[int], limit: float, stop_at_failure: bool
                      ) -> list[tuple]:
        """:meth:`_relax_and_judge` of frames ``[T, N, 3]`` nm (named ``numbers`` in verdicts), side by side on
        the workers; with ``stop_at_failure`` the list ends at the first failing frame (later ones are not
        waited for)."""
        # One Reference frame is relaxed where it is asked for (no hand-off); a CPU-platform Context is only
        # fast where it was made, on a pinned worker (see the module docstring)
        if self.workers == 1 or (len(frames) == 1 and self._on_reference):
            results = []
            for frame, t in zip(frames, numbers):
                results.append(self._relax_and_judge(frame, t, limit))
                if stop_at_failure and results[-1][2] is not None:
                    break
            return results
        futures = [self._submit(self._relax_and_judge, frame, t, limit) for frame, t in zip(frames, numbers)]
        results = []
        for i, future in enumerate(futures):
            results.append(future.result())
            if stop_at_failure and results[-1][2] is not None:
                for later in futures[i + 1:]:
                    later.cancel()
                break
        return results

    # -- checks ---------------------------------------------------------------
    def _minimize(self, context: openmm.Context, iterations: int) -> tuple[float, np.ndarray]:
        """``iterations`` more L-BFGS steps from the context's positions; (gate energy kJ/mol, frame ``[N, 3]`` nm)."""
        if iterations:
            openmm.LocalEnergyMinimizer.minimize(context, 10.0, iterations)
        state = context.getState(getEnergy=True, getPositions=True)
        energy = float(state.getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole))
        relaxed = state.getPositions(asNumpy=True).value_in_unit(openmm.unit.nanometer)
        scoring = self._scoring_context()
        if scoring is not None:  # relaxed with the full energy, scored with the decoupled one
            scoring.setPositions(relaxed)
            energy = float(scoring.getState(getEnergy=True).getPotentialEnergy()
                           .value_in_unit(openmm.unit.kilojoule_per_mole))
        return energy, relaxed

    def relax(self, frame_nm: np.ndarray) -> tuple[float, np.ndarray]:
        """Relax one frame ``[N, 3]`` nm the full ``minimize_iterations``; returns (gate energy kJ/mol,
        relaxed frame ``[N, 3]`` nm)."""
        context = self._energy_context()
        context.setPositions(np.ascontiguousarray(frame_nm, dtype=np.float64))
        return self._minimize(context, self.config.minimize_iterations)

    def energy(self, frame_nm: np.ndarray) -> float:
        """Gate energy of one frame ``[N, 3]`` nm: intramolecular, after the full relaxation, kJ/mol."""
        return self.relax(frame_nm)[0]

    def _relax_and_judge(self, frame_nm: np.ndarray, t: int, limit: float
                         ) -> tuple[float, np.ndarray, GateVerdict | None]:
        """Relax frame ``t`` stage by stage (:attr:`GateConfig.relaxation_stages`); returns (energy, relaxed frame,
        ``None``) at the first stage where it passes checks 4–6, else the last stage's with its failure."""
        context = self._energy_context()
        context.setPositions(np.ascontiguousarray(frame_nm, dtype=np.float64))
        done = 0
        for stage in self.config.relaxation_stages:
            energy, relaxed = self._minimize(context, stage - done)
            done = stage
            failed = self._relaxed_failure(relaxed, energy, t, limit)
            if failed is None:
                return energy, relaxed, None
        return energy, relaxed, failed

    def _relaxed_failure(self, relaxed: np.ndarray, energy: float, t: int, limit: float) -> GateVerdict | None:
        """Checks 4–6 on relaxed frame ``t`` ``[N, 3]`` nm with gate energy ``energy``; the failure or ``None``."""
        if not np.isfinite(energy) or energy > limit:
            ref = self.energy_reference
            known = f" (equilibrium {ref.mean:.1f} ± {ref.std:.1f})" if ref is not None else ""
            return GateVerdict(False, "energy", t, f"frame {t}: energy {energy:.1f} kJ/mol after minimisation "
                               f"exceeds {limit:.1f}{known}")
        one = relaxed[None]
        failed = self._bond_check(one, self.config.relaxed_bond_deviation_nm, "relaxed_bond", t)
        failed = failed or self._clash_check(one, self._relaxed_clash_nm, "relaxed_clash", t)
        return failed or self._chirality_check(one, t)

    def _bond_check(self, frames: np.ndarray, limit_nm: float, reason: str, first: int = 0) -> GateVerdict | None:
        """First frame (numbered from ``first``) with a bond further than ``limit_nm`` from its length, if any."""
        if not len(self._bond_pairs):
            return None
        lengths = np.linalg.norm(frames[:, self._bond_pairs[:, 0]] - frames[:, self._bond_pairs[:, 1]], axis=-1)
        dev = np.abs(lengths - self._bond_r0)
        bad = dev.max(axis=1) > limit_nm
        if not bad.any():
            return None
        t = int(np.argmax(bad))
        b = int(np.argmax(dev[t]))
        i, j = self._bond_pairs[b]
        return GateVerdict(False, reason, first + t, f"frame {first + t}: bond {i}-{j} is {lengths[t, b]:.3f} nm "
                           f"(equilibrium {self._bond_r0[b]:.3f} nm)")

    def _chirality_check(self, frames: np.ndarray, first: int = 0) -> GateVerdict | None:
        if not (self.config.check_chirality and len(self._centres)):
            return None
        signs = np.sign(_signed_volumes(frames, self._centres, self._chiral_nb))
        flipped = (signs != self._chiral_sign).any(axis=1)
        if not flipped.any():
            return None
        t = int(np.argmax(flipped))
        c = int(self._centres[np.argmax(signs[t] != self._chiral_sign)])
        return GateVerdict(False, "chirality", first + t, f"frame {first + t}: stereocentre {c} inverted")

    def _repairable(self, frames: np.ndarray) -> GateVerdict | None:
        finite = np.isfinite(frames).all(axis=(1, 2))
        if not finite.all():
            t = int(np.argmin(finite))
            return GateVerdict(False, "finite", t, f"frame {t} has non-finite coordinates")
        failed = self._bond_check(frames, self.config.max_bond_deviation_nm, "bond")
        if failed is not None:
            return failed
        return self._clash_check(frames, self._clash_nm, "clash")

    def _clash_check(self, frames: np.ndarray, thresholds: np.ndarray, reason: str, first: int = 0
                     ) -> GateVerdict | None:
        """First pair of atoms ≥ 3 bonds apart closer than ``thresholds[i, j]`` nm (frames numbered from
        ``first``), if any."""
        if not self.n_atoms:
            return None
        cutoff = float(thresholds.max())
        for t, frame in enumerate(frames):
            for i, j in cKDTree(frame).query_pairs(cutoff):
                i, j = min(i, j), max(i, j)
                if (i, j) in self._near:
                    continue
                d = float(np.linalg.norm(frame[i] - frame[j]))
                if d < thresholds[i, j]:
                    return GateVerdict(False, reason, first + t,
                                       f"frame {first + t}: atoms {i} and {j} are {d:.3f} nm apart")
        return None

    def check(self, frames_nm: np.ndarray) -> GateVerdict:
        """Check ``[T, N, 3]`` nm frames; an accepted verdict carries the relaxed frames."""
        frames = np.asarray(frames_nm, dtype=np.float64).reshape(-1, self.n_atoms, 3)
        failed = self._repairable(frames)
        if failed is not None:
            return failed
        if not len(frames):
            return GateVerdict(True, energies=[], frames=frames)
        judged = self._judge_frames(frames, list(range(len(frames))), self._energy_limit(), stop_at_failure=True)
        energies = [energy for energy, _, _ in judged]
        failed = judged[-1][2]
        if failed is not None:
            failed.energies = energies
            failed.passed_frames = np.asarray([relaxed for _, relaxed, _ in judged[:-1]]).reshape(-1, self.n_atoms, 3)
            return failed
        return GateVerdict(True, energies=energies, frames=np.stack([relaxed for _, relaxed, _ in judged]))

    def check_each(self, frames_nm: np.ndarray) -> list[GateVerdict]:
        """Judge each of ``[T, N, 3]`` nm frames alone: element ``t`` equals ``check(frames_nm[t:t + 1])``;
        the frames are relaxed side by side on the workers."""
        frames = np.asarray(frames_nm, dtype=np.float64).reshape(-1, self.n_atoms, 3)
        verdicts: list[GateVerdict | None] = [self._repairable(frame[None]) for frame in frames]
        repairable = [t for t, v in enumerate(verdicts) if v is None]
        if repairable:  # each judged as the only frame of its check: frame 0
            judged = self._judge_frames(frames[repairable], [0] * len(repairable), self._energy_limit(),
                                        stop_at_failure=False)
            for t, (energy, relaxed, failed) in zip(repairable, judged):
                if failed is not None:
                    failed.energies = [energy]
                    verdicts[t] = failed
                else:
                    verdicts[t] = GateVerdict(True, energies=[energy], frames=relaxed[None])
        return verdicts

    def _energy_limit(self) -> float:
        """The largest accepted gate energy, kJ/mol (infinite without the energy check)."""
        if not self.config.check_energy:
            return np.inf
        if self.energy_reference is None:
            raise RuntimeError("the gate has no energy reference: calibrate it or disable check_energy")
        return self.energy_reference.threshold(self.config.energy_z)

    # -- calibration ----------------------------------------------------------
    def calibrate(self, md_frames_nm: np.ndarray, source: str) -> EnergyReference:
        """Measure and adopt the equilibrium statistics from physical MD frames ``[T, N, 3]`` nm."""
        frames = np.asarray(md_frames_nm, dtype=np.float64)
        if self.workers == 1:
            energies = np.array([self.energy(f) for f in frames])
        else:  # side by side on the workers, in order
            energies = np.array([job.result() for job in [self._submit(self.energy, f) for f in frames]])
        if len(energies) < 2 or not np.isfinite(energies).all():
            raise ValueError("calibrating the gate needs at least two MD frames with finite energies")
        self.energy_reference = EnergyReference(
            mean=float(energies.mean()), std=float(energies.std(ddof=1)), maximum=float(energies.max()),
            n_frames=int(len(energies)), key=self.solute.key,
            minimize_iterations=self.config.minimize_iterations, source=source,
        )
        return self.energy_reference

    def reference_matches(self, reference: EnergyReference) -> bool:
        """Whether stored statistics were measured with this gate's energy model and minimisation."""
        return reference.key == self.solute.key and reference.minimize_iterations == self.config.minimize_iterations
