"""Constant-velocity steered MD along a CV: the physical baseline path for seeding umbrella windows.

A harmonic restraint ``0.5·k·(cv − c(t))²`` (a ``CustomCVForce`` whose centre
``steer_centre`` is a global parameter) is pulled from ``from_value`` to
``to_value`` at constant speed: every ``update_interval_steps`` the centre moves
to ``c(t) = from + (to − from)·t / pull_time``.  The non-equilibrium work is
the sum of the restraint-energy jumps at the centre updates,
``W = Σ 0.5·k·[(cv − c_new)² − (cv − c_old)²]`` (Jarzynski's definition for a
time-dependent Hamiltonian switched in steps).  Frames are stored every
``frame_interval_ps`` from the start of the pull (t = 0) to its end, so the
path is in time order bound → unbound, like a ``biomd unbind`` path, and
:func:`~openmm_biomd.enhanced.umbrella.seed_umbrella_windows` takes it the same
way — which is how the generated-path seeding is compared with steered-MD
seeding (same windows, same analysis, different starting frames).

Layout of ``OUT``::

    OUT/steered.json   settings, CV, system provenance, result (written last: its "status" says complete)
    OUT/topology.pdb
    OUT/path.dcd       frames every frame_interval_ps, t = 0 ... pull_ps
    OUT/work.csv       time_ps, step, centre, cv, work_kj_mol (one row per stored frame)

A finished run (``steered.json`` with status ``complete`` and the same
settings) is not rerun: the frames are read back.  A pull is short, so a killed
run simply starts again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from biomd_core.config import require_at_least
from biomd_core.io.output_folder import (
    check_output_folder,
    claim_output_folder,
    json_with_keys,
    refuse_results_without_record,
)

from ..affinity import pinned_to_cpu
from ..data.md import (
    _atomic_write_json,
    _fsync_dir,
    _positions_and_box,
    damaged_file,
    equilibrate,
    explained_blow_up,
    make_simulation,
    package_versions,
    parse_time_ps,
    pinned_threads,
    read_json,
    replica_seed,
    require_positive,
    select_platform,
    whole_steps,
)
from ..data.systems import LoadedSystem, as_loaded_system
from ..data.tables import read_csv, write_csv
from .seeding_common import (
    CVSpec,
    add_input_arguments,
    add_md_arguments,
    check_frames,
    check_resumable,
    cv_record_with_kind,
    load_path_frames,
    load_recorded_path,
    md_kwargs,
    resolve_inputs,
    run_record,
    write_common_files,
)

__all__ = ["SteeredSettings", "add_arguments", "load_steered", "main", "steered_path"]

FORMAT = "biomd-steered"
#: the files a pull writes into its folder (claimed with biomd_core.io.output_folder)
#: the columns of ``work.csv``, one row per stored frame
WORK_COLUMNS = ["time_ps", "step", "centre", "cv", "work_kj_mol"]
STEER_OUTPUTS = ("steered.json", "topology.pdb", "path.dcd", "work.csv")

#: What to do about a finished pull whose path.dcd cannot be used.
_DAMAGED_PULL_REMEDY = ("Restore it from a copy, or delete it and rerun the same command to pull again (on several "
                        "threads the new pull is another path: seed windows or walkers from it in new directories).")


@dataclass(frozen=True)
class SteeredSettings:
    """A constant-velocity pull (saved in ``steered.json``).

    Attributes
    ----------
    to_value : restraint centre at the end of the pull, CV units
    from_value : centre at the start; None = the CV of the start structure
    pull_ps : duration of the pull, ps
    force_constant : k, kJ/mol per CV unit² (kJ/mol/nm² for the distance)
    frame_interval_ps : time between stored frames, ps
    update_interval_steps : integrator steps between centre updates
    equilibration_ps : restrained MD at ``from_value`` before the pull, ps
    temperature_k, timestep_fs, friction_per_ps : Langevin integrator
    seed : integrator and velocity seed
    """

    to_value: float
    from_value: float | None = None
    pull_ps: float = 100.0
    force_constant: float = 1000.0
    frame_interval_ps: float = 0.5
    update_interval_steps: int = 10
    equilibration_ps: float = 2.0
    temperature_k: float = 300.0
    timestep_fs: float = 2.0
    friction_per_ps: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        require_positive(self, ("pull_ps", "force_constant", "frame_interval_ps", "temperature_k", "timestep_fs",
                                "friction_per_ps", "update_interval_steps"))
        require_at_least([("seed", self.seed, 0)])
        # --from first: a NaN start makes the end (--from + --by) NaN too
        for name, value in (("from_value (--from)", self.from_value), ("to_value (--to, --by)", self.to_value)):
            if value is not None and not math.isfinite(value):  # a NaN centre had run, and blown up, the pull
                raise ValueError(f"{name} must be a finite CV value, got {value}")
        if self.equilibration_ps < 0:
            raise ValueError("equilibration_ps must not be negative")
        spf = whole_steps(self.frame_interval_ps, self.timestep_fs, "frame interval")
        whole_steps(self.equilibration_ps, self.timestep_fs, "equilibration time")
        if spf % self.update_interval_steps:
            raise ValueError(
                f"the frame interval ({spf} steps) must be a whole number of centre updates "
                f"({self.update_interval_steps} steps)"
            )
        n = self.pull_ps / self.frame_interval_ps
        if abs(n - round(n)) > 1e-6 * max(1.0, n) or round(n) < 1:
            raise ValueError(f"pull time {self.pull_ps:g} ps is not a whole number of frame intervals "
                             f"({self.frame_interval_ps:g} ps)")

    @property
    def steps_per_frame(self) -> int:
        return whole_steps(self.frame_interval_ps, self.timestep_fs)

    @property
    def n_frames(self) -> int:
        """Stored frames: t = 0, Δt, ..., pull_ps."""
        return int(round(self.pull_ps / self.frame_interval_ps)) + 1


def steered_path(
    loaded: Any,
    cv: CVSpec,
    out_dir: str | os.PathLike,
    *,
    to_value: float,
    from_value: float | None = None,
    pull_ps: float = 100.0,
    force_constant: float = 1000.0,
    frame_interval_ps: float = 0.5,
    update_interval_steps: int = 10,
    equilibration_ps: float = 2.0,
    temperature_k: float = 300.0,
    timestep_fs: float = 2.0,
    friction_per_ps: float = 1.0,
    seed: int = 0,
    start_positions_nm: np.ndarray | None = None,
    platform: str | None = None,
    threads: int | None = None,
    cpu: int | None = None,
    log: Any = None,
) -> np.ndarray:
    """Pull along ``cv`` at constant velocity and return the frames.

    Parameters
    ----------
    loaded : :class:`~openmm_biomd.data.LoadedSystem` (or a bundled name / triple)
    cv : the CV to pull along (e.g. :class:`~openmm_biomd.enhanced.seeding_common.DistanceCV`)
    out_dir : run directory (see the module docstring)
    to_value, from_value, pull_ps, force_constant, frame_interval_ps,
    update_interval_steps, equilibration_ps, temperature_k, timestep_fs,
    friction_per_ps, seed : see :class:`SteeredSettings`
    start_positions_nm : ``[N, 3]`` nm start structure (default ``loaded.positions``, the bound pose)
    platform, threads : OpenMM platform and CPU threads
    cpu : make and drive the Context from this CPU core, with one thread unless ``threads`` says
        otherwise (:mod:`~openmm_biomd.affinity`: faster for small systems on a VM whose idle cores
        halt; a host–guest pull of 300 ps took 140 s pinned, 165 s unpinned on another day); the
        frames do not change
    log : file-like for a progress line

    Returns
    -------
    np.ndarray
        ``[T, N, 3]`` float64 nm frames, ``T = pull_ps / frame_interval_ps + 1``,
        in time order (first frame: end of equilibration at ``from_value``).
    """
    import openmm

    t0 = time.perf_counter()
    loaded = as_loaded_system(loaded)
    n_atoms = loaded.system.getNumParticles()
    start = loaded.positions if start_positions_nm is None else check_frames(
        np.asarray(start_positions_nm)[None], loaded.system, "start structure")[0]
    if from_value is None:
        from_value = float(cv.values(start[None])[0])
    settings = SteeredSettings(
        to_value=float(to_value), from_value=float(from_value), pull_ps=float(pull_ps),
        force_constant=float(force_constant), frame_interval_ps=float(frame_interval_ps),
        update_interval_steps=int(update_interval_steps), equilibration_ps=float(equilibration_ps),
        temperature_k=float(temperature_k), timestep_fs=float(timestep_fs), friction_per_ps=float(friction_per_ps),
        seed=int(seed),
    )
    out = Path(out_dir)
    record = {
        "format": FORMAT,
        "status": "running",
        **run_record(loaded, [cv_record_with_kind(cv)], None),
        "start_sha256": hashlib.sha256(np.ascontiguousarray(start, np.float32).tobytes()).hexdigest(),
        "settings": asdict(settings),
    }
    done = out / "steered.json"
    # another command's folder, or files of the user's, are refused by name (a path.dcd of theirs was replaced)
    earlier = json_with_keys("steered.json", "format", "settings")
    check_output_folder(out, "steer", STEER_OUTPUTS, earlier)
    refuse_results_without_record(out, "steered.json", ("path.dcd", "work.csv"))
    if done.exists():
        old = read_json(done)
        check_resumable(old, record, ("system_sha256", "cv", "start_sha256"), out)
        if old.get("status") == "complete" and (out / "path.dcd").exists():
            # a finished pull's path cut short is named, not pulled again over it (on several threads a new
            # pull is another path, and what was seeded from the old one would no longer match); a deleted
            # topology.pdb is written again from the system
            write_common_files(out, loaded, [cv])
            _work_table(out, old.get("n_frames"))  # (one deleted or garbage had passed, to fail when seeded from)
            return load_recorded_path(out / "path.dcd", out / "topology.pdb", old.get("n_frames"),
                                      _DAMAGED_PULL_REMEDY)
    plat, properties = select_platform(platform, pinned_threads(threads, cpu), n_atoms)  # (checked before writing)
    claim_output_folder(out, "steer", STEER_OUTPUTS, earlier)
    write_common_files(out, loaded, [cv])
    _atomic_write_json(done, record)

    system = openmm.XmlSerializer.clone(loaded.system)
    restraint = openmm.CustomCVForce("0.5*steer_k*(cv-steer_centre)^2")
    restraint.addGlobalParameter("steer_k", settings.force_constant)
    restraint.addGlobalParameter("steer_centre", settings.from_value)
    restraint.addCollectiveVariable("cv", cv.force())
    system.addForce(restraint)
    tmp = out / "path.dcd.tmp"
    kept = f"Nothing of the pull is kept in {out} (a pull is run whole)."
    with pinned_to_cpu(cpu) as pinned, explained_blow_up("the steered pull", kept):
        # (pinned: the Context's worker threads are made, and driven, on this core)
        simulation = make_simulation(loaded, settings, replica_seed(settings.seed, 0), plat, properties,
                                     system=system)
        equilibrate(simulation, start, settings.temperature_k, replica_seed(settings.seed, 0),
                    whole_steps(settings.equilibration_ps, settings.timestep_fs))
        rows, work = _pull(simulation, restraint, settings, tmp)
    os.replace(tmp, out / "path.dcd")
    _fsync_dir(out)
    # Hand back what the DCD holds (float32 Å), so a rerun that reads the file gives identical frames.
    frames = load_path_frames(out / "path.dcd", out / "topology.pdb")
    write_csv(out / "work.csv", WORK_COLUMNS, rows)
    record.update(
        status="complete",
        start_cv=rows[0][3],
        final_cv=rows[-1][3],
        final_work_kj_mol=work,
        n_frames=settings.n_frames,
        platform={"name": plat.getName(), "properties": properties, "pinned_cpu": cpu if pinned else None},
        versions=package_versions(),
        wall_s=time.perf_counter() - t0,
    )
    _atomic_write_json(done, record)
    if log is not None:
        print(f"steered: CV {rows[0][3]:.3f} -> {rows[-1][3]:.3f} {cv.unit} in {settings.pull_ps:g} ps, "
              f"work {work:.1f} kJ/mol", file=log, flush=True)
    return frames


def _pull(simulation: Any, restraint: Any, settings: SteeredSettings, dcd_path: Path) -> tuple[list[tuple], float]:
    """Move the restraint's centre from ``from_value`` to ``to_value``, writing a frame to ``dcd_path``
    every ``frame_interval_ps``; the frames' rows ``(time_ps, step, centre, cv, work_kj_mol)`` and the total
    work, kJ/mol."""
    from openmm import app

    context = simulation.context
    periodic = simulation.system.usesPeriodicBoundaryConditions()
    spf, upd = settings.steps_per_frame, settings.update_interval_steps
    total = spf * (settings.n_frames - 1)
    k, c_from, c_to = settings.force_constant, settings.from_value, settings.to_value
    rows = []
    work = 0.0
    centre = c_from
    with open(dcd_path, "wb") as fh:
        dcd = app.DCDFile(fh, simulation.topology, simulation.integrator.getStepSize(), firstStep=0, interval=spf)
        for step in range(0, total + 1, upd):
            # Switch the centre first (work = energy jump at fixed x), then record, then move.
            value = float(restraint.getCollectiveVariableValues(context)[0])
            new_centre = c_from + (c_to - c_from) * step / total
            work += 0.5 * k * ((value - new_centre) ** 2 - (value - centre) ** 2)
            centre = new_centre
            context.setParameter("steer_centre", centre)
            if step % spf == 0:
                positions, box = _positions_and_box(context, periodic)
                dcd.writeModel(positions, periodicBoxVectors=box)
                rows.append((step * settings.timestep_fs / 1000.0, step, centre, value, work))
            if step < total:
                simulation.step(upd)
        fh.flush()
        os.fsync(fh.fileno())
    return rows, work


#: what to do about a finished pull's damaged work.csv (only a new pull writes it again)
_DAMAGED_WORK_REMEDY = ("Restore it from a copy, or delete it and path.dcd and rerun the same command to pull again "
                        "(on several threads the new pull is another path: seed windows or walkers from it in new "
                        "directories).")


def _work_table(out: Path, n_frames: int | None) -> np.ndarray:
    """A finished pull's ``work.csv`` ``[T, 5]`` (time, step, centre, CV, work), once it holds one finite row per
    frame of its path (``n_frames``; ``None``: a record from before the count was kept)."""
    path = out / "work.csv"
    if not path.exists():
        raise damaged_file(path, "it is missing, but steered.json says the pull finished", _DAMAGED_WORK_REMEDY)
    _, table = read_csv(path, finite=True, remedy=_DAMAGED_WORK_REMEDY, columns=WORK_COLUMNS)
    if n_frames is not None and len(table) != n_frames:
        raise damaged_file(path, f"it holds {len(table)} rows, not {n_frames} (one per frame of path.dcd)",
                           _DAMAGED_WORK_REMEDY)
    return table


def load_steered(out_dir: str | os.PathLike) -> dict:
    """A finished pull: ``frames_nm [T, N, 3]`` nm; ``time_ps``, ``centre``, ``cv``, ``work_kj_mol`` ``[T]``; ``record``.
    """
    out = Path(out_dir)
    record = read_json(out / "steered.json")
    if record.get("status") != "complete":
        raise RuntimeError(f"{out} holds an unfinished pull; rerun it")
    table = _work_table(out, record.get("n_frames"))
    frames = load_recorded_path(out / "path.dcd", out / "topology.pdb", record.get("n_frames"), _DAMAGED_PULL_REMEDY)
    return {"frames_nm": frames, "time_ps": table[:, 0],
            "centre": table[:, 2], "cv": table[:, 3], "work_kj_mol": table[:, 4], "record": record}


# --------------------------------------------------------------------------- command line


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``biomd steer`` arguments."""
    add_input_arguments(p, path_required=False, path_note="optional: the pull starts from its first frame, "
                        "else from the system's own pose; a path CV needs it")
    pull = p.add_argument_group("pull")
    target = pull.add_mutually_exclusive_group(required=True)
    target.add_argument("--to", type=float, help="final restraint centre, CV units")
    target.add_argument("--by", type=float, help="pull by this much from the start CV (e.g. 1.0 nm)")
    pull.add_argument("--from", dest="from_value", type=float,
                      help="initial centre (default: CV of the start structure)")
    pull.add_argument("--time", default="100ps", help="pull duration (default 100ps)")
    pull.add_argument("--k", type=float, default=1000.0, help="force constant, kJ/mol per CV unit^2 (default 1000)")
    pull.add_argument("--frame-interval", default="0.5ps", help="time between stored frames (default 0.5ps)")
    pull.add_argument("--update-steps", type=int, default=10, help="steps between centre updates (default 10)")
    pull.add_argument("--cpu", type=int, metavar="CPU",
                      help="make and drive the simulation from this CPU core, one thread (fastest for small "
                           "systems on the CPU platform; the frames do not change)")
    add_md_arguments(p)


def main(args: argparse.Namespace) -> int:
    """``biomd steer``: a steered-MD path (frames usable by ``biomd umbrella --path OUT/path.dcd``)."""
    inputs = resolve_inputs(args)
    cv = inputs.build_cv(args.path_nodes)
    loaded: LoadedSystem = inputs.loaded
    start = loaded.positions if inputs.frames_nm is None else inputs.frames_nm[0]
    from_value = args.from_value if args.from_value is not None else float(cv.values(start[None])[0])
    to_value = args.to if args.to is not None else from_value + args.by
    frames = steered_path(
        loaded, cv, args.out, to_value=to_value, from_value=from_value, pull_ps=parse_time_ps(args.time),
        force_constant=args.k, frame_interval_ps=parse_time_ps(args.frame_interval),
        update_interval_steps=args.update_steps, start_positions_nm=start, platform=args.platform,
        threads=args.threads, cpu=args.cpu, log=None if args.quiet else sys.stderr, **md_kwargs(args),
    )
    record = json.loads((Path(args.out) / "steered.json").read_text())
    print(json.dumps({"out": str(args.out), "path": str(Path(args.out) / "path.dcd"), "frames": len(frames),
                      "start_cv": record["start_cv"], "final_cv": record["final_cv"],
                      "final_work_kj_mol": record["final_work_kj_mol"], "wall_s": record["wall_s"]}, indent=2))
    return 0
