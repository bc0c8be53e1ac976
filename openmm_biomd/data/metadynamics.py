"""Ligand dissociation paths by well-tempered metadynamics.

In the style of published unbinding data sets: many independent seeds, each
starting from the bound pose, biased along one collective variable — the
distance between the ligand's centroid and the pocket's centroid — with
OpenMM's :class:`openmm.app.Metadynamics`, and stopped as soon as the ligand
has left (CV above its bound value plus ``exit_distance_nm``) — or, with
``after_exit_ps``, that much later.

Why go on after the exit: a model trained on windows of consecutive frames
only sees an exit where a window fits, and when every path ends at its exit
the exit is always a window's *last* frame and no window ever starts from a
ligand that has left.  The model then learns an exit only at the end of an
autoregressive block, and the next block, conditioned on an unbound frame it
never saw, pulls the ligand back.  A few ps of the unbound ligand after the
exit put the exit at every position of a window.  Those ps are unbiased MD:
no hill is added after the exit (the hills already deposited stay, at CV
values the ligand has left behind).

Layout of ``OUT``::

    OUT/topology.pdb           full topology + input positions
    OUT/summary.json           settings, atoms, per-seed results, totals (rewritten after every seed)
    OUT/seed_000/path.dcd      frames every frame_interval_ps, from t = 0 (bound, after equilibration)
    OUT/seed_000/cv.csv        time_ps, step, cv_nm, bias_kj_mol for every frame
    OUT/seed_000/result.json   dissociated?, time to dissociation, ...  (written last)

Seeds whose ``result.json`` exists are skipped when the same call is run
again, so a killed campaign resumes seed by seed (the seed in flight restarts).

Notes on the OpenMM side (DESIGN.md §4): hills are deposited only inside
``Metadynamics.step``, which this module uses for all production steps; the
bias (a ``CustomCVForce``) goes into the highest force group not yet used, and
that group is recorded in the summary.  Each seed gets a fresh bias (a fresh
``Metadynamics`` on a fresh copy of the System, no bias directory), so seeds
are independent.  Centroids are geometric (equal weights), as in
:func:`biomd_core.data.trajectories.bound_segments`.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from biomd_core.io.dcd import dcd_cut_short
from biomd_core.io.output_folder import (
    check_output_folder,
    claim_output_folder,
    json_with_keys,
    refuse_results_without_record,
)

from ..affinity import pinned_to_cpu
from .md import (
    RunMismatchError,
    _atomic_write_bytes,
    _atomic_write_json,
    _positions_and_box,
    damaged_file,
    ensure_topology_pdb,
    equilibrate,
    make_simulation,
    package_versions,
    pinned_threads,
    read_dcd_header,
    read_json,
    replica_seed,
    require_positive,
    select_platform,
    system_record,
    whole_steps,
)
from .systems import BUNDLED_SYSTEMS, LoadedSystem, as_loaded_system
from .tables import read_csv

SUMMARY_FORMAT = "biomd-dissociation-data"
#: what a seed's ``result.json`` holds at least (what the campaign's record and log read from it)
SEED_RESULT_KEYS = ("dissociated", "time_to_dissociation_ps", "bound_cv_nm", "final_cv_nm", "wall_s", "n_frames")
#: the columns of a seed's ``cv.csv``, one row per frame of its ``path.dcd``
CV_TABLE_COLUMNS = ["time_ps", "step", "cv_nm", "bias_kj_mol"]


@dataclass(frozen=True)
class DissociationSettings:
    """Settings of a dissociation campaign (saved in ``summary.json``).

    Attributes
    ----------
    n_seeds : independent metadynamics runs
    max_time_ps : longest run per seed, ps (a run stops earlier once dissociated)
    frame_interval_ps : Δt between stored frames and CV values, ps
    height_kj_mol : initial Gaussian height, kJ/mol
    bias_factor : well-tempered γ (> 1): CV sampled as if at γ·T
    sigma_nm : Gaussian width, nm
    deposit_interval_ps : time between hills, ps
    exit_distance_nm : dissociated once CV > bound CV + this, nm
    pocket_radius_nm : pocket = receptor heavy atoms this close to the ligand (bound frame), nm
    temperature_k, timestep_fs, friction_per_ps : Langevin integrator
    seed : master seed (seed ``i`` uses ``replica_seed(seed, i)``)
    equilibration_ps : unbiased MD after minimisation, before t = 0, ps
    after_exit_ps : MD kept after the exit, no new hills, ps (see the module docstring)
    """

    n_seeds: int = 10
    max_time_ps: float = 1000.0
    frame_interval_ps: float = 1.0
    height_kj_mol: float = 2.0
    bias_factor: float = 10.0
    sigma_nm: float = 0.05
    deposit_interval_ps: float = 1.0
    exit_distance_nm: float = 1.0
    pocket_radius_nm: float = 0.5
    temperature_k: float = 300.0
    timestep_fs: float = 2.0
    friction_per_ps: float = 1.0
    seed: int = 0
    equilibration_ps: float = 10.0
    after_exit_ps: float = 0.0

    def __post_init__(self) -> None:
        require_positive(self, ("max_time_ps", "frame_interval_ps", "height_kj_mol", "sigma_nm", "deposit_interval_ps",
                                "exit_distance_nm", "pocket_radius_nm", "temperature_k", "timestep_fs", "friction_per_ps"))
        if self.n_seeds < 1:
            raise ValueError("n_seeds must be at least 1")
        if not self.bias_factor > 1:
            raise ValueError(f"bias_factor must be > 1 (well-tempered), got {self.bias_factor}")
        whole_steps(self.frame_interval_ps, self.timestep_fs, "frame interval")
        whole_steps(self.deposit_interval_ps, self.timestep_fs, "hill deposition interval")
        whole_steps(self.equilibration_ps, self.timestep_fs, "equilibration time")
        frames = self.after_exit_ps / self.frame_interval_ps
        if self.after_exit_ps < 0 or abs(frames - round(frames)) > 1e-6 * max(1.0, frames):
            raise ValueError(f"after_exit_ps must be a whole number (>= 0) of {self.frame_interval_ps:g} ps frame "
                             f"intervals, got {self.after_exit_ps:g} ps")

    @property
    def steps_per_frame(self) -> int:
        return whole_steps(self.frame_interval_ps, self.timestep_fs)

    @property
    def max_frames(self) -> int:
        """Frame intervals in ``max_time_ps`` (rounded down)."""
        return int(self.max_time_ps / self.frame_interval_ps + 1e-9)

    @property
    def after_exit_frames(self) -> int:
        """Frame intervals kept after the exit."""
        return int(round(self.after_exit_ps / self.frame_interval_ps))


# --------------------------------------------------------------------------- atoms and CV


def select_atoms(topology: Any, selection: str, what: str = "atom selection") -> np.ndarray:
    """Atom indices of an mdtraj selection (e.g. ``"resname B2"``) on an OpenMM topology; ``what`` names the
    selection in errors (e.g. ``"--ligand selection"``)."""
    import mdtraj

    md_top = mdtraj.Topology.from_openmm(topology)
    try:
        atoms = md_top.select(selection)
    except Exception as exc:  # mdtraj raises several types for a bad expression (pyparsing: a long dump)
        reason = " ".join(str(exc).split())
        reason = reason if len(reason) <= 160 else reason[:157] + "..."
        raise ValueError(f"invalid {what} {selection!r} (mdtraj's selection language, e.g. 'resname LIG'): "
                         f"{reason}") from None
    if len(atoms) == 0:
        residues = sorted({r.name for r in topology.residues()})
        shown = ", ".join(residues[:12]) + (", ..." if len(residues) > 12 else "")
        raise ValueError(f"{what} {selection!r} matches no atom (residue names here: {shown})")
    return np.asarray(atoms, dtype=int)


def pocket_atoms(topology: Any, positions_nm: np.ndarray, ligand: np.ndarray, radius_nm: float) -> np.ndarray:
    """Receptor heavy atoms within ``radius_nm`` of any ligand atom.

    Water, single-atom residues (ions) and the ligand itself are not receptor.

    Parameters
    ----------
    positions_nm : ``[N, 3]`` nm, the bound frame
    ligand : ligand atom indices

    Returns
    -------
    np.ndarray
        pocket atom indices (sorted).
    """
    ligand_set = set(int(i) for i in ligand)
    receptor = [
        atom.index
        for residue in topology.residues()
        if len(residue) > 1 and residue.name not in ("HOH", "WAT", "TIP3", "SOL")
        for atom in residue.atoms()
        if atom.index not in ligand_set and (atom.element is None or atom.element.symbol != "H")
    ]
    receptor = np.asarray(receptor, dtype=int)
    if len(receptor) == 0:
        raise ValueError("no receptor heavy atoms: the system has only the ligand (and solvent)")
    d = np.linalg.norm(positions_nm[receptor, None] - positions_nm[None, ligand], axis=-1).min(axis=1)
    pocket = receptor[d <= radius_nm]
    if len(pocket) == 0:
        raise ValueError(f"no receptor heavy atom within {radius_nm} nm of the ligand in the bound frame: is it bound?")
    return pocket


def centroid_distance_nm(positions_nm: np.ndarray, ligand: np.ndarray, pocket: np.ndarray) -> float:
    """The CV in numpy: distance between the ligand and pocket centroids, nm (no periodic images)."""
    return float(np.linalg.norm(positions_nm[ligand].mean(0) - positions_nm[pocket].mean(0)))


def centroid_distance_force(ligand: np.ndarray, pocket: np.ndarray, periodic: bool) -> Any:
    """``CustomCentroidBondForce`` whose energy (kJ/mol) is numerically the ligand–pocket centroid distance (nm)."""
    import openmm

    force = openmm.CustomCentroidBondForce(2, "distance(g1, g2)")
    # Equal weights: geometric centroids (an empty weight list would mean centres of mass).
    force.addGroup([int(i) for i in ligand], [1.0] * len(ligand))
    force.addGroup([int(i) for i in pocket], [1.0] * len(pocket))
    force.addBond([0, 1], [])
    force.setUsesPeriodicBoundaryConditions(periodic)
    return force


def free_force_group(system: Any) -> int:
    """The group ``Metadynamics`` will put its bias in: the highest one no force uses."""
    used = {f.getForceGroup() for f in system.getForces()}
    free = set(range(32)) - used
    if not free:
        raise RuntimeError("all 32 force groups are in use; metadynamics needs one free group for its bias")
    return max(free)


# --------------------------------------------------------------------------- one seed


def _run_seed(
    loaded: LoadedSystem,
    settings: DissociationSettings,
    ligand: np.ndarray,
    pocket: np.ndarray,
    cv_max_nm: float,
    index: int,
    seed_dir: Path,
    platform: Any,
    properties: dict,
) -> dict:
    """One metadynamics run from the bound pose; writes ``path.dcd``, ``cv.csv``, ``result.json``."""
    import openmm
    from openmm import app, unit
    from openmm.app.metadynamics import BiasVariable, Metadynamics

    t0 = time.perf_counter()
    seed = replica_seed(settings.seed, index)
    system = openmm.XmlSerializer.clone(loaded.system)
    periodic = system.usesPeriodicBoundaryConditions()
    group = free_force_group(system)
    cv = BiasVariable(centroid_distance_force(ligand, pocket, periodic), 0.0, cv_max_nm, settings.sigma_nm)
    meta = Metadynamics(
        system,
        [cv],
        settings.temperature_k * unit.kelvin,
        settings.bias_factor,
        settings.height_kj_mol * unit.kilojoule_per_mole,
        whole_steps(settings.deposit_interval_ps, settings.timestep_fs),
    )
    simulation = make_simulation(loaded, settings, seed, platform, properties, system=system)
    equilibrate(simulation, loaded.positions, settings.temperature_k, seed,
                whole_steps(settings.equilibration_ps, settings.timestep_fs))

    spf = settings.steps_per_frame
    bound_cv = float(meta.getCollectiveVariables(simulation)[0])
    threshold = bound_cv + settings.exit_distance_nm
    rows = [(0.0, 0, bound_cv, 0.0)]
    dissociated_at = exit_frame = None
    seed_dir.mkdir(parents=True, exist_ok=True)
    path = seed_dir / "path.dcd"
    tmp = seed_dir / "path.dcd.tmp"
    with open(tmp, "wb") as fh:
        dcd = app.DCDFile(fh, simulation.topology, simulation.integrator.getStepSize(), firstStep=0, interval=spf)
        dcd.writeModel(*_frame(simulation, periodic))

        def record() -> float:
            """Append the current frame to the DCD and its CV and bias to ``rows``; returns the CV, nm."""
            value = float(meta.getCollectiveVariables(simulation)[0])
            bias = simulation.context.getState(getEnergy=True, groups={group}).getPotentialEnergy()
            step = int(simulation.currentStep)
            rows.append((step * settings.timestep_fs / 1000.0, step, value,
                         bias.value_in_unit(unit.kilojoule_per_mole)))
            dcd.writeModel(*_frame(simulation, periodic))
            return value

        for _ in range(settings.max_frames):
            meta.step(simulation, spf)  # the only way hills get deposited
            if record() > threshold:
                dissociated_at, exit_frame = rows[-1][0], len(rows) - 1
                break
        biased_steps = int(simulation.currentStep)
        if exit_frame is not None:
            for _ in range(settings.after_exit_frames):
                simulation.step(spf)  # unbiased beyond the exit: no new hills
                record()
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    csv = ",".join(CV_TABLE_COLUMNS) + "\n" + "".join(f"{t:.6g},{s},{c:.6f},{b:.6f}\n" for t, s, c, b in rows)
    _atomic_write_bytes(seed_dir / "cv.csv", csv.encode())
    result = {
        "seed_index": index,
        "seed": seed,
        "dissociated": dissociated_at is not None,
        "time_to_dissociation_ps": dissociated_at,
        "exit_frame": exit_frame,
        "simulated_ps": rows[-1][0],
        "bound_cv_nm": bound_cv,
        "exit_cv_nm": threshold,
        "final_cv_nm": rows[-1][2],
        "max_cv_nm": max(r[2] for r in rows),
        "n_frames": len(rows),
        "n_hills": biased_steps // whole_steps(settings.deposit_interval_ps, settings.timestep_fs),
        "bias_force_group": group,
        "wall_s": time.perf_counter() - t0,
    }
    _atomic_write_json(seed_dir / "result.json", result)
    return result


def _frame(simulation: Any, periodic: bool) -> tuple:
    positions, box = _positions_and_box(simulation.context, periodic)
    return (positions,) if box is None else (positions, None, box)


# --------------------------------------------------------------------------- campaign

#: The output folder's claim of a dissociation campaign (another than a plain-MD run's: the two would share a
#: topology.pdb), the files it writes at the top, and how a campaign made before folders were claimed is recognised.
DISSOCIATION_COMMAND = "generate-data --dissociation"
DISSOCIATION_OUTPUTS = ("topology.pdb", "summary.json", "seed_*")
_EARLIER_CAMPAIGN = json_with_keys("summary.json", "format", "bias_grid_nm")


def generate_dissociation(
    system: Any,
    out_dir: str | os.PathLike,
    *,
    ligand_selection: str | None = None,
    pocket_selection: str | None = None,
    n_seeds: int = 10,
    max_time_ps: float = 1000.0,
    frame_interval_ps: float = 1.0,
    height_kj_mol: float = 2.0,
    bias_factor: float = 10.0,
    sigma_nm: float = 0.05,
    deposit_interval_ps: float = 1.0,
    exit_distance_nm: float = 1.0,
    pocket_radius_nm: float = 0.5,
    temperature_k: float = 300.0,
    timestep_fs: float = 2.0,
    friction_per_ps: float = 1.0,
    seed: int = 0,
    equilibration_ps: float = 10.0,
    after_exit_ps: float = 0.0,
    platform: str | None = None,
    threads: int | None = None,
    cpu: int | None = None,
    log: Any = None,
) -> dict:
    """Dissociation paths of a ligand from its pocket, one well-tempered metadynamics run per seed.

    Parameters
    ----------
    system : bundled system name, :class:`~openmm_biomd.data.LoadedSystem` or
        ``(topology, system, positions)``; positions must be the bound pose
    ligand_selection : mdtraj selection of the ligand; default
        ``resname <ligand residue>`` of a bundled system
    pocket_selection : mdtraj selection of the pocket; default the bundled
        system's (host-guest: the whole host), else receptor heavy atoms within
        ``pocket_radius_nm`` of the ligand in the bound pose
    n_seeds, max_time_ps, frame_interval_ps : seeds; longest run and frame spacing, ps
    height_kj_mol, bias_factor, sigma_nm, deposit_interval_ps : well-tempered
        metadynamics hills (initial height kJ/mol, γ, width nm, spacing ps)
    exit_distance_nm : a seed stops, dissociated, once CV > bound CV + this (nm) ...
    after_exit_ps : ... plus this much unbiased MD after the exit (ps; see the module docstring)
    temperature_k, timestep_fs, friction_per_ps, seed, equilibration_ps : as in
        :func:`~openmm_biomd.data.generate_md`
    platform, threads : OpenMM platform and CPU threads (default CUDA, else CPU)
    cpu : make and drive each seed's Context from this CPU core (as in
        :func:`~openmm_biomd.data.generate_md`; ``threads`` then defaults to 1)
    log : file-like for one line per seed

    Returns
    -------
    dict
        The summary (as in ``OUT/summary.json``): ``settings``, ``ligand_atoms``,
        ``pocket_atoms``, ``results`` (one dict per seed: ``dissociated``,
        ``time_to_dissociation_ps``, ``bound_cv_nm``, ``wall_s``, ...),
        ``n_dissociated``, ``wall_s`` (all sessions of the campaign). A finished campaign is returned as
        recorded, its files untouched.
    """
    started = time.perf_counter()
    check_output_folder(out_dir, DISSOCIATION_COMMAND, DISSOCIATION_OUTPUTS, _EARLIER_CAMPAIGN)
    settings = DissociationSettings(
        n_seeds=int(n_seeds), max_time_ps=float(max_time_ps), frame_interval_ps=float(frame_interval_ps),
        height_kj_mol=float(height_kj_mol), bias_factor=float(bias_factor), sigma_nm=float(sigma_nm),
        deposit_interval_ps=float(deposit_interval_ps), exit_distance_nm=float(exit_distance_nm),
        pocket_radius_nm=float(pocket_radius_nm), temperature_k=float(temperature_k), timestep_fs=float(timestep_fs),
        friction_per_ps=float(friction_per_ps), seed=int(seed), equilibration_ps=float(equilibration_ps),
        after_exit_ps=float(after_exit_ps),
    )
    bundled = BUNDLED_SYSTEMS.get(system) if isinstance(system, str) else None
    loaded = as_loaded_system(system)
    if ligand_selection is None:
        residue = bundled.ligand_residue if bundled else loaded.description.get("ligand_residue")
        if not residue:
            raise ValueError("this system has no known ligand: give ligand_selection (an mdtraj selection, e.g. 'resname LIG')")
        ligand_selection = f"resname {residue}"
    if pocket_selection is None and bundled is not None:
        pocket_selection = bundled.pocket_selection
    ligand = select_atoms(loaded.topology, ligand_selection, "ligand selection")
    if pocket_selection is not None:
        pocket = np.setdiff1d(select_atoms(loaded.topology, pocket_selection), ligand)
        if len(pocket) == 0:
            raise ValueError(f"pocket selection {pocket_selection!r} has no atom outside the ligand")
    else:
        pocket = pocket_atoms(loaded.topology, loaded.positions, ligand, settings.pocket_radius_nm)
    start_cv = centroid_distance_nm(loaded.positions, ligand, pocket)
    # The bias grid must reach past the exit threshold (beyond its range the bias is zero);
    # 1 nm of slack covers the drift of the bound CV during equilibration.
    cv_max_nm = start_cv + settings.exit_distance_nm + 1.0

    out = Path(out_dir)
    plat, properties = select_platform(platform, pinned_threads(threads, cpu), loaded.system.getNumParticles())
    summary = {
        "format": SUMMARY_FORMAT,
        "status": "running",
        **system_record(loaded),
        "settings": asdict(settings),
        "cv": "distance between the geometric centroids of the ligand and pocket atoms, nm",
        "ligand_selection": ligand_selection,
        "pocket_selection": pocket_selection or f"receptor heavy atoms within {settings.pocket_radius_nm} nm of the ligand",
        "ligand_atoms": ligand.tolist(),
        "pocket_atoms": pocket.tolist(),
        "start_cv_nm": start_cv,
        "bias_grid_nm": [0.0, cv_max_nm],
        "platform": {"name": plat.getName(), "properties": properties},
        "cpu": cpu,
        "seeds": [replica_seed(settings.seed, i) for i in range(settings.n_seeds)],
        "results": [],
        "versions": package_versions(),
    }
    seed_dirs = [out / f"seed_{index:03d}" for index in range(settings.n_seeds)]
    old_path = out / "summary.json"
    refuse_results_without_record(out, "summary.json", ("seed_[0-9][0-9][0-9]/result.json",))
    old = read_json(old_path) if old_path.exists() else None
    if old is not None:
        _check_resumable(old, summary, out)
    # every finished seed is checked before anything is written (a damaged one stops the call as it found it), also
    # when the whole campaign is finished: calling it again is how a user asks whether it is whole (damage had passed)
    finished = {index: _finished_seed(seed_dir) for index, seed_dir in enumerate(seed_dirs)
                if (seed_dir / "result.json").exists()}
    if old is not None:
        if old.get("status") == "complete" and len(old.get("results", [])) == len(finished) == settings.n_seeds:
            ensure_topology_pdb(out / "topology.pdb", loaded)  # (a deleted one had passed the check)
            return old  # nothing to run: its record (platform, wall time) stays the one of the run that made it
        started -= float(old.get("wall_s") or 0.0)  # wall_s counts every session of the campaign
    claim_output_folder(out, DISSOCIATION_COMMAND, DISSOCIATION_OUTPUTS, _EARLIER_CAMPAIGN)
    ensure_topology_pdb(out / "topology.pdb", loaded)
    if old is None:  # the record is on disk before the first seed: a seed without it was left by another run
        _finish(summary, started, out, "running")
    results = []
    for index, seed_dir in enumerate(seed_dirs):
        if index in finished:
            result = finished[index]
        else:
            with pinned_to_cpu(cpu):
                result = _run_seed(loaded, settings, ligand, pocket, cv_max_nm, index, seed_dir, plat, properties)
        results.append(result)
        if log is not None:
            state = f"left after {result['time_to_dissociation_ps']:.1f} ps" if result["dissociated"] else "still bound"
            print(f"seed {index}: {state} (CV {result['bound_cv_nm']:.3f} -> {result['final_cv_nm']:.3f} nm)", file=log, flush=True)
        summary["results"] = results
        _finish(summary, started, out, "running")
    return _finish(summary, started, out, "complete")


def _finished_seed(seed_dir: Path) -> dict:
    """The result of a finished seed, once its path is known to be whole (it is kept as it is when a campaign
    grows, and a path cut short would go on into the data without a word)."""
    remedy = f"Restore it from a copy, or delete {seed_dir} and rerun the same command to run that seed again."
    result = read_json(seed_dir / "result.json", remedy, keys=SEED_RESULT_KEYS)
    path = seed_dir / "path.dcd"
    if not path.exists():
        raise damaged_file(path, "it is missing, but the seed's result.json says the seed finished", remedy)
    why = dcd_cut_short(path)
    try:
        counted = read_dcd_header(path)["n_frames"]
    except ValueError:  # not a DCD at all (garbage written over it)
        raise damaged_file(path, why or "it is not a DCD file", remedy) from None
    if why or counted != result["n_frames"]:
        raise damaged_file(path, why or f"it holds {counted} frames, the seed's result.json {result['n_frames']}",
                           remedy)
    _check_cv_table(seed_dir / "cv.csv", counted, remedy)
    return result


def _check_cv_table(path: Path, n_frames: int, remedy: str) -> None:
    """Refuse a seed's ``cv.csv`` unless it holds one row of finite numbers per frame of its path, in its four
    columns (one cut to 9 of 45 rows had gone on into the campaign's record)."""
    if not path.exists():
        raise damaged_file(path, "it is missing, but the seed's result.json says the seed finished", remedy)
    _, table = read_csv(path, finite=True, remedy=remedy, columns=CV_TABLE_COLUMNS)
    if len(table) != n_frames:
        raise damaged_file(path, f"it holds {len(table)} rows, not {n_frames} (one per frame of path.dcd)", remedy)


def _finish(summary: dict, started: float, out: Path, status: str) -> dict:
    results = summary["results"]
    times = [r["time_to_dissociation_ps"] for r in results if r["dissociated"]]
    summary.update(
        status=status,
        n_dissociated=len(times),
        mean_time_to_dissociation_ps=float(np.mean(times)) if times else None,
        wall_s=time.perf_counter() - started,
        seeds_wall_s=float(sum(r["wall_s"] for r in results)),
    )
    _atomic_write_json(out / "summary.json", summary)
    return summary


def _check_resumable(old: dict, new: dict, out: Path) -> None:
    """Refuse to mix seeds made with different settings in one directory (n_seeds may grow, not shrink)."""
    diffs = [
        f"{k}: {old.get(k)!r} on disk, {new.get(k)!r} now"
        for k in ("system", "system_sha256", "ligand_atoms", "pocket_atoms")
        if old.get(k) != new.get(k)
    ]
    defaults = {f.name: f.default for f in fields(DissociationSettings)}  # settings added since a run was made
    diffs += [
        f"{k}: {old['settings'].get(k, defaults[k])!r} on disk, {v!r} now"
        for k, v in new["settings"].items()
        if k != "n_seeds" and old["settings"].get(k, defaults[k]) != v
    ]
    recorded, asked = len(old.get("results", [])), new["settings"]["n_seeds"]
    if asked < recorded:
        diffs.append(f"n_seeds: {recorded} recorded, {asked} now (that would drop seeds from the record: give at "
                     f"least {recorded}; finished seeds are kept, not rerun)")
    if diffs:
        raise RunMismatchError(
            f"{out} holds dissociation runs made with different settings, refusing to add to them: "
            + "; ".join(diffs) + ". Use the same settings or a new output directory."
        )
    with contextlib.suppress(KeyError):
        new["created"] = old["created"]
