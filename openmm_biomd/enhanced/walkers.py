"""Well-tempered metadynamics walkers that share one bias, started along a path.

``K`` walkers, each its own ``Simulation`` with its own
``openmm.app.Metadynamics``, all pointed at one bias directory
(``OUT/bias``): OpenMM's multiple-walker protocol.  Every ``saveFrequency``
steps a walker writes its *own* hills (``bias_<id>_<n>.npy``, replacing its
previous file) and reads the newest file of every other id; its total bias is
its own hills plus everyone else's.  The walkers start from frames spread
evenly (in the first CV) along the path, so the bias fills the whole path
from the start instead of waiting for one walker to get there.

**How the walkers exchange** (``WalkerSettings.exchange``), when they all run
in this call, in chunks of exactly ``saveFrequency`` steps:

* ``"lockstep"`` (default): every walker runs its chunk and writes its hills;
  only then does each read everyone else's newest file.  At every exchange
  all walkers see the same hills, and the result does not depend on the order
  or the timing of the chunks, so the walkers can run side by side
  (``cpus``: spread over the cores, one thread pinned to each, a walker's
  Context made and driven from its core; bit-identical to one after another
  on the CPU platform, checked).
* ``"round_robin"``: walker 0 runs a chunk (and at its end saves and loads),
  then walker 1, ...: each walker sees the hills of those before it in this
  round and of those after it in the previous one.  One after another only;
  what runs recorded before ``exchange`` existed did.

Either way the exchange goes through the files (OpenMM's code path), and a
run is reproducible without a job scheduler.  ``walker_index=i`` runs only
walker ``i``: launch ``K`` such jobs (``biomd walkers ... --walker-index i``) on
separate machines sharing ``OUT`` and OpenMM syncs them through the files at
their own pace (then the result depends on timing, whatever ``exchange`` says).

**What is changed from stock OpenMM** (:class:`SharedBiasMetadynamics`,
relying on ``Metadynamics``' internals as of OpenMM 8.x, checked when each
walker is built): the walker id is its index, not a random number (a resumed
walker must recognise its own files); the bias directory is attached after
construction (the stock constructor would write a file under a random id); and
at the end of every chunk the freshly loaded total bias is pushed into the
Context (stock OpenMM does this only at the next hill); in lockstep the
reading of the others' files waits until every walker has written its own.

**Resuming** is per walker and chunk: after each chunk a walker commits
``state_<step>.chk`` (OpenMM checkpoint: positions, velocities, integrator RNG),
``state_<step>.npz`` (own hills, total bias, the other walkers' hills it has
loaded and their file indices) and the CV rows, then ``progress.json`` (the
commit point; older state files are deleted after it).  On resume a walker
reloads its committed state, cuts ``cv.csv`` back to the committed length and
rewrites its bias file from the committed hills, so hills from a chunk that was
cut short by a kill never reach the other walkers (separate jobs may have read
them in the meantime).  In lockstep a kill can fall between two walkers'
commits of one exchange; the walkers left behind then run that chunk again
alone (the others wait) and read the same files as the first time.  On one
platform a resumed run continues exactly as an uninterrupted one would
(bit-identical bias files and CV rows on the CPU platform, checked for both
protocols) when each walker's Context has one CPU thread (``threads=1``, or
``cpus``); with several, OpenMM's CPU sums change order from run to run and runs
of one seed agree only in distribution (see :mod:`openmm_biomd.data.md`).

Layout of ``OUT``::

    OUT/walkers.json              settings, CVs, bias grid, walkers (id, seed frame, its CV)
    OUT/topology.pdb
    OUT/bias/bias_<id>_<n>.npy    the shared bias directory (OpenMM's file format)
    OUT/walker_000/cv.csv         time_ps, step, <cv names>, bias_kj_mol (every frame_interval_ps)
    OUT/walker_000/progress.json  {"step", "cv_bytes", "save_index"} of the last commit
    OUT/walker_000/state_<step>.chk / .npz
    OUT/free_energy.csv, free_energy.png, free_energy.json
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import re
import sys
import time
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from openmm import unit
from openmm.app.metadynamics import Metadynamics, _LoadedBias

from biomd_core.io.output_folder import (
    check_output_folder,
    claim_output_folder,
    json_with_keys,
    refuse_results_without_record,
)

from ..affinity import DedicatedThreads, distinct_cpus
from ..data.md import (
    DamagedRunFileError,
    _atomic_write_bytes,
    _atomic_write_json,
    _fsync_dir,
    damaged_file,
    equilibrate,
    explained_blow_up,
    load_checkpoint,
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
from ..data.systems import as_loaded_system
from ..data.tables import write_csv
from .seeding_common import (
    CV_KINDS,
    CVSpec,
    add_input_arguments,
    add_md_arguments,
    check_frames,
    check_resumable,
    cv_record_with_kind,
    kt_kj_mol,
    md_kwargs,
    nearest_frames,
    resolve_inputs,
    run_record,
    write_common_files,
)

__all__ = [
    "SharedBiasMetadynamics",
    "WalkerRun",
    "WalkerSettings",
    "add_arguments",
    "bias_dir_free_energy",
    "main",
    "run_walkers",
]

FORMAT = "biomd-walkers"
#: the files walkers write into their folder (claimed with biomd_core.io.output_folder)
WALKERS_OUTPUTS = ("walkers.json", "topology.pdb", "path_nodes_*.npy", "bias", "walker_[0-9][0-9][0-9]",
                   "free_energy.csv", "free_energy.json", "free_energy.png")
_NON_DATA = ("platform", "threads", "cpus", "time_ps")
#: ``WalkerSettings.exchange`` values (see the module docstring).
EXCHANGE_PROTOCOLS = ("lockstep", "round_robin")
#: What a run recorded before these settings existed did.
SETTINGS_BEFORE_THEY_EXISTED = {"exchange": "round_robin"}
_BIAS_FILE = re.compile(r"^bias_(\d+)_(\d+)\.npy$")


# --------------------------------------------------------------------------- metadynamics with a fixed id


#: ``Metadynamics`` attributes this module relies on (OpenMM 8.x).
_INTERNALS = ("_id", "_selfBias", "_totalBias", "_loadedBiases", "_saveIndex", "_table", "_force", "_widths",
              "_limits", "_syncWithDisk", "biasDir", "saveFrequency", "variables")


class SharedBiasMetadynamics(Metadynamics):
    """``openmm.app.Metadynamics`` with a fixed walker id and a bias directory attached afterwards.

    Parameters
    ----------
    system : the walker's own System (the bias force is added to it)
    variables : ``BiasVariable`` list (1–3)
    temperature_k : K
    bias_factor : well-tempered γ > 1
    height_kj_mol : initial Gaussian height, kJ/mol
    frequency : steps between hills
    save_frequency : steps between writing own hills and reading the others'
        (a multiple of ``frequency``)
    bias_dir : the shared directory
    walker_id : this walker's id in the file names (unique within ``bias_dir``)
    defer_loading : at a save, only write this walker's hills; the caller reads the others'
        with :meth:`load_others` once every walker has written (lockstep exchange)
    """

    def __init__(self, system: Any, variables: list, temperature_k: float, bias_factor: float,
                 height_kj_mol: float, frequency: int, save_frequency: int, bias_dir: str | os.PathLike,
                 walker_id: int, defer_loading: bool = False) -> None:
        if save_frequency < frequency or save_frequency % frequency:
            raise ValueError(f"the save interval ({save_frequency} steps) must be a multiple of the hill "
                             f"interval ({frequency} steps)")
        self.defer_loading = bool(defer_loading)  # before the stock constructor, which calls _syncWithDisk
        # No biasDir here: the stock constructor would write an (empty) bias file under a random id.
        super().__init__(system, variables, temperature_k, bias_factor, height_kj_mol, frequency)
        missing = [name for name in _INTERNALS if not hasattr(self, name)]
        if missing:
            raise RuntimeError(
                f"this OpenMM's Metadynamics lacks {missing}; shared-bias walkers need OpenMM 8's implementation"
            )
        self.biasDir = str(bias_dir)
        self.saveFrequency = int(save_frequency)
        self._id = int(walker_id)

    @property
    def walker_id(self) -> int:
        return self._id

    @property
    def save_index(self) -> int:
        """How many times this walker has written its hills (the ``<n>`` of its file)."""
        return int(self._saveIndex)

    @property
    def force_group(self) -> int:
        return self._force.getForceGroup()

    def self_bias(self) -> np.ndarray:
        """This walker's own hills on the grid, kJ/mol (a copy; axes in reversed CV order)."""
        return np.array(self._selfBias)

    def total_bias(self) -> np.ndarray:
        """Own hills plus every other walker's loaded hills, kJ/mol (a copy)."""
        return np.array(self._totalBias)

    def push_bias(self, context: Any) -> None:
        """Put the current total bias into the Context's table (stock OpenMM waits for the next hill)."""
        flat = self._totalBias.flatten()
        if len(self.variables) == 1:
            self._table.setFunctionParameters(flat, *self._limits)
        else:
            self._table.setFunctionParameters(*self._widths, flat, *self._limits)
        self._force.updateParametersInContext(context)

    def get_state(self) -> dict:
        """Arrays that restore this object exactly (see :meth:`set_state`)."""
        ids = sorted(self._loadedBiases)
        return {
            "self_bias": np.array(self._selfBias),
            "total_bias": np.array(self._totalBias),
            "save_index": np.array(self._saveIndex),
            "loaded_ids": np.array(ids, dtype=np.int64),
            "loaded_indices": np.array([self._loadedBiases[i].index for i in ids], dtype=np.int64),
            "loaded_biases": np.stack([self._loadedBiases[i].bias for i in ids]) if ids
            else np.zeros((0, *self._selfBias.shape)),
        }

    def set_state(self, state: dict, context: Any) -> None:
        """Restore :meth:`get_state`'s arrays and push the bias into ``context``."""
        if state["self_bias"].shape != self._selfBias.shape:
            raise RuntimeError(f"saved bias grid {state['self_bias'].shape} does not match {self._selfBias.shape}")
        self._selfBias = np.array(state["self_bias"])
        self._totalBias = np.array(state["total_bias"])
        self._saveIndex = int(state["save_index"])
        self._loadedBiases = {
            int(i): _LoadedBias(int(i), int(n), np.array(b))
            for i, n, b in zip(state["loaded_ids"], state["loaded_indices"], state["loaded_biases"])
        }
        self.push_bias(context)

    def _syncWithDisk(self) -> None:  # OpenMM's hook, called by Metadynamics.step at every save
        if not self.defer_loading or self.biasDir is None:  # (None: inside the stock constructor)
            super()._syncWithDisk()
            return
        self._saveIndex += 1
        self.publish()

    def load_others(self) -> None:
        """Read every other walker's newest hills and rebuild the total bias (in walker-id order, so the
        sum is the same whatever order the files were written in); :meth:`push_bias` puts it in a Context."""
        for wid, (n, name) in sorted(_newest_bias_files(self.biasDir).items()):
            if wid != self._id and (wid not in self._loadedBiases or n > self._loadedBiases[wid].index):
                self._loadedBiases[wid] = _LoadedBias(wid, n, np.load(os.path.join(self.biasDir, name)))
        self._totalBias = np.copy(self._selfBias)
        for wid in sorted(self._loadedBiases):
            self._totalBias += self._loadedBiases[wid].bias

    def publish(self) -> None:
        """Make the bias directory hold exactly this walker's committed hills (after a resume)."""
        pattern = re.compile(rf"^(bias|temp)_{self._id}_(\d+)\.npy$")
        for name in os.listdir(self.biasDir):
            if pattern.match(name):
                os.remove(os.path.join(self.biasDir, name))
        if self._saveIndex > 0:
            buffer = io.BytesIO()
            np.save(buffer, self._selfBias)
            _atomic_write_bytes(Path(self.biasDir) / f"bias_{self._id}_{self._saveIndex}.npy", buffer.getvalue())


def bias_dir_free_energy(bias_dir: str | os.PathLike, temperature_k: float, bias_factor: float) -> np.ndarray:
    """Free energy from the newest bias file of every walker in a bias directory, kJ/mol.

    The same estimate as ``Metadynamics.getFreeEnergy()`` of a walker that has
    just loaded everyone's hills: ``F = −γ/(γ−1) · Σ_walkers bias``.

    Returns
    -------
    np.ndarray
        Grid in the bias files' shape (CV order reversed: ``[cv1, cv0]`` for two CVs), kJ/mol.
    """
    newest = _newest_bias_files(bias_dir)
    if not newest:
        raise FileNotFoundError(f"{bias_dir} holds no bias files yet")
    total = sum(np.load(os.path.join(bias_dir, name)) for _, name in newest.values())
    return -bias_factor / (bias_factor - 1.0) * total


def _newest_bias_files(bias_dir: str | os.PathLike) -> dict[int, tuple[int, str]]:
    """Walker id -> (save index, file name) of its newest ``bias_<id>_<n>.npy`` in ``bias_dir``."""
    newest: dict[int, tuple[int, str]] = {}
    for name in os.listdir(bias_dir):
        match = _BIAS_FILE.match(name)
        if match:
            wid, n = int(match.group(1)), int(match.group(2))
            if wid not in newest or n > newest[wid][0]:
                newest[wid] = (n, name)
    return newest


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class WalkerSettings:
    """Multiple-walker well-tempered metadynamics (saved in ``walkers.json``).

    Attributes
    ----------
    n_walkers : walkers (each with its own seed and seed frame)
    time_ps : MD per walker, ps (a whole number of save intervals; may grow on resume)
    height_kj_mol : initial Gaussian height, kJ/mol
    bias_factor : well-tempered γ (> 1)
    sigma : Gaussian width per CV, CV units; None = 1/20 of the path's CV range
    cv_min, cv_max : bias grid per CV; None = the path's range ± 10 %
    grid_width : grid points per CV; None = OpenMM's default (5 per σ)
    deposit_interval_ps : time between hills, ps
    save_interval_ps : time between bias exchanges (= the round-robin chunk), ps
    frame_interval_ps : time between CV rows in ``cv.csv``, ps
    equilibration_ps : unbiased MD after minimisation, before the first hill, ps
    temperature_k, timestep_fs, friction_per_ps : Langevin integrator
    seed : master seed (walker ``i`` uses ``replica_seed(seed, i)``)
    exchange : ``"lockstep"`` or ``"round_robin"`` (see the module docstring)
    platform, threads : OpenMM platform and CPU threads (do not change the data)
    cpus : CPU cores to run the walkers on side by side (lockstep only): walker ``i`` on
        ``cpus[i % len(cpus)]``, its Context made and driven from that core's thread (pinned there)
        with one thread unless ``threads`` says otherwise; walkers sharing a core run one after
        another on it; None = one after another on this thread. Does not change the data
    """

    n_walkers: int = 4
    time_ps: float = 1000.0
    height_kj_mol: float = 1.0
    bias_factor: float = 10.0
    sigma: tuple[float, ...] | None = None
    cv_min: tuple[float, ...] | None = None
    cv_max: tuple[float, ...] | None = None
    grid_width: tuple[int, ...] | None = None
    deposit_interval_ps: float = 1.0
    save_interval_ps: float = 10.0
    frame_interval_ps: float = 1.0
    equilibration_ps: float = 2.0
    temperature_k: float = 300.0
    timestep_fs: float = 2.0
    friction_per_ps: float = 1.0
    seed: int = 0
    exchange: str = "lockstep"
    platform: str | None = None
    threads: int | None = None
    cpus: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "cpus", distinct_cpus(self.cpus))
        if self.exchange not in EXCHANGE_PROTOCOLS:
            raise ValueError(f"exchange must be one of {EXCHANGE_PROTOCOLS}, not {self.exchange!r}")
        if self.cpus is not None and self.exchange != "lockstep":
            raise ValueError("round-robin walkers run one after another by definition; side by side on cpus "
                             "needs exchange='lockstep'")
        require_positive(self, ("time_ps", "height_kj_mol", "deposit_interval_ps", "save_interval_ps",
                                "frame_interval_ps", "temperature_k", "timestep_fs", "friction_per_ps"))
        if self.n_walkers < 1:
            raise ValueError("n_walkers must be at least 1")
        if not 1 < self.bias_factor < math.inf:  # (γ = inf had run and written a free energy of NaNs: γ/(γ - 1))
            raise ValueError(f"bias_factor must be a finite number > 1 (well-tempered), got {self.bias_factor}")
        if self.equilibration_ps < 0:
            raise ValueError("equilibration_ps must not be negative")
        for name in ("sigma", "cv_min", "cv_max", "grid_width"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))
                if not np.all(np.isfinite(np.asarray(value, dtype=float))):  # (inf had been a traceback or an
                    # OpenMM message naming none of them, after the run folder was written)
                    raise ValueError(f"{name} must be finite, got {list(value)}")
        dep = whole_steps(self.deposit_interval_ps, self.timestep_fs, "hill deposition interval")
        save = whole_steps(self.save_interval_ps, self.timestep_fs, "save interval")
        frame = whole_steps(self.frame_interval_ps, self.timestep_fs, "frame interval")
        whole_steps(self.equilibration_ps, self.timestep_fs, "equilibration time")
        if save % dep or save % frame:
            raise ValueError(f"the save interval ({self.save_interval_ps:g} ps) must be a whole number of hill "
                             f"intervals ({self.deposit_interval_ps:g} ps) and of frame intervals "
                             f"({self.frame_interval_ps:g} ps)")
        n = self.time_ps / self.save_interval_ps
        if abs(n - round(n)) > 1e-6 * max(1.0, n) or round(n) < 1:
            raise ValueError(
                f"time {self.time_ps:g} ps is not a whole number of save intervals ({self.save_interval_ps:g} ps)"
            )

    @property
    def chunk_steps(self) -> int:
        return whole_steps(self.save_interval_ps, self.timestep_fs)

    @property
    def total_steps(self) -> int:
        return self.chunk_steps * int(round(self.time_ps / self.save_interval_ps))

    def data_record(self) -> dict:
        record = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items() if k not in _NON_DATA}
        return record


def _bias_grid(cvs: Sequence[CVSpec], values: np.ndarray, settings: WalkerSettings) -> list[dict]:
    """Resolved ``min``, ``max``, ``sigma``, ``grid_width`` per CV (path range ± 10 %, σ = range / 20 by default)."""

    def pick(option: tuple | None, i: int, default: float) -> float:
        if option is None:
            return default
        if len(option) != len(cvs):
            raise ValueError(f"give one value per CV ({len(cvs)}), got {list(option)}")
        return float(option[i])

    grid = []
    for i, cv in enumerate(cvs):
        v = values[:, i]
        span = float(np.ptp(v))
        if span == 0 and (settings.sigma is None or settings.cv_min is None or settings.cv_max is None):
            raise ValueError(f"the path does not move along {cv.name}: give sigma, cv_min and cv_max")
        lo = pick(settings.cv_min, i, float(v.min()) - 0.1 * span)
        hi = pick(settings.cv_max, i, float(v.max()) + 0.1 * span)
        sigma = pick(settings.sigma, i, span / 20.0)
        if not lo < hi or not sigma > 0:
            raise ValueError(f"{cv.name}: need cv_min < cv_max and sigma > 0, got [{lo}, {hi}], sigma {sigma}")
        if v.min() < lo or v.max() > hi:
            raise ValueError(f"{cv.name}: the path's range [{v.min():.4g}, {v.max():.4g}] leaves the bias grid "
                             f"[{lo:.4g}, {hi:.4g}]; widen cv_min/cv_max")
        width = None if settings.grid_width is None else int(pick(settings.grid_width, i, 0))
        if width is None:
            width = int(np.ceil(5 * (hi - lo) / sigma))  # OpenMM's default
        if width < 2:  # (OpenMM's "a non-periodic tabulated function must have at least two points", later)
            raise ValueError(f"{cv.name}: the bias grid [{lo:.4g}, {hi:.4g}] would have {width} point(s) "
                             f"(sigma {sigma:.4g} is wider than the grid): give a smaller sigma or at least 2 grid "
                             "points")
        grid.append({"name": cv.name, "unit": cv.unit, "min": lo, "max": hi, "sigma": sigma, "grid_width": width})
    return grid


# --------------------------------------------------------------------------- one walker


class _Walker:
    """One walker: Simulation + SharedBiasMetadynamics + its directory (commit/restore)."""

    def __init__(self, index: int, loaded: Any, cvs: Sequence[CVSpec], grid: list[dict], settings: WalkerSettings,
                 out: Path, start_nm: np.ndarray, platform: Any, properties: dict, lockstep: bool) -> None:
        import openmm
        from openmm.app.metadynamics import BiasVariable

        self.index = index
        self.settings = settings
        self.dir = out / f"walker_{index:03d}"
        self.start_nm = start_nm
        self.seed = replica_seed(settings.seed, index)
        self.cv_names = [g["name"] for g in grid]
        system = openmm.XmlSerializer.clone(loaded.system)
        variables = [BiasVariable(cv.force(), g["min"], g["max"], g["sigma"], False, g["grid_width"])
                     for cv, g in zip(cvs, grid)]
        self.meta = SharedBiasMetadynamics(
            system, variables, settings.temperature_k, settings.bias_factor, settings.height_kj_mol,
            whole_steps(settings.deposit_interval_ps, settings.timestep_fs), settings.chunk_steps,
            out / "bias", walker_id=index, defer_loading=lockstep,
        )
        self._rows: list[tuple] = []  # CV rows of the chunk run but not yet committed
        self.simulation = make_simulation(loaded, settings, self.seed, platform, properties, system=system)

    @property
    def step(self) -> int:
        return int(self.simulation.currentStep)

    # ---- files

    def _state(self, step: int, suffix: str) -> Path:
        return self.dir / f"state_{step:012d}.{suffix}"

    def _progress(self) -> dict | None:
        path = self.dir / "progress.json"
        return read_json(path) if path.exists() else None

    def start(self) -> None:
        """Resume from the last commit, or equilibrate from the seed frame and commit step 0."""
        progress = self._progress()
        if progress is None:
            # Never committed: anything here is from a run killed before its first commit, unless its CV table
            # has rows (only a commit's chunk adds them): then progress.json was lost, and a fresh start would
            # delete what was committed.
            self._refuse_rows_without_progress()
            if self.dir.exists():
                for p in self.dir.iterdir():
                    p.unlink()
            self.dir.mkdir(parents=True, exist_ok=True)
            self.meta.publish()  # removes stale files of this id
            with explained_blow_up(f"walker {self.index}'s equilibration from its seed frame",
                                   "Nothing of this walker is committed yet."):
                equilibrate(self.simulation, self.start_nm, self.settings.temperature_k, self.seed,
                            whole_steps(self.settings.equilibration_ps, self.settings.timestep_fs))
            header = ",".join(["time_ps", "step", *self.cv_names, "bias_kj_mol"]) + "\n"
            _atomic_write_bytes(self.dir / "cv.csv", header.encode())
            self._commit()
            return
        step = int(progress["step"])
        self._load_commit(step)
        cv_csv, cv_bytes = self.dir / "cv.csv", int(progress["cv_bytes"])
        held = cv_csv.stat().st_size if cv_csv.exists() else 0
        if held < cv_bytes:  # (truncating it to cv_bytes would pad it with zero bytes)
            raise damaged_file(cv_csv, f"walker {self.index}'s last commit (step {step}) wrote {cv_bytes} bytes of "
                               f"CV rows, the file holds {held}")
        with open(cv_csv, "r+b") as fh:  # drop rows of a chunk that was not committed
            fh.truncate(cv_bytes)
        self._remove_stale_states(step)
        self.meta.publish()

    def _refuse_rows_without_progress(self) -> None:
        cv_csv = self.dir / "cv.csv"
        if cv_csv.exists() and len(cv_csv.read_bytes().splitlines()) > 1:
            raise DamagedRunFileError(
                f"{self.dir / 'progress.json'} is missing, but {cv_csv} holds committed CV rows: walker "
                f"{self.index} continues only from its last commit, which that file names, and starting it afresh "
                f"would delete them. Restore progress.json from a copy, or delete {self.dir} to run this walker "
                "again from its seed frame.")

    def _load_commit(self, step: int) -> None:
        """The Context and this walker's hills as committed at ``step``; a damaged state file is named."""
        chk, npz = self._state(step, "chk"), self._state(step, "npz")
        for path in (chk, npz):
            if not path.exists():
                raise damaged_file(self.dir, f"walker {self.index}'s last commit (step {step}) names {path.name}, "
                                   "which is missing")
        load_checkpoint(self.simulation.context, chk)
        state = self.simulation.context.getState(getPositions=True, getVelocities=True, getEnergy=True)
        numbers = [state.getPositions(asNumpy=True).value_in_unit(unit.nanometer),
                   state.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond),
                   state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)]
        if not all(np.all(np.isfinite(x)) for x in numbers):
            raise damaged_file(chk, "it loads, but with coordinates, velocities or an energy that are not finite")
        try:
            with np.load(npz) as data:
                self.meta.set_state(dict(data), self.simulation.context)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise damaged_file(npz, f"its hills cannot be read ({type(e).__name__}: {e})") from e
        if self.step != step:
            raise damaged_file(chk, f"it holds step {self.step}, walker {self.index}'s last commit says {step}")

    def run_chunk(self) -> None:
        """One chunk of ``save_interval_ps`` (hills, then save-and-load at its end), then commit."""
        self.run_md()
        self.finish_chunk()

    def run_md(self) -> None:
        """The MD of one chunk of ``save_interval_ps``: hills, and at its end this walker's hills saved
        (and, unless in lockstep, the others' loaded). Commits nothing: see :meth:`finish_chunk`."""
        s = self.settings
        spf = whole_steps(s.frame_interval_ps, s.timestep_fs)
        group = self.meta.force_group
        kept = f"Its last commit (step {self.step}) and the other walkers' are intact in {self.dir.parent}."
        with explained_blow_up(f"walker {self.index} (in the chunk from step {self.step})", kept):
            for _ in range(s.chunk_steps // spf):
                self.meta.step(self.simulation, spf)  # the only way hills get deposited
                values = self.meta.getCollectiveVariables(self.simulation)
                bias = self.simulation.context.getState(getEnergy=True, groups={group}).getPotentialEnergy()
                bias_kj_mol = bias.value_in_unit(unit.kilojoule_per_mole)
                self._rows.append((self.step * s.timestep_fs / 1000.0, self.step, *values, bias_kj_mol))

    def finish_chunk(self) -> None:
        """End the chunk :meth:`run_md` ran: in lockstep read the others' hills (every walker of the
        exchange has written its own by now), make the Context see the new total bias, commit."""
        if self.meta.defer_loading:
            self.meta.load_others()
        # The chunk ended on a multiple of saveFrequency, so the others' hills have just been loaded;
        # make the Context see them now.
        self.meta.push_bias(self.simulation.context)
        rows, self._rows = self._rows, []
        text = "".join(f"{r[0]:.6f},{r[1]}," + ",".join(f"{v:.6f}" for v in r[2:]) + "\n" for r in rows)
        with open(self.dir / "cv.csv", "ab") as fh:
            fh.write(text.encode())
            fh.flush()
            os.fsync(fh.fileno())
        self._commit()

    def _commit(self) -> None:
        step = self.step
        tmp = self._state(step, "chk.tmp")
        with open(tmp, "wb") as fh:
            self.simulation.saveCheckpoint(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self._state(step, "chk"))
        buffer = io.BytesIO()
        np.savez(buffer, **self.meta.get_state())
        _atomic_write_bytes(self._state(step, "npz"), buffer.getvalue())
        _atomic_write_json(self.dir / "progress.json", {
            "step": step, "time_ps": step * self.settings.timestep_fs / 1000.0,
            "cv_bytes": (self.dir / "cv.csv").stat().st_size, "save_index": self.meta.save_index,
        })
        self._remove_stale_states(step)

    def _remove_stale_states(self, step: int) -> None:
        keep = {self._state(step, "chk").name, self._state(step, "npz").name}
        for p in self.dir.glob("state_*"):
            if p.name not in keep:
                p.unlink()
        _fsync_dir(self.dir)


# --------------------------------------------------------------------------- campaign


@dataclass
class WalkerRun:
    """What :func:`run_walkers` returns.

    Attributes
    ----------
    summary : ``walkers.json`` plus per-walker progress and the free-energy file names
    free_energy_kj_mol : free energy on the bias grid, kJ/mol, zero at its minimum
        (shape: one axis per CV, *reversed* CV order, as OpenMM's bias arrays)
    axes : grid values per CV (CV order), each ``[grid_width]``
    metadynamics : walker index -> its ``SharedBiasMetadynamics`` (walkers run in this call)
    """

    summary: dict
    free_energy_kj_mol: np.ndarray
    axes: list[np.ndarray]
    metadynamics: dict = field(default_factory=dict)


def run_walkers(
    loaded: Any,
    path_frames_nm: np.ndarray,
    cvs: CVSpec | Sequence[CVSpec],
    settings: WalkerSettings,
    out_dir: str | os.PathLike,
    *,
    walker_index: int | None = None,
    max_chunks: int | None = None,
    log: Any = None,
) -> WalkerRun:
    """Run (or resume) well-tempered metadynamics walkers sharing one bias directory.

    Parameters
    ----------
    loaded : :class:`~openmm_biomd.data.LoadedSystem` (or a bundled system's name)
    path_frames_nm : ``[T, N, 3]`` nm, the path; walker ``i`` starts from the frame
        whose first CV is nearest ``i``-th of ``n_walkers`` values evenly over the path's range
    cvs : one or two :class:`~.seeding_common.CVSpec` (bias variables)
    settings : :class:`WalkerSettings`
    out_dir : run directory (see the module docstring); rerun to resume or, with a
        larger ``time_ps``, to extend
    walker_index : run only this walker (separate jobs sharing ``out_dir``); None = all of them, exchanging
        as ``settings.exchange`` says
    max_chunks : stop after this many chunks per walker in this call (resumable)
    log : file-like for one line per round

    Returns
    -------
    WalkerRun
        The free energy is that of the bias directory's newest files (equal to
        every walker's ``getFreeEnergy()`` after a lockstep exchange, to the last
        walker's after a round-robin round).
    """
    started = time.perf_counter()
    loaded = as_loaded_system(loaded)
    cvs = [cvs] if isinstance(cvs, CVSpec) else list(cvs)
    if not 1 <= len(cvs) <= 2:
        raise ValueError(f"walkers bias one or two CVs, got {len(cvs)}")
    n_atoms = loaded.system.getNumParticles()
    frames = check_frames(path_frames_nm, loaded.system, cvs=cvs)
    values = np.stack([np.asarray(cv.values(frames), dtype=np.float64) for cv in cvs], axis=1)  # [T, C]
    if not np.all(np.isfinite(values)):
        raise ValueError("a CV is not finite on every path frame")
    if walker_index is not None and not 0 <= walker_index < settings.n_walkers:
        raise ValueError(f"walker_index {walker_index} is not in 0..{settings.n_walkers - 1}")
    grid = _bias_grid(cvs, values, settings)
    targets = np.linspace(values[:, 0].min(), values[:, 0].max(), settings.n_walkers)
    starts = nearest_frames(values[:, 0], targets)
    plan = [{"index": i, "walker_id": i, "seed": replica_seed(settings.seed, i), "start_frame": int(f),
             "start_cv": values[f].tolist()} for i, f in enumerate(starts)]

    out = Path(out_dir)
    record = {
        "format": FORMAT,
        **run_record(loaded, [cv_record_with_kind(cv) for cv in cvs], frames),
        "settings": settings.data_record(),
        "bias_grid": grid,
        "walkers": plan,
        "bias_dir": "bias",
        "protocol": _protocol(settings, walker_index),
    }
    json_path = out / "walkers.json"
    # another command's folder, or files of the user's, are refused by name (a free_energy.csv of theirs was
    # replaced)
    earlier = json_with_keys("walkers.json", "format", "settings")
    check_output_folder(out, "walkers", WALKERS_OUTPUTS, earlier)
    refuse_results_without_record(out, "walkers.json", ("walker_[0-9][0-9][0-9]/progress.json",))
    earlier_record = json_path.read_bytes() if json_path.exists() else None
    if earlier_record is not None:
        old = read_json(json_path)
        old["settings"] = {**SETTINGS_BEFORE_THEY_EXISTED, **old.get("settings", {})}
        check_resumable(old, record, ("system_sha256", "cv", "path_sha256", "bias_grid", "walkers"), out)
        record["time_ps"] = max(settings.time_ps, old.get("time_ps", 0.0))
    else:
        record["time_ps"] = settings.time_ps
    record["versions"] = package_versions()
    cpus = settings.cpus if walker_index is None else None
    first_cpu = cpus[0] if cpus else None
    plat, properties = select_platform(settings.platform, pinned_threads(settings.threads, first_cpu), n_atoms)
    claim_output_folder(out, "walkers", WALKERS_OUTPUTS, earlier)  # (once the machine settings are known good)
    write_common_files(out, loaded, cvs)
    (out / "bias").mkdir(exist_ok=True)
    _atomic_write_json(json_path, record)

    indices = range(settings.n_walkers) if walker_index is None else [walker_index]
    lockstep = settings.exchange == "lockstep" and walker_index is None
    with DedicatedThreads(len(indices), cpus) as threads:
        try:
            walkers = threads.run([  # each walker's Context is made (and equilibrated) on its core's thread
                (slot, lambda i=i: _started(_Walker(i, loaded, cvs, grid, settings, out, frames[starts[i]], plat,
                                                    properties, lockstep)))
                for slot, i in enumerate(indices)
            ])
        except BaseException:
            if earlier_record is not None:  # refused on resuming (a damaged checkpoint): keep the earlier record
                _atomic_write_bytes(json_path, earlier_record)
            raise
        t_md = time.perf_counter()
        target = settings.total_steps
        done_chunks = 0
        while any(w.step < target for w in walkers) and (max_chunks is None or done_chunks < max_chunks):
            if lockstep:
                # The walkers at the lowest step run their next chunk together (all of them, unless a kill
                # fell between two walkers' commits of an exchange: then those left behind catch up).
                low = min(w.step for w in walkers)
                group = [(slot, w) for slot, w in enumerate(walkers) if w.step == low]
                threads.run([(slot, w.run_md) for slot, w in group])
                for _, w in group:  # every walker of the exchange has written its hills: now each reads
                    w.finish_chunk()
            else:
                for w in walkers:  # fixed order: reproducible exchange
                    if w.step < target:
                        w.run_chunk()
            done_chunks += 1
            if log is not None:
                t = min(w.step for w in walkers) * settings.timestep_fs / 1000.0
                print(f"walkers: {t:g}/{settings.time_ps:g} ps each, "
                      f"{len(walkers)} walker(s), {time.perf_counter() - t_md:.0f} s", file=log, flush=True)
    md_s = time.perf_counter() - t_md

    result = write_free_energy(out, settings, grid)
    progress = {w.index: w._progress() for w in walkers}
    summary = {**record, "status": "complete" if all(w.step >= target for w in walkers) else "incomplete",
               "progress": progress, "free_energy_files": ["free_energy.csv", "free_energy.json", "free_energy.png"],
               "md_wall_s": md_s, "wall_s": time.perf_counter() - started,
               "platform": {"name": plat.getName(), "properties": properties}}
    return WalkerRun(summary, result[0], result[1], {w.index: w.meta for w in walkers})


def _started(walker: _Walker) -> _Walker:
    walker.start()
    return walker


def _protocol(settings: WalkerSettings, walker_index: int | None) -> str:
    """How this call runs the walkers, in words (for ``walkers.json``)."""
    if walker_index is not None:
        return "separate jobs (walker_index)"
    if settings.exchange == "round_robin":
        return "round-robin in one process"
    where = "one after another" if settings.cpus is None else f"side by side on CPUs {list(settings.cpus)}"
    return f"lockstep in one process, {where}"


def write_free_energy(out: Path, settings: WalkerSettings, grid: list[dict]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Free energy from ``OUT/bias`` into ``free_energy.csv/.json/.png``; returns ``(F kJ/mol, axes)``."""
    f = bias_dir_free_energy(out / "bias", settings.temperature_k, settings.bias_factor)
    f = f - f.min()
    axes = [np.linspace(g["min"], g["max"], g["grid_width"]) for g in grid]  # the table's grid points
    kt = kt_kj_mol(settings.temperature_k)
    if len(grid) == 1:
        write_csv(out / "free_energy.csv", [grid[0]["name"], "f_kj_mol", "f_kt"],
                  np.stack([axes[0], f, f / kt], axis=1))
    else:
        mesh1, mesh0 = np.meshgrid(axes[1], axes[0], indexing="ij")  # f is [cv1, cv0]
        write_csv(out / "free_energy.csv", [grid[0]["name"], grid[1]["name"], "f_kj_mol", "f_kt"],
                  np.stack([mesh0.ravel(), mesh1.ravel(), f.ravel(), f.ravel() / kt], axis=1))
    _atomic_write_json(out / "free_energy.json", {
        "cv": [g["name"] for g in grid], "axes": [a.tolist() for a in axes], "f_kj_mol": f.tolist(),
        "layout": "f_kj_mol[i] for one CV; f_kj_mol[i1][i0] (second CV first) for two, as OpenMM's bias arrays",
        "temperature_k": settings.temperature_k, "bias_factor": settings.bias_factor,
        "estimator": "-gamma/(gamma-1) * sum of every walker's newest bias file (Metadynamics.getFreeEnergy)",
    })
    _atomic_write_bytes(out / "free_energy.png", _plot(f / kt, axes, grid))
    return f, axes


def _plot(f_kt: np.ndarray, axes: list[np.ndarray], grid: list[dict]) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    label = [f"{g['name']} ({g['unit']})" for g in grid]
    if len(grid) == 1:
        ax.plot(axes[0], f_kt)
        ax.set_xlabel(label[0])
        ax.set_ylabel("free energy (kT)")
    else:
        image = ax.contourf(axes[0], axes[1], f_kt, levels=20)
        fig.colorbar(image, ax=ax, label="free energy (kT)")
        ax.set_xlabel(label[0])
        ax.set_ylabel(label[1])
    ax.set_title("multiple-walker well-tempered metadynamics", fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


# --------------------------------------------------------------------------- command line


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``biomd walkers`` arguments."""
    add_input_arguments(p, path_required=True)
    p.add_argument("--cv2", choices=sorted(CV_KINDS), help="a second bias variable (2-D bias)")
    m = p.add_argument_group("walkers")
    m.add_argument("--walkers", type=int, default=4, help="number of walkers (default 4)")
    m.add_argument("--time", default="1ns", help="MD per walker (default 1ns; a larger value extends a run)")
    m.add_argument("--height", type=float, default=1.0, help="initial hill height, kJ/mol (default 1)")
    m.add_argument("--bias-factor", type=float, default=10.0, help="well-tempered bias factor (default 10)")
    m.add_argument("--sigma", type=float, nargs="+", help="hill width per CV (default: 1/20 of the path's range)")
    m.add_argument("--range", type=float, nargs="+", metavar="V",
                   help="bias grid MIN MAX per CV, e.g. 0 1.5 (default: the path's range +-10%%)")
    m.add_argument("--deposit-interval", default="1ps", help="time between hills (default 1ps)")
    m.add_argument("--save-interval", default="10ps", help="time between bias exchanges (default 10ps)")
    m.add_argument("--frame-interval", default="1ps", help="time between CV rows (default 1ps)")
    m.add_argument("--exchange", choices=["lockstep", "round-robin"], default="lockstep",
                   help="lockstep (default): every walker writes its hills before any reads the others'; "
                        "round-robin: one after another, each reading what those before it wrote (what runs "
                        "made before this option did; resume them with it)")
    m.add_argument("--cpus", type=int, nargs="+", metavar="CPU",
                   help="run the walkers side by side (lockstep), walker i on the (i mod n)-th listed CPU core "
                        "(one thread pinned to each core; results do not change)")
    m.add_argument("--walker-index", type=int, help="run only this walker (launch one job per walker)")
    m.add_argument("--max-chunks", type=int, help="stop after this many save intervals per walker (resume later)")
    add_md_arguments(p, equilibration="2ps")


def main(args: argparse.Namespace) -> int:
    """``biomd walkers``: metadynamics walkers seeded along a path, one shared bias directory."""
    if args.max_chunks is not None and args.max_chunks < 1:  # (0 had ended in "holds no bias files yet")
        raise ValueError(f"--max-chunks must be at least 1, got {args.max_chunks}")
    if args.cv2 is not None and args.cv2 == args.cv:
        raise ValueError(f"--cv2 {args.cv2} is --cv again: a 2-D bias needs two different variables (e.g. "
                         "--cv path --cv2 path-z), or leave --cv2 out")
    inputs = resolve_inputs(args)
    cvs = [inputs.build_cv(args.path_nodes)]
    if args.cv2:
        cvs.append(inputs.build_cv(args.path_nodes, kind=args.cv2))
    rng = args.range
    if rng is not None and len(rng) != 2 * len(cvs):
        raise ValueError(f"--range takes MIN MAX per CV ({2 * len(cvs)} numbers), got {len(rng)}")
    settings = WalkerSettings(
        n_walkers=args.walkers, time_ps=parse_time_ps(args.time), height_kj_mol=args.height,
        bias_factor=args.bias_factor, sigma=tuple(args.sigma) if args.sigma else None,
        cv_min=tuple(rng[0::2]) if rng else None, cv_max=tuple(rng[1::2]) if rng else None,
        deposit_interval_ps=parse_time_ps(args.deposit_interval), save_interval_ps=parse_time_ps(args.save_interval),
        frame_interval_ps=parse_time_ps(args.frame_interval), exchange=args.exchange.replace("-", "_"),
        platform=args.platform, threads=args.threads, cpus=tuple(args.cpus) if args.cpus else None,
        **md_kwargs(args),
    )
    run = run_walkers(inputs.loaded, inputs.frames_nm, cvs, settings, args.out, walker_index=args.walker_index,
                      max_chunks=args.max_chunks, log=None if args.quiet else sys.stderr)
    s = run.summary
    print(json.dumps({"out": str(args.out), "status": s["status"], "walkers": len(s["walkers"]),
                      "progress_ps": {str(i): p["time_ps"] for i, p in s["progress"].items()},
                      "free_energy": str(Path(args.out) / "free_energy.csv"), "wall_s": s["wall_s"]}, indent=2))
    return 0
