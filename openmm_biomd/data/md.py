"""Chunked, resumable plain-MD training data.

:func:`generate_md` runs Langevin MD (``LangevinMiddleIntegrator``) for several
seeded replicas of one system and writes, per run directory ``OUT``::

    OUT/metadata.json               settings, provenance, progress, timing (rewritten after every chunk)
    OUT/topology.pdb                full topology + the input positions
    OUT/replica_000/chunk_00000.dcd frames Δt, 2Δt, ... (time 0 = end of equilibration)
    OUT/replica_000/chunk_00001.dcd ...
    OUT/replica_000/checkpoint.chk  OpenMM binary checkpoint after the last completed chunk
    OUT/replica_000/progress.json   {"chunks", "frames", "step"} of that checkpoint

Crash safety.  A chunk is written under a temporary name and renamed only when
all its frames are on disk; then the checkpoint is replaced atomically
(tmp + ``os.replace``), then ``progress.json``.  The checkpoint is the truth:
on resume it is loaded, its step count says how many chunks it covers (each
chunk's DCD header records its first step and stride), chunks beyond it are
orphans of a run killed between the chunk's rename and the checkpoint's, and
are deleted.  A kill between the checkpoint and ``progress.json`` leaves the
progress one chunk behind; it is rolled forward.  So a killed run, started
again, loses at most the chunk in flight and never duplicates a frame.  The
checkpoint also holds the integrator's random state, so on one platform with one
CPU thread (the default up to :data:`SMALL_SYSTEM_ATOMS` atoms, ``threads=1`` or
``cpu=`` beyond) a resumed replica continues exactly as an uninterrupted one would.
With several threads the CPU platform's sums run in an order that changes from run
to run (its ``DeterministicForces`` property does not remove it: host–guest, two
threads, 2026-12-07), so two runs of one seed, resumed or not, agree only in
distribution.

A checkpoint is specific to its platform (and OpenMM build): a run resumes on
the platform it started on.  Settings that change the data (system, Δt,
temperature, timestep, friction, seed, equilibration) must match on resume;
``time_ps`` and ``replicas`` may grow (extend a run), and ``chunk_frames`` may
change (chunks need not have equal length).

Units: nm, ps, K, kJ/mol inside; ``timestep_fs`` is the one float in fs.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import math
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterator

import numpy as np

# (the header readers moved to biomd_core.io.dcd, where training reads data too; imported from here elsewhere)
from biomd_core.io.dcd import (  # noqa: F401
    AKMA_TIME_PS,
    dcd_cut_short,
    dcd_frame_spacing_ps,
    quiet_c_stdout,
    read_dcd_header,
)
from biomd_core.io.output_folder import check_output_folder, claim_output_folder, json_with_keys

from ..affinity import allowed_cpu, pinned_to_cpu
from .systems import LoadedSystem, as_loaded_system, get_system

FORMAT = "biomd-md-data"
FORMAT_VERSION = 1

#: Picoseconds per unit of the time strings the CLI accepts.
TIME_UNITS_PS = {"fs": 1e-3, "ps": 1.0, "ns": 1e3, "us": 1e6, "µs": 1e6}

#: Systems up to this many atoms run on one CPU thread: at 22 atoms thread
#: synchronisation costs more than a second core gives (DESIGN.md §4;
#: benchmarks/bench_datagen.py measures where the crossover is).
SMALL_SYSTEM_ATOMS = 100


_CHUNK_RE = re.compile(r"^chunk_(\d{5})\.dcd$")


class RunMismatchError(ValueError):
    """An existing run directory was made with different settings."""


class MDBlewUpError(RuntimeError):
    """A simulation's coordinates or energy became NaN (the MD blew up); the message says what is kept."""


class DamagedRunFileError(RuntimeError):
    """A file of a run directory cannot be read back (cut short, emptied or edited); the message names it."""


def damaged_file(path: str | os.PathLike, why: str, remedy: str | None = None) -> DamagedRunFileError:
    """The error for a run file at ``path`` that cannot be used because ``why``; ``remedy`` says what to do
    (default: restore it or start a new output directory)."""
    remedy = remedy or "Restore it from a copy, or start again in a new output directory."
    return DamagedRunFileError(f"{path} is damaged: {why} (cut short by a full disk or a copy, or edited). {remedy}")


def read_json(path: str | os.PathLike, remedy: str | None = None, keys: tuple[str, ...] = ()) -> Any:
    """The JSON document in ``path``; a file that is not valid JSON, or (given ``keys``) not an object holding
    those keys, raises :class:`DamagedRunFileError` (saying ``remedy``, default :func:`damaged_file`'s): a record
    emptied to ``{}`` had been a bare KeyError, "error: dissociated"."""
    text = Path(path).read_text()
    try:
        document = json.loads(text)
    except json.JSONDecodeError as e:
        raise damaged_file(path, f"it is not valid JSON ({e})", remedy) from e
    if keys:
        lacking = [key for key in keys if not isinstance(document, dict) or key not in document]
        if lacking:
            raise damaged_file(path, f"it lacks {', '.join(map(repr, lacking))}, which such a record holds", remedy)
    return document


def load_checkpoint(context: Any, path: str | os.PathLike) -> None:
    """Load the OpenMM checkpoint file ``path`` into ``context``; a damaged one raises :class:`DamagedRunFileError`.

    OpenMM loads a file cut short without a word (the velocities it lacks read as zero, the random state is
    lost, or the Context's state is garbage), so the file must first be exactly as long as a checkpoint of
    ``context`` itself: the layout depends only on the System, the integrator and the platform with its
    threads (one random stream per thread), none of which change during a run.
    """
    import openmm

    data = Path(path).read_bytes()
    expected = len(context.createCheckpoint())
    if len(data) != expected:
        raise damaged_file(path, f"it holds {len(data)} bytes, where a checkpoint of this run's System, integrator "
                           f"and platform holds {expected}",
                           "Restore it from a copy, or resume with the platform and threads the run was started "
                           "with, or start again in a new output directory.")
    try:
        context.loadCheckpoint(data)
    except openmm.OpenMMException as e:
        raise damaged_file(path, f"OpenMM cannot load it ({e})") from e


@contextlib.contextmanager
def explained_blow_up(what: str, kept: str) -> Iterator[None]:
    """Turn OpenMM's NaN failure inside the block into an :class:`MDBlewUpError` naming ``what`` blew up,
    what is ``kept`` on disk, and what to try; any other error passes unchanged."""
    import openmm

    try:
        yield
    except openmm.OpenMMException as e:
        if "nan" not in str(e).lower():
            raise
        raise MDBlewUpError(
            f"{what} blew up ({str(e).split('.')[0]}). {kept} Rerunning the same command repeats the same MD "
            "(the same seeds; bit for bit on one CPU thread, closely otherwise), so it would most likely blow up "
            "again: start a new output directory with "
            "a smaller --timestep, a gentler bias or restraint (hill height, force constant), or a start "
            "structure without clashes."
        ) from e


# --------------------------------------------------------------------------- time


def parse_time_ps(text: str | float | int) -> float:
    """A duration in ps from ``"200ps"``, ``"2 ns"``, ``"500fs"``, ``"1us"``.

    Numbers (not strings) are taken as ps already.  A string needs a unit.

    >>> parse_time_ps("2ns")
    2000.0
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(f"a time must be finite, not {text!r}")
        return value
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Zµ]*)\s*", str(text))
    if match is None:
        raise ValueError(f"cannot read a time from {text!r}; write a number and a unit, e.g. 200ps or 2ns")
    value, unit_name = float(match.group(1)), match.group(2)
    if not unit_name:
        raise ValueError(f"time {text!r} has no unit; write e.g. {text}ps (units: {', '.join(TIME_UNITS_PS)})")
    if unit_name not in TIME_UNITS_PS:
        raise ValueError(f"unknown time unit {unit_name!r} in {text!r}; use one of {', '.join(TIME_UNITS_PS)}")
    ps = value * TIME_UNITS_PS[unit_name]
    if not math.isfinite(ps):  # (1e400ps had ended in "cannot convert float infinity to integer")
        raise ValueError(f"time {text!r} is not a finite duration")
    return ps


def whole_steps(duration_ps: float, timestep_fs: float, what: str = "frame interval") -> int:
    """``duration_ps`` as a whole number of integrator steps; refuse one that is not.

    Returns
    -------
    int
        steps; 0 only for a zero duration.
    """
    steps = duration_ps * 1000.0 / timestep_fs
    if duration_ps < 0 or abs(steps - round(steps)) > 1e-6 * max(1.0, steps):
        raise ValueError(
            f"the {what} {duration_ps:g} ps is not a whole number of {timestep_fs:g} fs integrator steps "
            f"({steps:.4g} steps); choose a multiple of {timestep_fs:g} fs"
        )
    return int(round(steps))


# --------------------------------------------------------------------------- settings


def require_positive(settings: Any, names: tuple[str, ...]) -> None:
    """Raise a ValueError naming the first of ``names`` that is not a finite number > 0 on ``settings``
    (an infinite one had run: walkers' γ = inf wrote a free energy of NaNs)."""
    for name in names:
        if not 0 < getattr(settings, name) < math.inf:
            raise ValueError(f"{name} must be a positive finite number, got {getattr(settings, name)}")


@dataclass(frozen=True)
class MDSettings:
    """What a data-generation run simulates (saved in ``metadata.json``).

    Attributes
    ----------
    time_ps : production time per replica, ps (a whole number of frame intervals)
    frame_interval_ps : Δt between stored frames, ps (a whole number of steps)
    replicas : independent trajectories, seeded ``replica_seed(seed, r)``
    temperature_k : Langevin bath temperature, K
    timestep_fs : integrator step, fs
    friction_per_ps : Langevin friction, 1/ps
    seed : master seed
    chunk_frames : frames per DCD chunk (and per checkpoint)
    equilibration_ps : MD after minimisation and before the first frame, ps
    """

    time_ps: float
    frame_interval_ps: float
    replicas: int = 1
    temperature_k: float = 300.0
    timestep_fs: float = 2.0
    friction_per_ps: float = 1.0
    seed: int = 0
    chunk_frames: int = 100
    equilibration_ps: float = 10.0

    def __post_init__(self) -> None:
        require_positive(self, ("time_ps", "frame_interval_ps", "temperature_k", "timestep_fs", "friction_per_ps"))
        if self.replicas < 1 or self.chunk_frames < 1:
            raise ValueError("replicas and chunk_frames must be at least 1")
        if self.equilibration_ps < 0:
            raise ValueError("equilibration_ps must not be negative")
        whole_steps(self.frame_interval_ps, self.timestep_fs, "frame interval")
        whole_steps(self.equilibration_ps, self.timestep_fs, "equilibration time")
        n = self.time_ps / self.frame_interval_ps
        if abs(n - round(n)) > 1e-6 * max(1.0, n) or round(n) < 1:
            raise ValueError(
                f"time {self.time_ps:g} ps is not a whole number of frame intervals of {self.frame_interval_ps:g} ps"
            )

    @property
    def steps_per_frame(self) -> int:
        """Integrator steps between stored frames."""
        return whole_steps(self.frame_interval_ps, self.timestep_fs, "frame interval")

    @property
    def n_frames(self) -> int:
        """Frames per replica: ``time_ps / frame_interval_ps`` (t = Δt ... time_ps)."""
        return int(round(self.time_ps / self.frame_interval_ps))

    @property
    def equilibration_steps(self) -> int:
        return whole_steps(self.equilibration_ps, self.timestep_fs, "equilibration time")

    @classmethod
    def from_dict(cls, data: dict) -> "MDSettings":
        """Strict: unknown keys are errors."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown MD setting {unknown[0]!r}; known: {sorted(names)}")
        return cls(**data)


#: Settings that change the data already written: they must match on resume.
RESUME_KEYS = ("frame_interval_ps", "temperature_k", "timestep_fs", "friction_per_ps", "seed", "equilibration_ps")


def replica_seed(seed: int, replica: int) -> int:
    """Integrator/velocity seed of one replica, in [1, 2**31 - 1].

    Depends only on ``(seed, replica)``, so adding replicas later keeps the old
    ones' seeds; never 0 (OpenMM reads 0 as "pick a random seed").
    """
    value = int(np.random.SeedSequence([int(seed), int(replica)]).generate_state(1)[0]) & 0x7FFFFFFF
    return value or 1


# --------------------------------------------------------------------------- platform


def pinned_threads(threads: int | None, cpu: int | None) -> int | None:
    """CPU threads for a Context made and driven from core ``cpu``: one unless ``threads`` says otherwise (more
    threads than the one core would only wait for each other); ``threads`` as given when not pinned."""
    allowed_cpu(cpu)
    return 1 if threads is None and cpu is not None else threads


def select_platform(name: str | None = None, threads: int | None = None, n_atoms: int | None = None):
    """An OpenMM platform and its properties.

    Parameters
    ----------
    name : platform name, or None for CUDA when present, else CPU
    threads : CPU threads; default ``OPENMM_CPU_THREADS`` when that is set (OpenMM's own
        variable), else 1 for systems of at most :data:`SMALL_SYSTEM_ATOMS` atoms and all
        cores for larger ones.  A CPU context with more threads than free cores waits at
        every step's barrier for a descheduled thread (measured here: 40 s became 16 min
        with two 2-thread jobs on two cores), so jobs sharing a machine want it set to 1
    n_atoms : system size (picks the CPU thread count)

    Returns
    -------
    (openmm.Platform, dict[str, str])
    """
    import openmm

    if threads is not None and int(threads) < 1:
        raise ValueError(f"CPU threads must be at least 1, not {threads}")
    names = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
    if name is None:
        name = "CUDA" if "CUDA" in names else "CPU"
    if name not in names:
        raise ValueError(f"OpenMM platform {name!r} is not available here; available: {', '.join(names)}")
    platform = openmm.Platform.getPlatformByName(name)
    properties: dict[str, str] = {}
    if name == "CPU":
        if threads is None and os.environ.get("OPENMM_CPU_THREADS", "").strip():
            threads = _positive_int(os.environ["OPENMM_CPU_THREADS"], "OPENMM_CPU_THREADS")
        if threads is None:
            threads = 1 if (n_atoms is not None and n_atoms <= SMALL_SYSTEM_ATOMS) else (os.cpu_count() or 1)
        properties["Threads"] = str(int(threads))
    elif name in ("CUDA", "OpenCL"):
        properties["Precision"] = "mixed"
    return platform, properties


def _positive_int(text: str, name: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name} must be a whole number of threads >= 1, not {text!r}")
    return value


# --------------------------------------------------------------------------- small file helpers


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``path`` so that a kill leaves either the old or the new file, never a torn one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _atomic_write_json(path: Path, data: dict) -> None:
    _atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode())


def package_versions() -> dict[str, str]:
    """Versions of what produced the data (provenance)."""
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for dist in ("openmm", "openmmtools", "mdtraj", "numpy", "parmed", "biomd-openmm"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def system_sha256(system: Any) -> str:
    """Hash of the serialised System: recognises the same force field on resume, wherever its files now live."""
    import openmm

    return hashlib.sha256(openmm.XmlSerializer.serialize(system).encode()).hexdigest()


# --------------------------------------------------------------------------- replica directory


class ReplicaDir:
    """The files of one replica: numbered DCD chunks, checkpoint and progress.

    Parameters
    ----------
    path : ``OUT/replica_XXX``
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.checkpoint = self.path / "checkpoint.chk"
        self.progress_file = self.path / "progress.json"

    def chunk(self, index: int) -> Path:
        return self.path / f"chunk_{index:05d}.dcd"

    def chunks(self) -> list[Path]:
        """Completed chunks on disk (final names only), in index order."""
        if not self.path.is_dir():
            return []
        found = sorted((int(m.group(1)), p) for p in self.path.iterdir() if (m := _CHUNK_RE.match(p.name)))
        return [p for _, p in found]

    def progress(self) -> dict:
        """``{"chunks", "frames", "step"}`` of the last checkpoint (zeros when none)."""
        if self.progress_file.exists():
            return read_json(self.progress_file)
        return {"chunks": 0, "frames": 0, "step": 0}

    def check_finished(self, frames: int) -> None:
        """Refuse (:func:`damaged_file`) the chunks of a finished replica unless they hold its ``frames`` whole:
        rerunning a finished run is how a user asks whether it is complete, and damage had been found only once
        the run was extended, or downstream."""
        remedy = f"Restore it from a copy, or delete {self.path} and rerun the same command to regenerate this replica."
        total = 0
        for path in self.chunks():
            try:
                total += read_dcd_header(path)["n_frames"]
            except ValueError:  # garbage written over it
                raise damaged_file(path, "it is not a DCD file", remedy) from None
            if why := dcd_cut_short(path):
                raise damaged_file(path, why, remedy)
        if total != frames:
            raise damaged_file(self.path, f"its chunks hold {total} frames, metadata.json records {frames}", remedy)

    def refuse_chunks_without_checkpoint(self) -> None:
        """Raise :class:`DamagedRunFileError` when chunks are on disk but the checkpoint is gone (deleted or moved by
        hand: a killed run always has one once it has a chunk), before :meth:`reset` would delete the chunks."""
        chunks = self.chunks()
        if chunks and not self.checkpoint.exists():
            raise DamagedRunFileError(
                f"{self.checkpoint} is missing, but {self.path} holds {len(chunks)} chunk(s) of frames: a replica "
                "continues only from its checkpoint, and starting it afresh would delete them. Restore the checkpoint "
                f"from a copy, or move the chunks away (or delete {self.path}) to regenerate this replica.")

    def remove_temporaries(self) -> None:
        """Files a killed run was writing (never renamed, so never counted)."""
        for tmp in self.path.glob("*.tmp"):
            tmp.unlink()

    def reset(self) -> None:
        """Forget everything (a replica whose first checkpoint never got written)."""
        self.remove_temporaries()
        for p in [*self.chunks(), self.checkpoint, self.progress_file]:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    def save_checkpoint(self, simulation: Any, chunks: int, frames: int) -> None:
        """Checkpoint, then progress, each atomically (in this order: the checkpoint is the truth)."""
        tmp = self.checkpoint.with_name(self.checkpoint.name + ".tmp")
        with open(tmp, "wb") as fh:
            simulation.saveCheckpoint(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.checkpoint)
        _atomic_write_json(self.progress_file, {"chunks": chunks, "frames": frames, "step": int(simulation.currentStep)})

    def reconcile(self, step: int, steps_per_frame: int) -> dict:
        """Match the chunks on disk to a checkpoint taken at ``step``; delete orphans.

        Returns
        -------
        dict
            progress ``{"chunks", "frames", "step"}`` consistent with the checkpoint.
        """
        chunks = self.chunks()
        end, frames, kept = 0, 0, 0
        for index, path in enumerate(chunks):
            if end == step:
                break
            header = read_dcd_header(path)
            if why := dcd_cut_short(path):  # the header still counts the frames a copy or a full disk lost
                raise damaged_file(path, why, f"Restore it from a copy, or delete {self.path} to regenerate this "
                                   "replica.")
            if path != self.chunk(index) or header["first_step"] != end + steps_per_frame:
                raise RuntimeError(
                    f"{self.path}: chunk {path.name} does not continue the previous chunk (first step "
                    f"{header['first_step']}, expected {end + steps_per_frame}); delete {self.path} to restart it"
                )
            if header["interval_steps"] != steps_per_frame:
                raise RuntimeError(f"{path}: stride {header['interval_steps']} steps, expected {steps_per_frame}")
            end = header["first_step"] + (header["n_frames"] - 1) * steps_per_frame
            frames += header["n_frames"]
            kept += 1
        if end != step:
            raise RuntimeError(
                f"{self.path}: the checkpoint is at step {step} but the chunks on disk end at step {end}; "
                f"the directory was changed by hand? delete {self.path} to regenerate this replica"
            )
        for orphan in chunks[kept:]:
            orphan.unlink()
        progress = {"chunks": kept, "frames": frames, "step": step}
        if self.progress() != progress:
            _atomic_write_json(self.progress_file, progress)
        return progress


# --------------------------------------------------------------------------- simulation


def make_simulation(loaded: LoadedSystem, settings: Any, seed: int, platform: Any, properties: dict, system: Any = None):
    """A Simulation with a seeded ``LangevinMiddleIntegrator``.

    ``system`` defaults to a copy of ``loaded.system`` (a Simulation must not
    share its System with another that may add forces).
    """
    import openmm
    from openmm import app, unit

    integrator = openmm.LangevinMiddleIntegrator(
        settings.temperature_k * unit.kelvin,
        settings.friction_per_ps / unit.picosecond,
        settings.timestep_fs * unit.femtosecond,
    )
    integrator.setRandomNumberSeed(int(seed))
    if system is None:
        system = openmm.XmlSerializer.clone(loaded.system)
    return app.Simulation(loaded.topology, system, integrator, platform, properties)


def equilibrate(simulation: Any, positions_nm: np.ndarray, temperature_k: float, seed: int, steps: int) -> None:
    """Minimise, draw velocities, run ``steps`` of MD, then set step and time to 0.

    Time 0 is the end of equilibration: the first stored frame is at Δt.
    """
    from openmm import unit

    context = simulation.context
    context.setPositions(np.ascontiguousarray(positions_nm, dtype=np.float64))
    # Capped: the aim is to remove clashes before MD, not to reach a minimum (T4L: ~70 ms per iteration on 2 cores).
    simulation.minimizeEnergy(tolerance=10.0 * unit.kilojoule_per_mole / unit.nanometer, maxIterations=1000)
    context.setVelocitiesToTemperature(temperature_k * unit.kelvin, int(seed))
    if steps:
        simulation.step(steps)
    simulation.currentStep = 0
    context.setTime(0.0)


def _positions_and_box(context: Any, periodic: bool) -> tuple[np.ndarray, Any]:
    """Current positions ``[N, 3]`` nm (unwrapped: molecules stay whole) and box vectors (or None)."""
    state = context.getState(getPositions=True, enforcePeriodicBox=False)
    return state.getPositions(asNumpy=True), (state.getPeriodicBoxVectors() if periodic else None)


def write_chunk(simulation: Any, path: Path, n_frames: int, steps_per_frame: int) -> None:
    """Run ``n_frames × steps_per_frame`` steps, storing a frame every ``steps_per_frame``, into ``path`` atomically.

    The DCD header records the first frame's step and the stride, so the
    chunk's time axis is ``(first_step + i·stride)·dt``.
    """
    from openmm import app

    topology = simulation.topology
    periodic = simulation.system.usesPeriodicBoundaryConditions()
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        dcd = app.DCDFile(
            fh,
            topology,
            simulation.integrator.getStepSize(),
            firstStep=simulation.currentStep + steps_per_frame,
            interval=steps_per_frame,
        )
        for _ in range(n_frames):
            simulation.step(steps_per_frame)
            positions, box = _positions_and_box(simulation.context, periodic)
            dcd.writeModel(positions, periodicBoxVectors=box)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


# --------------------------------------------------------------------------- metadata


def _compare(old: dict, new: dict) -> list[str]:
    """Differences that forbid resuming ``old`` with ``new`` (words, one per difference)."""
    diffs = []
    for key in ("system", "system_sha256", "n_atoms"):
        if old.get(key) != new.get(key):
            diffs.append(f"{key}: {old.get(key)!r} on disk, {new.get(key)!r} now")
    for key in RESUME_KEYS:
        a, b = old["settings"].get(key), new["settings"].get(key)
        if a != b:
            diffs.append(f"{key}: {a!r} on disk, {b!r} now")
    common = min(len(old["seeds"]), len(new["seeds"]))
    if old["seeds"][:common] != new["seeds"][:common]:
        diffs.append("replica seeds differ")
    # Data on disk is never thrown away: a run can grow, not shrink.
    for key in ("time_ps", "replicas"):
        a, b = old["settings"][key], new["settings"][key]
        if b < a:
            diffs.append(f"{key}: {a!r} on disk, {b!r} now (a run can be extended, not shortened)")
    return diffs


def _forget_deleted_replicas(old: dict, out: Path, log: Any) -> None:
    """Count no frames for a replica whose folder was deleted (the remedy a damaged replica's error gives), so that
    it is generated again: its frames had stayed in the record, and the run was refused for them for good."""
    for replica, frames in enumerate(old["frames_per_replica"]):
        if frames and not (out / f"replica_{replica:03d}").exists():
            old["frames_per_replica"][replica] = 0
            old["status"] = "incomplete"
            if log is not None:
                print(f"replica {replica}: its folder is gone, so it is generated again", file=log, flush=True)


def _finished(old: dict, loaded: LoadedSystem, settings: MDSettings) -> bool:
    """Whether the run on disk is complete with these very settings (same system, seeds and lengths)."""
    same = _new_metadata(loaded, settings, old["platform"]["name"], old["platform"]["properties"])
    return old.get("status") == "complete" and old["settings"] == same["settings"] and not _compare(old, same)


def _platform_for_resume(old: dict | None, name: str | None, threads: int | None, n_atoms: int):
    """The platform a run uses: the one it started on when resuming (checkpoints are platform-specific)."""
    if old is not None:
        old_name = old["platform"]["name"]
        if name is not None and name != old_name:
            raise RunMismatchError(
                f"this run was started on the {old_name} platform and its checkpoints only load there; "
                f"resume it with --platform {old_name} (or start a new output directory)"
            )
        if threads is None and old_name == "CPU":
            threads = int(old["platform"]["properties"].get("Threads", 0)) or None
        name = old_name
    return select_platform(name, threads, n_atoms)


def read_metadata(out_dir: str | os.PathLike) -> dict:
    """``OUT/metadata.json`` of a run (clear error when it is not a run directory)."""
    path = Path(out_dir) / "metadata.json"
    if not path.exists():
        raise FileNotFoundError(f"{out_dir} has no metadata.json: not a biomd generate-data run directory")
    meta = read_json(path)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not {FORMAT} metadata")
    return meta


# --------------------------------------------------------------------------- generation

#: The output folder's claim (biomd_core.io.output_folder) of a plain-MD run, the files it writes at the top, and
#: how a run directory made before folders were claimed is recognised.
MD_COMMAND = "generate-data"
MD_OUTPUTS = ("topology.pdb", "metadata.json", "replica_*")
_EARLIER_MD = json_with_keys("metadata.json", "format", "frames_per_replica")


def generate_md(
    system: Any,
    out_dir: str | os.PathLike,
    *,
    time_ps: float,
    frame_interval_ps: float,
    replicas: int = 1,
    temperature_k: float = 300.0,
    timestep_fs: float = 2.0,
    friction_per_ps: float = 1.0,
    seed: int = 0,
    chunk_frames: int = 100,
    equilibration_ps: float = 10.0,
    platform: str | None = None,
    threads: int | None = None,
    cpu: int | None = None,
    max_chunks: int | None = None,
    log: Any = None,
) -> dict:
    """Generate (or resume) plain-MD trajectories of one system, in chunks.

    Running the same call again on the same ``out_dir`` resumes it: completed
    chunks are kept, the run continues from the last checkpoint.  A larger
    ``time_ps`` or ``replicas`` extends a finished run.

    Parameters
    ----------
    system : a bundled system's name (see :data:`~openmm_biomd.data.BUNDLED_SYSTEMS`),
        a :class:`~openmm_biomd.data.LoadedSystem` (e.g. from
        :func:`~openmm_biomd.data.load_inputs`) or a ``(topology, system, positions)`` triple
    out_dir : run directory (created)
    time_ps : production time per replica, ps; ``time_ps / frame_interval_ps`` frames
    frame_interval_ps : Δt between frames, ps; must be a whole number of steps
    replicas, seed : replica ``r`` uses seed :func:`replica_seed(seed, r) <replica_seed>`
    temperature_k, timestep_fs, friction_per_ps : Langevin integrator settings
    chunk_frames : frames per DCD chunk (a kill loses at most one chunk of work)
    equilibration_ps : MD after minimisation, before the first frame, ps
    platform, threads : OpenMM platform (default CUDA if present, else CPU) and CPU threads
    cpu : make and drive each Context from this CPU core (:func:`~openmm_biomd.affinity.pinned_to_cpu`;
        ``threads`` then defaults to 1).  On VMs whose idle cores wake slowly a small system runs several
        times faster so (BENCHMARKS.md, 2026-12-03); give generators run side by side different cores
    max_chunks : stop after writing this many chunks in this call (for batch
        queues with a time limit, and tests); the run stays resumable
    log : file-like for one progress line per chunk (default: none)

    Returns
    -------
    dict
        The run's metadata (as in ``OUT/metadata.json``); ``status`` is
        ``"complete"`` or ``"incomplete"``.
    """
    started = time.perf_counter()
    out = Path(out_dir)
    check_output_folder(out, MD_COMMAND, MD_OUTPUTS, _EARLIER_MD)  # (a user's topology.pdb had been kept as the run's)
    settings = MDSettings(
        time_ps=float(time_ps),
        frame_interval_ps=float(frame_interval_ps),
        replicas=int(replicas),
        temperature_k=float(temperature_k),
        timestep_fs=float(timestep_fs),
        friction_per_ps=float(friction_per_ps),
        seed=int(seed),
        chunk_frames=int(chunk_frames),
        equilibration_ps=float(equilibration_ps),
    )
    loaded = as_loaded_system(system)
    n_atoms = loaded.system.getNumParticles()
    old = read_metadata(out) if (out / "metadata.json").exists() else None
    if old is None and out.is_dir() and any(out.glob("replica_*")):
        raise RunMismatchError(f"{out} holds replica directories but no metadata.json; use a new output directory")
    if old is not None:
        _forget_deleted_replicas(old, out, log)
    if old is not None and _finished(old, loaded, settings):
        # Nothing to run, so no platform is needed: data made on a GPU is used as is on a CPU-only machine.
        for replica, frames in enumerate(old["frames_per_replica"]):
            ReplicaDir(out / f"replica_{replica:03d}").check_finished(frames)
        return old
    plat, properties = _platform_for_resume(old, platform, pinned_threads(threads, cpu), n_atoms)

    meta = _new_metadata(loaded, settings, plat.getName(), properties)
    if old is not None:
        diffs = _compare(old, meta)
        if diffs:
            raise RunMismatchError(
                f"{out} was generated with different settings, refusing to resume: " + "; ".join(diffs)
                + ". Use the same settings (or `biomd generate-data --resume DIR`), or a new output directory."
            )
        meta["frames_per_replica"] = old["frames_per_replica"] + [0] * (settings.replicas - len(old["frames_per_replica"]))
        meta["wall_s"], meta["md_wall_s"] = old["wall_s"], old["md_wall_s"]
        meta["sessions"] = list(old.get("sessions", []))  # a copy: `old` is what a refused call writes back
        meta["created"] = old.get("created", meta["created"])
    claim_output_folder(out, MD_COMMAND, MD_OUTPUTS, _EARLIER_MD)
    ensure_topology_pdb(out / "topology.pdb", loaded)

    session = {"started": _now(), "platform": plat.getName(), "properties": properties, "cpu": cpu,
               "chunks_written": 0}
    meta["sessions"].append(session)
    base_wall = meta["wall_s"]

    def flush(status: str) -> None:
        meta["status"] = status
        meta["wall_s"] = base_wall + (time.perf_counter() - started)
        session["wall_s"] = time.perf_counter() - started
        done_ns = sum(meta["frames_per_replica"]) * settings.frame_interval_ps / 1000.0
        meta["ns_per_day"] = done_ns / meta["md_wall_s"] * 86400.0 if meta["md_wall_s"] > 0 else None
        _atomic_write_json(out / "metadata.json", meta)

    flush("running")
    budget = max_chunks
    try:
        for replica in range(settings.replicas):
            if budget is not None and budget <= 0:
                break
            rdir = ReplicaDir(out / f"replica_{replica:03d}")
            with pinned_to_cpu(cpu):
                written = _run_replica(
                    loaded, settings, rdir, meta["seeds"][replica], plat, properties, budget,
                    on_chunk=lambda frames, seconds, r=replica: _on_chunk(meta, session, r, frames, seconds, flush,
                                                                          log),
                )
            meta["frames_per_replica"][replica] = rdir.progress()["frames"]
            if budget is not None:
                budget -= written
    except BaseException:  # a damaged checkpoint, a blow-up, Ctrl-C: the record says the run stopped
        if old is not None and not session["chunks_written"]:
            # refused before it added anything (e.g. a damaged checkpoint): the record stays the earlier one, or
            # the corrected rerun of the earlier settings would be refused as "shortened"
            _atomic_write_json(out / "metadata.json", old)
        else:
            flush("incomplete")
        raise
    complete = all(f >= settings.n_frames for f in meta["frames_per_replica"][: settings.replicas])
    flush("complete" if complete else "incomplete")
    return meta


def _on_chunk(meta: dict, session: dict, replica: int, frames: int, seconds: float, flush: Any, log: Any) -> None:
    """Record a completed chunk (``seconds`` of production MD) in the metadata."""
    meta["frames_per_replica"][replica] = frames
    meta["md_wall_s"] += seconds
    session["chunks_written"] += 1
    flush("running")
    if log is not None:
        print(f"replica {replica}: {frames}/{meta['settings']['time_ps'] / meta['settings']['frame_interval_ps']:.0f} "
              f"frames, {meta['ns_per_day'] or 0:.1f} ns/day", file=log, flush=True)


def _run_replica(
    loaded: LoadedSystem,
    settings: MDSettings,
    rdir: ReplicaDir,
    seed: int,
    platform: Any,
    properties: dict,
    max_chunks: int | None,
    on_chunk: Any,
) -> int:
    """Bring one replica to ``settings.n_frames`` frames (or stop after ``max_chunks``).

    ``on_chunk(frames, seconds)`` is called after each chunk's checkpoint.

    Returns
    -------
    int
        chunks written in this call.
    """
    progress = rdir.progress()
    if rdir.checkpoint.exists() and progress["frames"] >= settings.n_frames and progress["step"] == progress["frames"] * settings.steps_per_frame:
        # Done already; leave any files alone (no need to build a Context).
        return 0
    rdir.path.mkdir(parents=True, exist_ok=True)
    rdir.remove_temporaries()
    simulation = make_simulation(loaded, settings, seed, platform, properties)
    spf = settings.steps_per_frame
    if rdir.checkpoint.exists():
        load_checkpoint(simulation.context, rdir.checkpoint)
        progress = rdir.reconcile(int(simulation.currentStep), spf)
    else:
        # Killed (or never started) before the first checkpoint: start this replica afresh, unless it has chunks
        # (written only after that checkpoint): then the checkpoint was lost, and a fresh start would delete them.
        rdir.refuse_chunks_without_checkpoint()
        rdir.reset()
        equilibrate(simulation, loaded.positions, settings.temperature_k, seed, settings.equilibration_steps)
        rdir.save_checkpoint(simulation, 0, 0)
        progress = rdir.progress()
    chunks, frames = progress["chunks"], progress["frames"]
    written = 0
    while frames < settings.n_frames and (max_chunks is None or written < max_chunks):
        n = min(settings.chunk_frames, settings.n_frames - frames)
        t0 = time.perf_counter()
        write_chunk(simulation, rdir.chunk(chunks), n, spf)
        seconds = time.perf_counter() - t0
        chunks, frames, written = chunks + 1, frames + n, written + 1
        rdir.save_checkpoint(simulation, chunks, frames)
        on_chunk(frames, seconds)
    return written


def resume_md(
    out_dir: str | os.PathLike,
    *,
    time_ps: float | None = None,
    replicas: int | None = None,
    chunk_frames: int | None = None,
    platform: str | None = None,
    threads: int | None = None,
    cpu: int | None = None,
    max_chunks: int | None = None,
    log: Any = None,
) -> dict:
    """Continue a run from its ``metadata.json`` alone (optionally longer or with more replicas).

    The system is rebuilt from the recorded inputs (bundled name, or the
    input files' paths and options); a run made from a Python object must be
    resumed with :func:`generate_md` and the same object.
    """
    meta = read_metadata(out_dir)
    system = rebuild_system(meta)
    settings = dict(meta["settings"])
    if time_ps is not None:
        settings["time_ps"] = float(time_ps)
    if replicas is not None:
        settings["replicas"] = int(replicas)
    if chunk_frames is not None:
        settings["chunk_frames"] = int(chunk_frames)
    settings = asdict(MDSettings.from_dict(settings))
    return generate_md(system, out_dir, **settings, platform=platform, threads=threads, cpu=cpu, max_chunks=max_chunks,
                       log=log)


def rebuild_system(meta: dict) -> LoadedSystem:
    """The system a run's metadata describes (bundled name, or input files and options)."""
    from .inputs import load_inputs

    inputs = dict(meta["source"].get("inputs") or {})
    if "bundled" in inputs:
        return get_system(inputs["bundled"]).load()
    if not inputs:
        raise ValueError(
            "this run was made from a Python object, not from files: resume it with generate_md(...) and the same system"
        )
    return load_inputs(**inputs)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def system_record(loaded: LoadedSystem) -> dict:
    """Provenance of the simulated system, shared by every data-generation summary."""
    return {
        "created": _now(),
        "system": loaded.description.get("name"),
        "source": loaded.description,
        "force_field": loaded.description.get("force_field", ""),
        "n_atoms": loaded.system.getNumParticles(),
        "system_sha256": system_sha256(loaded.system),
    }


def _new_metadata(loaded: LoadedSystem, settings: MDSettings, platform_name: str, properties: dict) -> dict:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "status": "running",
        **system_record(loaded),
        "settings": asdict(settings),
        "temperature_k": settings.temperature_k,
        "timestep_fs": settings.timestep_fs,
        "frame_interval_ps": settings.frame_interval_ps,
        "friction_per_ps": settings.friction_per_ps,
        "steps_per_frame": settings.steps_per_frame,
        "integrator": "LangevinMiddleIntegrator",
        "time_zero": "end of equilibration (minimisation, then equilibration_ps of MD); frame i is at (i + 1)·Δt",
        "platform": {"name": platform_name, "properties": properties},
        "seeds": [replica_seed(settings.seed, r) for r in range(settings.replicas)],
        "frames_per_replica": [0] * settings.replicas,
        "wall_s": 0.0,
        "md_wall_s": 0.0,
        "ns_per_day": None,
        "ns_per_day_basis": "production MD incl. frame and chunk writing; excludes setup, minimisation, equilibration",
        "sessions": [],
        "versions": package_versions(),
    }


def ensure_topology_pdb(path: Path, loaded: LoadedSystem) -> None:
    """Write ``loaded``'s ``topology.pdb`` unless ``path`` already holds a topology of its atoms: a damaged one had
    been kept, and with it the run's frames could not be read. (Called once the folder is the run's own and the
    System on disk has been matched, so the file is made from the same System.)"""
    from ..trajectory_io import read_topology

    try:
        fits = read_topology(path, "topology.pdb").n_atoms == loaded.system.getNumParticles()
    except (FileNotFoundError, ValueError):  # missing, or not a topology
        fits = False
    if not fits:
        _write_topology_pdb(path, loaded)


def _write_topology_pdb(path: Path, loaded: LoadedSystem) -> None:
    import io

    from openmm import app, unit

    buffer = io.StringIO()
    app.PDBFile.writeFile(loaded.topology, loaded.positions * unit.nanometer, buffer, keepIds=True)
    _atomic_write_bytes(path, buffer.getvalue().encode())


# --------------------------------------------------------------------------- reading


def _read_dcd(path: Path) -> tuple:
    """``(xyz [F, N, 3] Å, cell lengths Å or None, cell angles or None)`` of one DCD, via mdtraj."""
    from mdtraj.formats import DCDTrajectoryFile

    if why := dcd_cut_short(path):
        raise damaged_file(path, why, "Restore it from a copy, or delete its replica directory and resume the run "
                           "to regenerate it.")
    with quiet_c_stdout(), DCDTrajectoryFile(str(path)) as fh:
        return fh.read()


#: what to do about a run's replica found damaged or missing when its frames are read
_REGENERATE_REMEDY = ("Rerun the generate-data command that made it (it names the damage, and generates a deleted "
                      "replica folder again), or restore the files from a copy.")


def _replica_chunks(out_dir: Path, replica: int) -> list[Path]:
    """The chunks of a replica that its last checkpoint covers (orphans of a killed run are left out)."""
    rdir = ReplicaDir(Path(out_dir) / f"replica_{replica:03d}")
    if not rdir.path.is_dir():
        raise FileNotFoundError(f"{rdir.path} does not exist")
    n = rdir.progress()["chunks"]
    chunks = [rdir.chunk(i) for i in range(n)]
    for path in chunks:
        if not path.exists():  # (it had been OSError's bare "No such file or directory")
            raise damaged_file(path, f"it is missing, but {rdir.progress_file.name} counts {n} chunks",
                               _REGENERATE_REMEDY)
    return chunks


def load_frames(out_dir: str | os.PathLike, replica: int = 0) -> np.ndarray:
    """All frames of one replica, chunks read in order with mdtraj.

    Returns
    -------
    np.ndarray
        ``[F, N, 3]`` float32, nm; frame ``i`` is at time ``(i + 1)·Δt``.
    """
    parts = []
    for path in _replica_chunks(Path(out_dir), replica):
        xyz, _, _ = _read_dcd(path)
        parts.append(np.asarray(xyz, dtype=np.float32) / 10.0)  # DCD stores Å
    if not parts:
        n_atoms = read_metadata(out_dir)["n_atoms"]
        return np.zeros((0, n_atoms, 3), dtype=np.float32)
    return np.concatenate(parts, axis=0)


def load_trajectory(out_dir: str | os.PathLike, replica: int = 0):
    """One replica as an ``mdtraj.Trajectory`` (topology from ``topology.pdb``, time in ps, box if periodic)."""
    import mdtraj

    out = Path(out_dir)
    from ..trajectory_io import read_topology

    topology = read_topology(out / "topology.pdb", f"the topology of {out}")
    # The exact step from the metadata (the DCD header holds it as float32 AKMA units).
    timestep_ps = read_metadata(out)["timestep_fs"] / 1000.0
    xyz, times, lengths, angles = [], [], [], []
    for path in _replica_chunks(out, replica):
        header = read_dcd_header(path)
        x, cell_lengths, cell_angles = _read_dcd(path)
        xyz.append(x / 10.0)
        steps = header["first_step"] + header["interval_steps"] * np.arange(len(x))
        times.append(steps * timestep_ps)
        if cell_lengths is not None:
            lengths.append(cell_lengths / 10.0)
            angles.append(cell_angles)
    n_atoms = topology.n_atoms
    traj = mdtraj.Trajectory(
        np.concatenate(xyz) if xyz else np.zeros((0, n_atoms, 3), np.float32),
        topology,
        time=np.concatenate(times) if times else np.zeros(0),
    )
    if lengths:
        traj.unitcell_lengths, traj.unitcell_angles = np.concatenate(lengths), np.concatenate(angles)
    return traj


def iter_replica_trajectories(out_dir: str | os.PathLike) -> Iterator[Any]:
    """Each replica of a run as an ``mdtraj.Trajectory``, in replica order (what a training pipeline reads).

    A replica holding fewer frames than ``metadata.json`` records (its folder or a chunk deleted) raises
    :class:`DamagedRunFileError`: it had been read short, or skipped, without a word.  (More frames than recorded
    are a killed run's chunk the record had not yet counted.)
    """
    out = Path(out_dir)
    meta = read_metadata(out)
    for replica, recorded in enumerate(meta["frames_per_replica"]):
        folder = out / f"replica_{replica:03d}"
        if not folder.is_dir():
            if recorded:
                raise damaged_file(folder, f"it is missing, but metadata.json records {recorded} frames of it",
                                   _REGENERATE_REMEDY)
            continue
        trajectory = load_trajectory(out, replica)
        if trajectory.n_frames < recorded:
            raise damaged_file(folder, f"its chunks hold {trajectory.n_frames} frames, metadata.json records "
                               f"{recorded}", _REGENERATE_REMEDY)
        yield trajectory
