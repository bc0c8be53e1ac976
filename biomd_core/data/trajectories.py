"""Training data from MD trajectories on disk (DCD, XTC, HDF5, … via mdtraj).

A :class:`DataSpec` names trajectory files of one system and its topology;
:func:`load_dataset` reads them, keeps the modelled atoms, resamples frames to
the model's Δt, optionally drops stretches where the ligand is not bound, and
splits train/validation **by trajectory** (frames of one trajectory are
correlated, so a frame split would leak).  Several specs (systems) can be
combined; they are padded into one :class:`~biomd_core.model.SystemBatch`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..featurize.bond_lengths import check_bonds_fit, check_residues_whole
from ..io.dcd import dcd_frame_spacing_ps, load_quietly, quiet_c_stdout, read_dcd_header
from ..io.frame_times import file_frame_spacing_ps
from ..training.windows import TrajectorySet


@dataclass(frozen=True)
class DataSpec:
    """Trajectories of one system.

    Attributes
    ----------
    trajectories : files readable by mdtraj, or directories whose trajectory
        files (e.g. ``biomd generate-data``'s ``replica_000/chunk_*.dcd``) are the
        consecutive chunks of one trajectory; globs allowed
    topology : topology file (PDB, prmtop, …); for HDF5 trajectories it may be empty
    frame_interval_ps : time between stored frames, ps; 0 reads it from the
        ``metadata.json`` that ``biomd generate-data`` writes beside the replicas
    selection : modelled atoms (see :func:`~biomd_core.featurize.featurize`)
    ligand_sdf : optional SDF/mol2 with the ligand's bond orders
    drop_unbound : keep only stretches where the ligand centroid stays within
        ``bound_cutoff_nm`` of the pocket centroid (pocket: receptor heavy atoms
        within 0.5 nm of the ligand in the first frame)
    bound_cutoff_nm : see ``drop_unbound``
    all_stride_phases : when the data are finer than the model's Δt (stride
        ``s > 1``), use every phase ``traj[p::s]``, ``p < s``, as its own
        trajectory (``s`` times the windows from the same MD); phases of one
        source stay on the same side of the train/validation split
    """

    trajectories: tuple[str, ...] = ()
    topology: str = ""
    frame_interval_ps: float = 0.0
    selection: str = "solute"
    ligand_sdf: str = ""
    drop_unbound: bool = False
    bound_cutoff_nm: float = 0.6
    all_stride_phases: bool = False

    def __post_init__(self) -> None:
        # (a negative or NaN interval had silently fallen back to the metadata's)
        if not 0 <= self.frame_interval_ps < math.inf:
            raise ValueError(f"data frame_interval_ps must be >= 0 and finite (0: read it from the data), "
                             f"got {self.frame_interval_ps}")
        if not 0 < self.bound_cutoff_nm < math.inf:
            raise ValueError(f"data bound_cutoff_nm must be positive and finite, got {self.bound_cutoff_nm}")


@dataclass
class Dataset:
    """Systems and their train/validation trajectories.

    ``graphs[i]`` is the i-th system; trajectory sets index into it.
    """

    graphs: list
    train: TrajectorySet
    validation: TrajectorySet
    provenance: dict = field(default_factory=dict)


TRAJECTORY_SUFFIXES = (".dcd", ".xtc", ".trr", ".h5", ".nc", ".netcdf", ".lh5")


def chunk_files(path: Path) -> list[Path]:
    """The trajectory files making up ``path``: itself, or a directory's files in name order."""
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in TRAJECTORY_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"directory {path} holds no trajectory files ({', '.join(TRAJECTORY_SUFFIXES)})")
    return files


def recorded_frame_interval_ps(first: Path) -> tuple[float | None, str]:
    """How far apart the frames of the trajectory file ``first`` are as its data record it, and where that is
    said: the ``metadata.json`` ``biomd generate-data`` writes beside the replicas (``"metadata"``), else an
    OpenMM DCD's header (``"header"``) or the frame times of an XTC, TRR or NetCDF file (``"frame times"``);
    ``(None, "")`` when none says (another tool's metadata.json, another DCD layout, mdtraj's placeholders)."""
    import json

    for meta in (first.parent / "metadata.json", first.parent.parent / "metadata.json"):
        if meta.exists():
            try:
                return float(json.loads(meta.read_text())["frame_interval_ps"]), "metadata"
            except (OSError, ValueError, KeyError, TypeError):
                break
    if first.suffix.lower() == ".dcd":
        try:
            spacing, source = dcd_frame_spacing_ps(read_dcd_header(first)), "header"
        except (OSError, ValueError):
            spacing = None
    else:  # (an XTC's times had been ignored: frame_interval_ps was required)
        spacing, source = file_frame_spacing_ps(first), "frame times"
    return (spacing, source) if spacing is not None else (None, "")


def data_frame_interval_ps(spec: "DataSpec", first: Path) -> float:
    """The spec's frame interval, or the one the data record (:func:`recorded_frame_interval_ps`).

    A spec's interval that generate-data's metadata contradict is refused (0.5 ps given for frames 1 ps apart
    had trained every window on a time axis off by two); one that a DCD header or a file's frame times
    contradict only warns, as tools that stride a DCD may keep its old header.
    """
    import warnings

    recorded, source = recorded_frame_interval_ps(first)
    if spec.frame_interval_ps > 0:
        if recorded is not None and abs(recorded - spec.frame_interval_ps) > 1e-3 * recorded:
            said = f"the data's frame_interval_ps is {spec.frame_interval_ps:g} but {first} records frames " \
                   f"{recorded:g} ps apart"
            if source == "metadata":
                raise ValueError(f"{said} (its generate-data metadata.json): give {recorded:g}, or leave "
                                 "frame_interval_ps out")
            where = "its DCD header" if source == "header" else "its frame times"
            warnings.warn(f"{said} in {where}; {spec.frame_interval_ps:g} ps is used, as given", stacklevel=2)
        return spec.frame_interval_ps
    if recorded is not None:
        return recorded
    raise ValueError(f"frame_interval_ps is not set for {first}, and neither a generate-data metadata.json beside it "
                     "nor its own header or frame times say how far apart its frames are: set the data's "
                     "frame_interval_ps")


def expand_paths(patterns: tuple | list) -> list[Path]:
    """Files matching each pattern, in sorted order; an unmatched pattern is an error."""
    out: list[Path] = []
    for pattern in patterns:
        p = Path(pattern)
        matches = sorted(p.parent.glob(p.name)) if any(c in p.name for c in "*?[") else [p]
        matches = [m for m in matches if m.exists()]
        if not matches:
            raise FileNotFoundError(f"no trajectory file matches {pattern!r}")
        out.extend(matches)
    return out


def resample_stride(data_interval_ps: float, model_interval_ps: float) -> int:
    """Frames to skip so the data's interval becomes the model's Δt (must divide exactly)."""
    ratio = model_interval_ps / data_interval_ps
    if ratio < 1 - 1e-9 or abs(ratio - round(ratio)) > 1e-6:
        raise ValueError(
            f"the model's frame interval {model_interval_ps} ps is not a whole multiple of the data's "
            f"{data_interval_ps} ps; write frames more often or choose a model Δt that is"
        )
    return int(round(ratio))


def bound_segments(frames_nm: np.ndarray, ligand: np.ndarray, pocket: np.ndarray, cutoff_nm: float) -> list[slice]:
    """Maximal runs of frames whose ligand–pocket centroid distance is at most ``cutoff_nm``.

    ``frames_nm [F, N, 3]``; ``ligand``, ``pocket``: atom indices.
    """
    d = np.linalg.norm(frames_nm[:, ligand].mean(1) - frames_nm[:, pocket].mean(1), axis=-1)
    bound = np.concatenate([[False], d <= cutoff_nm, [False]])
    edges = np.flatnonzero(np.diff(bound.astype(int)))
    return [slice(a, b) for a, b in zip(edges[::2], edges[1::2])]


def pocket_atoms(frame_nm: np.ndarray, graph, radius_nm: float = 0.5) -> np.ndarray:
    """Non-ligand heavy atoms within ``radius_nm`` of any ligand atom (indices into modelled atoms)."""
    lig = np.flatnonzero(graph.ligand_mask)
    if len(lig) == 0:
        raise ValueError("drop_unbound needs a ligand, but the selection has no ligand atoms")
    heavy = np.array([e != "H" for e in graph.element_labels])
    receptor = np.flatnonzero(~graph.ligand_mask & heavy)
    d = np.linalg.norm(frame_nm[receptor, None] - frame_nm[None, lig], axis=-1).min(1)
    pocket = receptor[d <= radius_nm]
    if len(pocket) == 0:
        raise ValueError(f"no receptor atom within {radius_nm} nm of the ligand in the first frame: is it bound?")
    return pocket


def check_chunks_continue(chunks: list[Path]) -> None:
    """Refuse the DCD chunks of a ``biomd generate-data`` replica whose headers say frames are missing between two
    of them (a chunk deleted or moved: the rest had been joined into one trajectory with a silent jump in time).
    Only its chunks are checked (``chunk_NNNNN.dcd`` in a replica folder beside the run's ``metadata.json``):
    other writers' headers need not count steps across files (mdtraj starts every file at step 0, and each new
    OpenMM Simulation at its own step 0)."""
    if len(chunks) < 2 or not (chunks[0].parent.parent / "metadata.json").exists() \
            or not all(re.fullmatch(r"chunk_\d{5}\.dcd", path.name) for path in chunks):
        return
    headers = []
    for path in chunks:
        try:
            headers.append(read_dcd_header(path))
        except (OSError, ValueError):
            headers.append(None)  # (named when it is read)
    for (a, ha), (b, hb) in zip(zip(chunks, headers), zip(chunks[1:], headers[1:])):
        if ha is None or hb is None or min(ha["first_step"], hb["first_step"], ha["interval_steps"]) <= 0 \
                or ha["interval_steps"] != hb["interval_steps"]:
            continue
        expected = ha["first_step"] + ha["n_frames"] * ha["interval_steps"]
        if hb["first_step"] != expected:
            raise ValueError(f"{b} does not continue {a}: it begins at step {hb['first_step']}, where the next frame "
                             f"after {a.name} is at step {expected} (a chunk deleted or moved?). Restore the missing "
                             f"chunk, or rerun the generate-data command that made {b.parent.parent} (it names the "
                             "damage, and generates a deleted replica folder again)")


def recorded_replica_frames(path: Path) -> int | None:
    """The frames ``biomd generate-data``'s ``metadata.json`` records for the replica folder ``path``
    (``replica_NNN``), or None when ``path`` is not one (another layout, or a record that does not say)."""
    import json

    match = re.fullmatch(r"replica_(\d{3})", path.name)
    if not path.is_dir() or match is None:
        return None
    try:
        recorded = json.loads((path.parent / "metadata.json").read_text())["frames_per_replica"][int(match.group(1))]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
    return recorded if isinstance(recorded, int) else None


def _load_whole(path: Path, topology) -> object:
    """mdtraj's trajectory of ``path``, once a DCD is known to be whole (mdtraj reads one cut short as the frames
    left, which would put a silent gap in time into the training data)."""

    from ..io.dcd import dcd_cut_short

    if Path(path).suffix.lower() == ".dcd" and (why := dcd_cut_short(path)):
        raise ValueError(f"{path} is damaged: {why}. Restore it from a copy, or leave it out of the data")
    try:
        return load_quietly(path, top=topology)
    except (ValueError, OSError) as exc:  # (mdtraj's "xyz must be shape (Any, 156, 3)" named no file)
        raise ValueError(f"cannot read {path} with the data's topology ({topology.n_atoms} atoms): {exc}. Give each "
                         "system's trajectories in a data entry of their own, with their topology") from None


def load_system_trajectories(
    spec: DataSpec, model_interval_ps: float, vocabs=None, files: list[Path] | None = None
) -> tuple[object, list[np.ndarray]]:
    """Featurise a spec's system and read its trajectories as ``[F, N, 3]`` float32 nm at the model's Δt.

    ``files`` are the spec's expanded paths when the caller already has them.
    Returns ``(graph, trajectories, sources)``: ``sources[j]`` is the index in
    ``files`` that trajectory ``j`` was cut from (bound segments, stride phases).
    """
    import mdtraj

    from ..featurize import featurize

    files = files if files is not None else expand_paths(spec.trajectories)
    stride = resample_stride(data_frame_interval_ps(spec, chunk_files(files[0])[0]), model_interval_ps)
    top = spec.topology or None
    try:
        with quiet_c_stdout():
            first = mdtraj.load_frame(str(chunk_files(files[0])[0]), 0, top=top)
    except (ValueError, OSError) as exc:  # (mdtraj's "xyz must be shape (Any, 156, 3)" named no file)
        raise ValueError(f"cannot read {chunk_files(files[0])[0]} with topology {top}: {exc}. Give the topology "
                         "the trajectories were written with") from None
    graph = featurize(first, selection=spec.selection, ligand_sdf=spec.ligand_sdf or None, vocabs=vocabs)
    check_residues_whole(graph, first.topology, f"topology {top or chunk_files(files[0])[0]}")
    trajectories, sources = [], []
    phases = range(stride) if spec.all_stride_phases else range(1)
    for source, path in enumerate(files):
        # Chunks are joined before striding so the stride runs across chunk boundaries.
        chunks = chunk_files(path)
        check_chunks_continue(chunks)
        full = mdtraj.join([_load_whole(f, first.topology) for f in chunks], check_topology=False)
        if (recorded := recorded_replica_frames(path)) is not None and full.n_frames < recorded:
            # (its last chunk deleted had trained on a shorter trajectory without a word)
            raise ValueError(f"{path} holds {full.n_frames} frames, where its run's metadata.json records {recorded}: "
                             f"a chunk is missing. Restore it, or rerun the generate-data command that made "
                             f"{path.parent} (it names the damage, and generates a deleted replica folder again)")
        if full.unitcell_vectors is not None:
            # Bonded geometry must be whole: undo wrapping across periodic boundaries.
            full.image_molecules(inplace=True)
        all_frames = full.xyz[:, graph.atom_indices].astype(np.float32)
        if not np.isfinite(all_frames).all():
            raise ValueError(f"{path} contains NaN or infinite coordinates")
        # a topology of the same atoms in another order had trained on torn molecules without a word
        check_bonds_fit(all_frames, graph.bonds, f"trajectory {path} (topology {spec.topology or 'its own'})")
        for phase in phases:
            frames = all_frames[phase::stride]
            if spec.drop_unbound:
                pocket = pocket_atoms(frames[0], graph)
                segments = bound_segments(frames, np.flatnonzero(graph.ligand_mask), pocket, spec.bound_cutoff_nm)
                pieces = [frames[s] for s in segments]
            else:
                pieces = [frames]
            trajectories.extend(pieces)
            sources.extend([source] * len(pieces))
    return graph, trajectories, sources


def split_by_trajectory(n: int, validation_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices of training and validation trajectories (at least one training trajectory)."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(validation_fraction * n))
    n_val = min(n_val, n - 1)
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


def load_dataset(
    specs: list[DataSpec], model_interval_ps: float, validation_fraction: float = 0.1, seed: int = 0, vocabs=None
) -> Dataset:
    """Read every spec; split train/validation by trajectory, per system."""
    graphs, train_frames, train_sys, val_frames, val_sys = [], [], [], [], []
    provenance = {"systems": []}
    for i, spec in enumerate(specs):
        files = expand_paths(spec.trajectories)
        graph, trajs, sources = load_system_trajectories(spec, model_interval_ps, vocabs, files)
        graphs.append(graph)
        # split source trajectories, then take every piece (stride phase, bound segment) of each
        train_src, val_src = split_by_trajectory(len(files), validation_fraction, seed + i)
        train_idx = [j for j, src in enumerate(sources) if src in set(train_src)]
        val_idx = [j for j, src in enumerate(sources) if src in set(val_src)]
        train_frames += [trajs[j] for j in train_idx]
        train_sys += [i] * len(train_idx)
        val_frames += [trajs[j] for j in val_idx]
        val_sys += [i] * len(val_idx)
        provenance["systems"].append(
            {
                "trajectories": [str(p) for p in files],
                "topology": spec.topology,
                "fingerprint": graph.fingerprint(),
                "n_atoms": graph.n_atoms,
                "train_frames": int(sum(len(trajs[j]) for j in train_idx)),
                "validation_frames": int(sum(len(trajs[j]) for j in val_idx)),
                "frame_interval_ps": model_interval_ps,
            }
        )
    return Dataset(graphs, TrajectorySet(train_frames, train_sys), TrajectorySet(val_frames, val_sys), provenance)
