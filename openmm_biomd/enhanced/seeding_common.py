"""What umbrella windows, metadynamics walkers and steered MD share: CV specs, paths, inputs.

- :class:`CVSpec` — a collective variable as a *factory* of fresh OpenMM
  forces (a ``Force`` can belong to one System only, and every window or walker
  builds its own System) plus its numpy twin for path frames.  Two kinds:
  :class:`DistanceCV` (ligand–pocket centroid distance, nm) and
  :class:`PathCV1D` (path progress ``s`` or distance ``z`` of
  :class:`~openmm_biomd.enhanced.cvs.PathCV`).  :data:`CV_KINDS` is the
  registry the command lines use.
- :func:`nearest_frames` / :func:`first_arrival_frames` — which path frame
  starts a window or walker.
- :func:`load_path_frames` / :func:`load_recorded_path` / :func:`load_unbind_attempt` — a generated path
  (``biomd unbind`` output) as ``[T, N, 3]`` nm.
- :func:`add_input_arguments` / :func:`resolve_inputs` — the command-line
  inputs every seeding command takes (system, path, CV, atoms).

Units: nm, ps, K, kJ/mol; a CV's own unit is :attr:`CVSpec.unit`.
"""

from __future__ import annotations

import abc
import argparse
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from biomd_core.config import seed_argument
from biomd_core.io.dcd import dcd_cut_short

from ..data.frame_checks import MAX_COORDINATE_NM, check_frames_fit, first_damaged_frame
from ..data.md import (
    DamagedRunFileError,
    RunMismatchError,
    _atomic_write_bytes,
    _write_topology_pdb,
    damaged_file,
    parse_time_ps,
    read_json,
    system_sha256,
)
from ..data.metadynamics import centroid_distance_force, pocket_atoms, select_atoms
from ..data.systems import BUNDLED_SYSTEMS, LoadedSystem, as_loaded_system
from ..trajectory_io import check_dcd_whole, read_topology, read_trajectory
from .cvs import PathCV

#: the columns of an umbrella window's ``cv.csv``: time (ps) and the CV (its unit), one row per sample
WINDOW_CV_COLUMNS = ["time_ps", "cv"]

__all__ = [
    "WINDOW_CV_COLUMNS",
    "CV_KINDS",
    "CVSpec",
    "DistanceCV",
    "PathCV1D",
    "SeedingInputs",
    "add_input_arguments",
    "add_md_arguments",
    "check_frames",
    "check_path_steps",
    "check_resumable",
    "first_arrival_frames",
    "frames_sha256",
    "load_path_frames",
    "load_recorded_path",
    "load_unbind_attempt",
    "nearest_frames",
    "resolve_inputs",
]

#: Molar gas constant, kJ/(mol K) (CODATA 2018, as ``openmm.unit.MOLAR_GAS_CONSTANT_R``).
GAS_CONSTANT_KJ_MOL_K = 0.00831446261815324


def kt_kj_mol(temperature_k: float) -> float:
    """k_B·T in kJ/mol."""
    return GAS_CONSTANT_KJ_MOL_K * float(temperature_k)


# --------------------------------------------------------------------------- CVs


class CVSpec(abc.ABC):
    """A collective variable: fresh OpenMM forces plus a numpy twin (abstract).

    Subclasses set :attr:`name`, :attr:`unit` and :attr:`jacobian_exponent`
    and implement :meth:`force`, :meth:`values` and :meth:`record`.

    Attributes
    ----------
    name : short name (``"distance"``, ``"path_s"``, ``"path_z"``)
    unit : the CV's unit (``"nm"``, ``"1"``, ``"nm^2"``); force constants are
        kJ/mol per unit², Gaussian widths are in this unit
    jacobian_exponent : ``n`` of the volume element ``x^n dx`` of the CV
        (2 for a distance in 3-D, 0 otherwise); free-energy profiles add
        ``n·kT·ln x`` so that an unbound plateau is flat
    """

    name: str = "cv"
    unit: str = ""
    jacobian_exponent: int = 0

    @abc.abstractmethod
    def force(self) -> Any:
        """A new OpenMM ``Force`` whose energy (kJ/mol) is numerically the CV value."""

    @abc.abstractmethod
    def values(self, frames_nm: np.ndarray) -> np.ndarray:
        """CV values ``[T]`` of frames ``[T, N, 3]`` nm (numpy twin of :meth:`force`)."""

    @abc.abstractmethod
    def record(self) -> dict:
        """JSON-serialisable description; equal records mean the same CV (used for resume checks)."""

    @property
    def atoms(self) -> np.ndarray | None:
        """Indices of the atoms whose positions the CV reads: a path is checked for jumps of these
        (:func:`check_path_steps`); None when the CV does not say (such a path is not checked)."""
        return None


@dataclass(frozen=True, eq=False)
class DistanceCV(CVSpec):
    """Distance between the geometric centroids of the ligand and the pocket, nm.

    Attributes
    ----------
    ligand, pocket : atom indices (disjoint)
    periodic : use periodic images (set from the System)
    """

    ligand: np.ndarray
    pocket: np.ndarray
    periodic: bool = False

    # Plain class attributes (not dataclass fields).
    name = "distance"
    unit = "nm"
    # Radial distance between two points in 3-D: p(r) carries 4πr² at large r.
    jacobian_exponent = 2

    def __post_init__(self) -> None:
        ligand = np.asarray(self.ligand, dtype=int).reshape(-1)
        pocket = np.asarray(self.pocket, dtype=int).reshape(-1)
        if len(ligand) == 0 or len(pocket) == 0:
            raise ValueError("the distance CV needs at least one ligand atom and one pocket atom")
        if np.intersect1d(ligand, pocket).size:
            raise ValueError("ligand and pocket atoms overlap; the pocket must exclude the ligand")
        object.__setattr__(self, "ligand", ligand)
        object.__setattr__(self, "pocket", pocket)

    @property
    def atoms(self) -> np.ndarray:
        return np.union1d(self.ligand, self.pocket)

    def force(self) -> Any:
        return centroid_distance_force(self.ligand, self.pocket, self.periodic)

    def values(self, frames_nm: np.ndarray) -> np.ndarray:
        frames = _frames3(frames_nm)
        return np.linalg.norm(frames[:, self.ligand].mean(1) - frames[:, self.pocket].mean(1), axis=-1)

    def record(self) -> dict:
        return {"kind": "distance", "unit": self.unit, "ligand_atoms": self.ligand.tolist(),
                "pocket_atoms": self.pocket.tolist(), "periodic": bool(self.periodic)}


@dataclass(frozen=True, eq=False)
class PathCV1D(CVSpec):
    """One component of a path CV: progress ``s`` (dimensionless, 0…1) or distance ``z`` (nm²).

    Attributes
    ----------
    path : :class:`~openmm_biomd.enhanced.cvs.PathCV` (nodes, atoms, λ)
    which : ``"s"`` or ``"z"``
    """

    path: PathCV
    which: str = "s"

    def __post_init__(self) -> None:
        if self.which not in ("s", "z"):
            raise ValueError(f"a path CV component is 's' or 'z', not {self.which!r}")

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"path_{self.which}"

    @property
    def unit(self) -> str:  # type: ignore[override]
        return "1" if self.which == "s" else "nm^2"

    @classmethod
    def from_path(cls, frames_nm: np.ndarray, atoms: Any, n_nodes: int = 12, which: str = "s",
                  lambda_per_nm2: float | None = None) -> PathCV1D:
        """Nodes picked along ``frames_nm [T, N, 3]`` nm (see :meth:`PathCV.from_path`)."""
        frames = _frames3(frames_nm)
        if len(frames) < n_nodes:
            raise ValueError(f"the path has {len(frames)} frames, fewer than the {n_nodes} path-CV nodes asked for")
        check_path_steps(frames, atoms)  # (over a jump, the CV had collapsed to one value)
        return cls(PathCV.from_path(frames, atoms, n_nodes, lambda_per_nm2), which)

    @property
    def atoms(self) -> np.ndarray:
        return self.path.atoms

    def force(self) -> Any:
        return self.path.force(self.which)

    def values(self, frames_nm: np.ndarray) -> np.ndarray:
        s, z = self.path.values(_frames3(frames_nm))
        return s if self.which == "s" else z

    def record(self) -> dict:
        nodes = np.ascontiguousarray(self.path.nodes_nm[:, self.path.atoms], dtype=np.float64)
        return {"kind": "path", "which": self.which, "unit": self.unit, "atoms": self.path.atoms.tolist(),
                "n_nodes": self.path.n_nodes, "lambda_per_nm2": self.path.lambda_per_nm2,
                "nodes_sha256": hashlib.sha256(nodes.tobytes()).hexdigest()}


def _distance_cv(frames_nm: np.ndarray, ligand: np.ndarray, pocket: np.ndarray, periodic: bool,
                 n_nodes: int) -> CVSpec:
    return DistanceCV(ligand, pocket, periodic)


def _path_cv(which: str) -> Callable[..., CVSpec]:
    def build(frames_nm: np.ndarray, ligand: np.ndarray, pocket: np.ndarray, periodic: bool, n_nodes: int) -> CVSpec:
        # RMSD after superposition of the ligand alone cannot see the ligand leave (translation is
        # removed), so the path is defined on ligand + pocket: superposing on both keeps the
        # ligand's displacement relative to the pocket.
        atoms = np.union1d(ligand, pocket)
        return PathCV1D.from_path(frames_nm, atoms, n_nodes, which)

    return build


#: ``--cv`` choices: ``name -> build(frames_nm, ligand, pocket, periodic, n_nodes) -> CVSpec``.
CV_KINDS: dict[str, Callable[..., CVSpec]] = {
    "distance": _distance_cv,
    "path": _path_cv("s"),
    "path-z": _path_cv("z"),
}


def cv_record_with_kind(cv: CVSpec) -> dict:
    """:meth:`CVSpec.record` plus name and Jacobian exponent (what run directories store)."""
    return {"name": cv.name, "jacobian_exponent": int(cv.jacobian_exponent), **cv.record()}


# --------------------------------------------------------------------------- frames


def _frames3(frames_nm: Any) -> np.ndarray:
    frames = np.asarray(frames_nm, dtype=np.float64)
    if frames.ndim == 2:
        frames = frames[None]
    if frames.ndim != 3 or frames.shape[-1] != 3:
        raise ValueError(f"frames must have shape [T, N, 3] (nm), got {frames.shape}")
    return frames


def check_frames(frames_nm: Any, system: Any, what: str = "path", cvs: Any = ()) -> np.ndarray:
    """``frames_nm`` as a float64 ``[T, N, 3]`` nm array for OpenMM ``system``; clear errors for an empty path,
    one of another atom count, frames damaged or not fitting the system's bonds
    (:func:`..data.frame_checks.check_frames_fit`), and a path whose atoms of the CVs ``cvs``
    (:class:`CVSpec` or several) jump between frames (:func:`check_path_steps`)."""
    n_atoms = system.getNumParticles()
    frames = np.asarray(frames_nm, dtype=np.float64)
    if frames.size == 0 or frames.ndim != 3 or len(frames) == 0:
        raise ValueError(f"the {what} is empty (shape {frames.shape}); it needs at least one frame [T, N, 3] nm")
    if frames.shape[1:] != (n_atoms, 3):
        raise ValueError(
            f"the {what}'s frames have shape {frames.shape[1:]}, but the system has {n_atoms} particles "
            f"(expected [T, {n_atoms}, 3] nm): a different topology?"
        )
    check_frames_fit(frames, system, what)
    watched = [atoms for cv in ([cvs] if isinstance(cvs, CVSpec) else cvs) if (atoms := cv.atoms) is not None]
    if watched:
        check_path_steps(frames, np.unique(np.concatenate(watched)), what)
    return np.ascontiguousarray(frames)


#: Largest change of the distance between two CV atoms from one path frame to the next, nm.  Above what a
#: guest travels between frames of a real exit: on host–guest (ligand and host atoms) the largest step was
#: 0.82 nm over 10 metadynamics paths (1 ps frames) and 1.43 nm over 20 generated ones (`biomd unbind`, 5 ps
#: apart after the exit), measured 2026-12-07.  A step beyond it is a broken frame (a teleported ligand, two
#: trajectories glued together, a periodic wrap), and a window or walker seeded from it, or a bias grid or path
#: CV stretched over it, measures nothing (such a path had given a free energy without a word).  Distances, so
#: the complex diffusing or turning as a whole is no jump.
MAX_PATH_STEP_NM = 3.0


def check_path_steps(frames_nm: Any, atoms: Any, what: str = "path") -> None:
    """Refuse a path ``[T, N, 3]`` nm in which the distance between two of ``atoms`` changes by more than
    :data:`MAX_PATH_STEP_NM` between consecutive frames."""
    frames = _frames3(frames_nm)[:, np.asarray(atoms, dtype=int)]  # [T, A, 3]
    # [T, A, A] distances at once can be GBs: a frame at a time
    distances = (np.linalg.norm(x[:, None] - x[None], axis=-1) for x in frames)  # each [A, A] nm
    previous = next(distances, None)
    steps = []  # [T - 1] nm
    for current in distances:
        steps.append(np.abs(current - previous).max())
        previous = current
    steps = np.asarray(steps)
    jumps = np.flatnonzero(steps > MAX_PATH_STEP_NM)
    if len(jumps):
        t = int(jumps[0])
        raise ValueError(
            f"the {what} jumps between frames {t} and {t + 1}: the distance between two atoms of the CV (ligand "
            f"and pocket) changes by {steps[t]:.3g} nm (more than {MAX_PATH_STEP_NM:g} nm; {len(jumps)} such "
            "step(s)). A frame is broken (a teleported ligand, two trajectories glued together, or a periodic "
            "wrap): remove that frame, unwrap the trajectory (e.g. mdtraj's image_molecules), or give a path whose "
            "frames are closer in time"
        )


def frames_sha256(frames_nm: np.ndarray) -> str:
    """Hash of a path (float32-rounded, so a DCD round trip keeps it)."""
    return hashlib.sha256(np.ascontiguousarray(frames_nm, dtype=np.float32).tobytes()).hexdigest()


def nearest_frames(path_values: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Index of the path frame whose CV is nearest each target (first such frame on ties).

    Parameters
    ----------
    path_values : ``[T]`` CV of each path frame
    targets : ``[W]`` CV values

    Returns
    -------
    np.ndarray
        ``[W]`` int frame indices.
    """
    values = np.asarray(path_values, dtype=np.float64)
    return np.argmin(np.abs(values[None, :] - np.asarray(targets, dtype=np.float64)[:, None]), axis=1)


def first_arrival_frames(path_values: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Index of the path frame at which the path *first arrives* at each target, coming from its start.

    For a target the path reaches, the last frame before it first passes the
    target (or the frame that lands on it exactly); for a target beyond the
    path's reach, the frame of the furthest progress.  "Passing" is in the
    direction the path travels (start to end; a path whose CV falls is read
    mirrored), so a target inside a gap — the path jumping over it between two
    frames — is seeded from the frame *before* the jump and pulled forward by
    its restraint, as a steered pull would arrive there, never pushed back from
    a frame that already went past.  Why it matters: the CV is one coordinate
    among many, and a frame past the gap can hold the others in a state the
    windows cannot leave in their time (a guest lying flat across the portal it
    left, a rod that already turned; BENCHMARKS.md, host–guest umbrella).  On a
    path dense in the CV the choice is the nearest frame from below.

    Arguments and result as :func:`nearest_frames` (``[T]`` path CV in time
    order, ``[W]`` targets -> ``[W]`` int frame indices).
    """
    values = np.asarray(path_values, dtype=np.float64)
    direction = 1.0 if values[-1] >= values[0] else -1.0
    progress = direction * values  # increases on the way out
    targets = direction * np.asarray(targets, dtype=np.float64)
    frames = np.empty(len(targets), dtype=int)
    for w, target in enumerate(targets):
        passed = np.flatnonzero(progress >= target)
        if len(passed) == 0:  # beyond the path's reach
            frames[w] = int(np.argmax(progress))
        elif progress[passed[0]] == target or passed[0] == 0:
            frames[w] = int(passed[0])
        else:  # the (first) frame of the furthest progress before the first passage
            frames[w] = int(np.argmax(progress[: passed[0]]))
    return frames


def load_path_frames(path: str | os.PathLike, topology: str | os.PathLike | None = None,
                     check_whole: bool = True, what: str = "path file",
                     topology_flag: str = "--topology") -> np.ndarray:
    """Frames of a trajectory file as ``[T, N, 3]`` float64 nm (mdtraj reads DCD, XTC, ...).

    ``topology`` (a PDB) is needed for formats without one; default
    ``topology.pdb`` beside the file or one directory up (a ``biomd unbind``
    layout: ``DIR/topology.pdb``, ``DIR/attempt_000/path.dcd``).  A DCD cut short is refused
    (:func:`~openmm_biomd.trajectory_io.check_dcd_whole`) unless ``check_whole`` is off (a caller that
    compares the frame count with a record of its own).  Errors name the file as ``what`` and its
    topology's option as ``topology_flag`` (:func:`~openmm_biomd.trajectory_io.read_trajectory`).
    """
    path = Path(path)
    if topology is None:
        topology = next((candidate for candidate in (path.parent / "topology.pdb", path.parent.parent / "topology.pdb")
                         if candidate.exists()), None)
    if check_whole and path.suffix.lower() == ".dcd" and path.is_file():
        check_dcd_whole(path)
    traj = read_trajectory(path, what, topology, topology_flag)
    return np.ascontiguousarray(traj.xyz, dtype=np.float64)


def load_recorded_path(path: str | os.PathLike, topology: str | os.PathLike, n_frames: int | None,
                       remedy: str | None = None) -> np.ndarray:
    """Frames ``[T, N, 3]`` nm of a path a run wrote, whose record says it holds ``n_frames`` (``None``: a
    record from before the count was kept, not checked).

    A file that cannot be read, or holds another number of frames, raises
    :class:`~openmm_biomd.data.md.DamagedRunFileError` with ``remedy``: mdtraj reads a DCD cut short as
    the frames it still has, with no more than a warning from its C plugin.
    """
    if not Path(path).exists():  # (had been a bare "does not exist")
        raise FileNotFoundError(f"{path}, written by the run, is missing. "
                                f"{remedy or 'Restore it from a copy, or start again in a new output directory.'}")
    check_run_topology(topology)
    try:
        frames = load_path_frames(path, topology, check_whole=False)
    except ValueError as e:
        raise damaged_file(path, f"it cannot be read as a trajectory ({e})", remedy) from e
    if (frame := first_damaged_frame(frames)) is not None:  # (NaN had been numpy's "SVD did not converge")
        raise damaged_file(path, f"frame {frame} holds coordinates that are not finite or lie beyond "
                                 f"{MAX_COORDINATE_NM:g} nm", remedy)
    if n_frames is None and Path(path).suffix.lower() == ".dcd" and (why := dcd_cut_short(path)):
        raise damaged_file(path, why, remedy)
    if n_frames is not None and len(frames) != n_frames:
        raise damaged_file(path, f"it holds {len(frames)} frames, the run's record {n_frames}", remedy)
    return frames


def check_run_topology(topology: str | os.PathLike) -> None:
    """Raise :class:`~openmm_biomd.data.md.DamagedRunFileError` naming a run's ``topology.pdb`` when it is missing
    or unreadable: it had been reported as damage to the good trajectory read with it, whose remedy (delete the
    attempt, pull again) threw the trajectory away and left the topology as it was."""
    try:
        read_topology(topology, "the run's topology")
    except FileNotFoundError:
        problem = "is missing"
    except ValueError as e:  # (read_topology's own remedy left out: this one says more)
        problem = f"cannot be read ({str(e).split(': restore')[0]})"
    else:
        return
    raise DamagedRunFileError(
        f"{topology} {problem}: the run's trajectories are read with it (they are not at fault). Restore it from a "
        "copy, or delete it and rerun the command that wrote this folder: it writes it again from the system")


def load_unbind_attempt(run_dir: str | os.PathLike, attempt: int | None = None) -> tuple[np.ndarray, dict, int]:
    """One generated path of a ``biomd unbind`` run: ``(frames [T, N, 3] nm, summary dict, attempt)``.

    ``attempt=None`` takes the run's first successful attempt (``first_success_attempt``).
    """
    run = Path(run_dir)
    summary_path = run / "summary.json"
    if not summary_path.exists():
        raise FileNotFoundError(f"{run} has no summary.json: not a biomd unbind output directory")
    summary = read_json(summary_path)
    if attempt is None:
        attempt = summary.get("first_success_attempt")
        if attempt is None:
            raise ValueError(f"no attempt of {run} left the pocket; pass --attempt N to use an unsuccessful path")
    dcd = run / f"attempt_{int(attempt):03d}" / "path.dcd"
    if not dcd.exists():
        found = sorted(p.parent.name for p in run.glob("attempt_*/path.dcd"))
        raise FileNotFoundError(f"{dcd} does not exist; attempts with a path: {', '.join(found) or 'none'}")
    recorded = next((r for r in summary.get("results", []) if r.get("attempt") == int(attempt)), {})
    frames = load_recorded_path(dcd, run / "topology.pdb", recorded.get("n_frames"), unbind_attempt_remedy(dcd.parent))
    return frames, summary, int(attempt)


def unbind_attempt_remedy(folder: Path) -> str:
    """What to do about a damaged file of a ``biomd unbind`` attempt directory ``folder``."""
    return (f"Delete {folder} and rerun the same biomd unbind command: that attempt is generated again from its own "
            "seed (the others are kept).")


# --------------------------------------------------------------------------- run directories


def check_resumable(old: dict, new: dict, keys: tuple[str, ...], out: Path, grow: tuple[str, ...] = ()) -> None:
    """Refuse to continue a run directory made with different settings.

    ``keys`` are compared at the top level; ``new["settings"]`` entry by entry
    except those in ``grow`` (which may increase, never decrease).
    """
    diffs = [f"{k}: {old.get(k)!r} on disk, {new.get(k)!r} now" for k in keys if old.get(k) != new.get(k)]
    for k, v in new["settings"].items():
        a = old.get("settings", {}).get(k)
        if k in grow:
            if a is not None and v < a:
                diffs.append(f"{k}: {a!r} on disk, {v!r} now (a run can be extended, not shortened)")
        elif a != v:
            diffs.append(f"settings.{k}: {a!r} on disk, {v!r} now")
    if diffs:
        raise RunMismatchError(
            f"{out} holds a run made with different settings, refusing to mix them: " + "; ".join(diffs)
            + ". Use the same settings or a new output directory."
        )


def run_record(loaded: LoadedSystem, cv_records: list[dict], frames_nm: np.ndarray | None) -> dict:
    """Provenance shared by every seeding run directory."""
    return {
        "system": loaded.description.get("name"),
        "source": loaded.description,
        "n_atoms": loaded.system.getNumParticles(),
        "system_sha256": system_sha256(loaded.system),
        "cv": cv_records,
        "path_sha256": None if frames_nm is None else frames_sha256(frames_nm),
        "path_frames": None if frames_nm is None else int(len(frames_nm)),
    }


def write_common_files(out: Path, loaded: LoadedSystem, cvs: list[CVSpec]) -> None:
    """``topology.pdb`` and, for path CVs, ``path_nodes_<name>.npy`` (full-system nodes, nm)."""
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "topology.pdb").exists():
        _write_topology_pdb(out / "topology.pdb", loaded)
    for cv in cvs:
        if isinstance(cv, PathCV1D):
            import io

            buffer = io.BytesIO()
            np.save(buffer, np.asarray(cv.path.nodes_nm, dtype=np.float64))
            _atomic_write_bytes(out / f"path_nodes_{cv.name}.npy", buffer.getvalue())


# --------------------------------------------------------------------------- command line


class SeedingInputs(NamedTuple):
    """What a seeding command resolved from its arguments.

    Attributes
    ----------
    loaded : the system (positions = its own start pose)
    frames_nm : ``[T, N, 3]`` nm path frames, or None (steered MD without a path)
    ligand, pocket : atom indices
    cv_kind : ``--cv`` value
    path_source : words saying where the path came from
    """

    loaded: LoadedSystem
    frames_nm: np.ndarray | None
    ligand: np.ndarray
    pocket: np.ndarray
    cv_kind: str
    path_source: str | None

    def build_cv(self, n_nodes: int = 12, kind: str | None = None) -> CVSpec:
        """The CV (``kind`` defaults to ``--cv``); path CVs need the path."""
        kind = kind or self.cv_kind
        if kind not in CV_KINDS:
            raise ValueError(f"unknown CV {kind!r}; choose one of {', '.join(CV_KINDS)}")
        if kind.startswith("path") and self.frames_nm is None:
            raise ValueError("a path CV needs a path: give --path FILE or --unbind DIR")
        periodic = self.loaded.system.usesPeriodicBoundaryConditions()
        return CV_KINDS[kind](self.frames_nm, self.ligand, self.pocket, periodic, n_nodes)


def add_input_arguments(p: argparse.ArgumentParser, path_required: bool = True, path_note: str = "") -> None:
    """System, path, CV and atom-selection arguments (shared by umbrella, walkers, steer).

    ``path_required=False`` leaves the check to the command (``path_note`` says when it is optional).
    """
    src = p.add_argument_group("system (default: the one recorded in the unbind run)")
    system = src.add_mutually_exclusive_group()
    system.add_argument("--system", help="bundled system, e.g. host-guest")
    system.add_argument("--inputs", nargs="+", metavar="FILE",
                        help="your inputs: a.prmtop a.inpcrd | system.xml state.xml top.pdb | "
                             "x.pdb (with --forcefield) | x.top x.gro")
    src.add_argument("--forcefield", nargs="+", metavar="XML", help="force-field XMLs for a PDB input")
    src.add_argument("--implicit-solvent", choices=["HCT", "OBC1", "OBC2", "GBn", "GBn2"],
                     help="for Amber/GROMACS inputs")
    src.add_argument("--constraints", default="HBonds", choices=["none", "HBonds", "AllBonds", "HAngles"])
    path = p.add_argument_group("path" + (f" ({path_note})" if path_note else ""))
    where = path.add_mutually_exclusive_group(required=path_required)
    where.add_argument("--path", help="trajectory of the path (DCD, ...), frames in time order bound -> unbound")
    where.add_argument("--unbind", metavar="DIR", help="a biomd unbind output directory (with --attempt)")
    path.add_argument("--attempt", type=int, help="attempt of --unbind to use (default: its first successful one)")
    path.add_argument("--topology", help="PDB topology of --path (default: topology.pdb beside it or one level up)")
    cv = p.add_argument_group("collective variable")
    cv.add_argument("--cv", default="distance", choices=sorted(CV_KINDS),
                    help="distance: ligand-pocket centroid distance (nm); path: path progress s (0..1); "
                         "path-z: distance from the path (nm^2)")
    cv.add_argument("--ligand",
                    help="mdtraj selection of the ligand (default: unbind run's atoms or the system's ligand residue)")
    cv.add_argument("--pocket",
                    help="mdtraj selection of the pocket (default: unbind run's atoms or the system's pocket)")
    cv.add_argument("--pocket-radius", type=float, default=0.5,
                    help="pocket = receptor heavy atoms this close to the ligand in the first frame, nm "
                         "(when there is no other default)")
    cv.add_argument("--path-nodes", type=int, default=12, help="nodes of the path CV (default 12)")


def add_md_arguments(p: argparse.ArgumentParser, equilibration: str = "2ps") -> None:
    """Thermostat, seed and platform arguments."""
    md = p.add_argument_group("molecular dynamics")
    md.add_argument("--temperature", type=float, default=300.0, help="K (default 300)")
    md.add_argument("--timestep", default="2fs", help="integrator step (default 2fs)")
    md.add_argument("--friction", type=float, default=1.0, help="Langevin friction, 1/ps (default 1)")
    md.add_argument("--equilibration", default=equilibration, help=f"MD before recording (default {equilibration})")
    md.add_argument("--seed", type=seed_argument, default=0, help="master seed")
    md.add_argument("--platform", help="OpenMM platform (default CUDA if present, else CPU)")
    md.add_argument("--threads", type=int, help="CPU platform threads")
    p.add_argument("--out", required=True, help="output directory (rerun the same command to resume)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def md_kwargs(args: argparse.Namespace) -> dict:
    """Settings keywords from :func:`add_md_arguments`'s arguments."""
    return {
        "temperature_k": float(args.temperature),
        "timestep_fs": parse_time_ps(args.timestep) * 1000.0,
        "friction_per_ps": float(args.friction),
        "equilibration_ps": parse_time_ps(args.equilibration),
        "seed": int(args.seed),
    }


def resolve_inputs(args: argparse.Namespace) -> SeedingInputs:
    """System, path frames and ligand/pocket atoms from :func:`add_input_arguments`'s arguments.

    The system comes from ``--system``/``--inputs``, else from the unbind run's
    ``summary.json`` (its recorded inputs).  Ligand and pocket: explicit
    selections, else the unbind run's ``ligand_atoms``/``pocket_atoms``, else the
    bundled system's ligand residue and pocket selection, else receptor heavy
    atoms within ``--pocket-radius`` of the ligand in the first frame.
    """
    if not 0 < args.pocket_radius < np.inf:  # (a negative one had been accepted, and ignored or empty)
        raise ValueError(f"--pocket-radius must be a positive finite distance (nm), got {args.pocket_radius}")
    summary: dict = {}
    frames = None
    source = None
    if getattr(args, "unbind", None):
        frames, summary, attempt = load_unbind_attempt(args.unbind, args.attempt)
        source = f"{args.unbind} attempt {attempt}"
    elif getattr(args, "path", None):
        frames = load_path_frames(args.path, args.topology)
        source = str(args.path)

    if args.inputs:
        from ..data.inputs import load_input_files

        extra = {"implicit_solvent": args.implicit_solvent} if args.implicit_solvent else {}
        loaded = load_input_files(args.inputs, forcefield=args.forcefield or (), constraints=args.constraints, **extra)
        bundled = None
    elif args.system:
        loaded = as_loaded_system(args.system)
        bundled = BUNDLED_SYSTEMS.get(args.system)
    else:
        # biomd unbind records the system's description (with the inputs that rebuild it) as "system";
        # data-generation summaries as "source".
        description = next((d for d in (summary.get("system"), summary.get("source")) if isinstance(d, dict)), {})
        inputs = description.get("inputs")
        if not inputs:
            raise ValueError(
                "give the system: --system NAME or --inputs FILES (the path alone does not carry a force field)"
            )
        from ..data.md import rebuild_system

        loaded = rebuild_system({"source": description})
        bundled = BUNDLED_SYSTEMS.get(inputs.get("bundled", ""))
    n_atoms = loaded.system.getNumParticles()
    if frames is not None:
        if summary.get("modelled_atoms") not in (None, n_atoms) and frames.shape[1] != n_atoms:
            raise ValueError(
                f"the unbind run's paths hold its {summary['modelled_atoms']} modelled atoms, the system has {n_atoms} "
                "particles (solvent not modelled?): seeding MD needs every particle's position"
            )
        frames = check_frames(frames, loaded.system)

    if args.ligand:
        ligand = select_atoms(loaded.topology, args.ligand, "--ligand selection")
    elif summary.get("ligand_atoms"):
        ligand = np.asarray(summary["ligand_atoms"], dtype=int)
    else:
        residue = bundled.ligand_residue if bundled else loaded.description.get("ligand_residue")
        if not residue:
            raise ValueError("this system has no known ligand: give --ligand (an mdtraj selection, e.g. 'resname LIG')")
        ligand = select_atoms(loaded.topology, f"resname {residue}")
    if args.pocket:
        pocket = np.setdiff1d(select_atoms(loaded.topology, args.pocket, "--pocket selection"), ligand)
        if len(pocket) == 0:
            raise ValueError(f"pocket selection {args.pocket!r} has no atom outside the ligand")
    elif summary.get("pocket_atoms") and not args.ligand:
        pocket = np.asarray(summary["pocket_atoms"], dtype=int)
    elif bundled is not None and bundled.pocket_selection:
        pocket = np.setdiff1d(select_atoms(loaded.topology, bundled.pocket_selection), ligand)
    else:
        bound = frames[0] if frames is not None else loaded.positions
        pocket = pocket_atoms(loaded.topology, bound, ligand, args.pocket_radius)
    if len(pocket) == 0:  # (--ligand all had been numpy's "zero-size array to reduction operation maximum")
        raise ValueError(f"no pocket atom is left outside the ligand ({len(ligand)} atoms): give a --ligand that "
                         "selects the ligand alone, or the pocket with --pocket")
    if ligand.max() >= n_atoms or pocket.max() >= n_atoms:
        raise ValueError(f"ligand/pocket atom indices exceed the system's {n_atoms} particles")
    return SeedingInputs(loaded, frames, ligand, pocket, args.cv, source)
