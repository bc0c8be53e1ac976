"""Replica exchange between umbrella windows (Hamiltonian replica exchange, openmmtools).

Plain umbrella windows each sample their own stretch of the CV; a slow degree
of freedom the CV does not describe (a guest's orientation at the portal of
its host) then keeps whatever its seed frame had, and two seedings of the same
windows can disagree by more than their error bars.  With replica exchange the
windows run side by side and, every ``sample_interval_ps``, configurations are
swapped between windows with the Metropolis criterion (openmmtools'
``ReplicaExchangeSampler``, ``swap-all`` mixing), so a configuration relaxed in
one window can travel to the others.

The windows differ only in the restraint's centre, a global parameter of the
``CustomCVForce`` (:class:`UmbrellaCentreState`), so all of them share one
OpenMM Context for MD and one for energies — one pair per core: with the
settings' ``cpus`` the replicas are propagated, and their energies computed,
side by side on those cores (:class:`_ReplicasSideBySide`; openmmtools alone
goes through them one after another).  Each window is first minimised and
equilibrated from its seed frame exactly as a plain window is (same seeds, side
by side on the same cores); then ``production_ps`` of exchange MD.  Storage: ``OUT/exchange.nc``
(``MultiStateReporter``: the reduced-energy matrix every iteration, full
configurations every ``checkpoint_interval`` iterations); a killed run resumes
from its last checkpoint with the same call.

The CV samples come from the stored energies, not from positions: the reduced
potential of a configuration in window ``l`` is ``u_l = a + β·½k(cv − c_l)²``,
so ``u_l − β·½k·c_l² = a' − βk·cv·c_l`` is linear in the centre ``c_l`` with
slope ``−βk·cv``.  The least-squares slope over all windows gives the CV value
the bias acted on, as OpenMM computed it, for every configuration of every
iteration, whatever the CV.  Each sample belongs to the window its replica was
propagated in during that iteration; ``window_NNN/cv.csv`` holds them, so
:func:`~.umbrella.analyze_umbrella` pools them with MBAR unchanged (each
window's series subsampled by its own statistical inefficiency; with swaps a
series passes from replica to replica, which is what shortens its correlation).

Reproducible: openmmtools draws its swaps from numba's random state (numpy's
global one without numba), so each stretch of iterations runs with those
seeded from the run's seed and the iteration it starts at, and each replica
draws its Langevin noise from a stream of its own, seeded from the run's seed
and the replica's index (:class:`_ReplicaNoise`): the same command gives the
same samples bit for bit, on one core or several.  A resumed run seeds its
replicas' streams from the iteration it resumes at, so it does not replay the
noise of the first part; and it goes on from the coordinates openmmtools' storage
keeps, in single precision.  A resumed run is therefore not bit-identical to an
uninterrupted one after the resume point (it agrees in distribution).
"""

from __future__ import annotations

import contextlib
import functools
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from openmmtools import cache, mcmc, multistate, states

from ..affinity import DedicatedThreads, run_on_cpus
from ..data.md import (
    DamagedRunFileError,
    MDBlewUpError,
    _atomic_write_json,
    damaged_file,
    read_json,
    replica_seed,
    whole_steps,
)
from ..data.tables import write_csv
from .seeding_common import WINDOW_CV_COLUMNS, kt_kj_mol

__all__ = ["UmbrellaCentreState", "cv_from_energies", "run_exchange"]

#: openmmtools' storage of a run (``MultiStateReporter``), in the run directory.
STORAGE_FILE = "exchange.nc"
#: openmmtools' checkpoint file beside it (the storage's stem + ``_checkpoint.nc``); a resume needs both.
CHECKPOINT_FILE = "exchange_checkpoint.nc"
#: The windows' equilibration records; its presence marks the storage as resumable.
RECORDS_FILE = "exchange_windows.json"
#: Iterations between full checkpoints in ``exchange.nc`` (a resume repeats at most this many).
CHECKPOINT_INTERVAL = 10
#: Iterations per progress line (and per update of ``umbrella.json``).
PROGRESS_ITERATIONS = 20


class UmbrellaCentreState(states.GlobalParameterState):
    """openmmtools composable state: the centre of the umbrella restraint (CV units)."""

    umbrella_centre = states.GlobalParameterState.GlobalParameter("umbrella_centre", standard_value=0.0)


#: Offsets of the seeds derived from a run's seed (:func:`~..data.md.replica_seed`): the Langevin integrator
#: (plus the iteration a resumed run starts at) and openmmtools' swap draws (plus each stretch's first iteration).
LANGEVIN_SEED_OFFSET = 1_000_003
SWAP_SEED_OFFSET = 2_000_003


@contextlib.contextmanager
def _seeded_swaps(seed: int):
    """The random states openmmtools draws its swaps from, seeded with ``seed`` inside the block: numba's (its
    compiled swap-all mixing) and numpy's global one (its pure-Python fallback; the caller's numpy state is
    restored after, numba's cannot be read back)."""
    saved = np.random.get_state()
    np.random.seed(seed % 2**32)
    _numba_seed()(seed % 2**32)
    try:
        yield
    finally:
        np.random.set_state(saved)


@functools.cache
def _numba_seed():
    """A compiled ``np.random.seed``: inside numba-compiled code ``np.random`` is numba's own generator."""
    from numba import njit

    @njit
    def seed(value):
        np.random.seed(value)

    return seed


class _SeededLangevinMove(mcmc.LangevinDynamicsMove):
    """openmmtools' Langevin move with the integrator seeded (openmmtools leaves OpenMM's random seed).

    Runs stored by earlier versions (until 2026-12-06) name this move in ``exchange.nc``; it is kept so that they
    load and resume.
    New runs use openmmtools' own move: :class:`_ReplicaNoise` gives each replica its stream of noise.
    """

    def __init__(self, *args: Any, random_seed: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.random_seed = int(random_seed)

    def _get_integrator(self, thermodynamic_state: Any) -> Any:
        integrator = super()._get_integrator(thermodynamic_state)
        integrator.setRandomNumberSeed(self.random_seed)
        return integrator

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "random_seed": self.random_seed}

    def __setstate__(self, serialization: dict) -> None:
        super().__setstate__(serialization)
        self.random_seed = int(serialization["random_seed"])


class _ReplicaNoise:
    """Every replica's own stream of Langevin noise, whichever core's Context propagates it.

    An OpenMM checkpoint holds the integrator's random-number state.  A replica's stream is kept as the
    checkpoint of the Context it was last propagated in and loaded into the Context that propagates it next
    (whose positions, velocities and parameters are then set again from the replica's state), so a replica's
    noise depends on the run's seed and its own history only, not on which core, or after which other
    replica, it runs.  Its first stream is that of a fresh Context whose integrator is seeded
    ``seed + replica``.  (A checkpoint holds the replica's coordinates too: ``[N, 3]`` positions and velocities
    per replica in memory, where per-replica Contexts would each hold a platform's whole state.)
    """

    def __init__(self, seed: int, properties: dict) -> None:
        self.seed = int(seed)
        self._properties = dict(properties or {})
        self._checkpoints: dict[int, bytes] = {}

    def load(self, replica: int, context: Any) -> None:
        """Give ``context``'s integrator ``replica``'s stream (``context``'s state is overwritten)."""
        checkpoint = self._checkpoints.get(replica)
        context.loadCheckpoint(self._first(replica, context) if checkpoint is None else checkpoint)

    def keep(self, replica: int, context: Any) -> None:
        """``context`` has just propagated ``replica``: its stream goes on from here next time."""
        self._checkpoints[replica] = context.createCheckpoint()

    def _first(self, replica: int, context: Any) -> bytes:
        import openmm

        integrator = openmm.XmlSerializer.clone(context.getIntegrator())
        integrator.setRandomNumberSeed(_nth_seed(self.seed, replica))
        fresh = openmm.Context(context.getSystem(), integrator, context.getPlatform(), self._properties)
        return fresh.createCheckpoint()


class _ReplicaNoiseCache(cache.ContextCache):
    """One slot's Context cache for MD whose Context propagates each replica with the replica's own noise.

    Inside :meth:`propagating` the Context handed out carries that replica's stream (:class:`_ReplicaNoise`)
    with the thermodynamic state applied again (a checkpoint brings its own parameters); openmmtools' move
    then sets the replica's positions and velocities and integrates.
    """

    def __init__(self, noise: _ReplicaNoise, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.noise = noise
        self._replica: int | None = None
        self._context = None

    @contextlib.contextmanager
    def propagating(self, replica: int) -> Iterator[None]:
        """The block propagates ``replica`` (one move); its stream is kept when the block ends normally."""
        self._replica = replica
        try:
            yield
            self.noise.keep(replica, self._context)
        finally:
            self._replica, self._context = None, None

    def get_context(self, thermodynamic_state: Any, integrator: Any = None) -> tuple[Any, Any]:
        context, integrator = super().get_context(thermodynamic_state, integrator)
        if self._replica is not None:
            self.noise.load(self._replica, context)
            thermodynamic_state.apply_to_context(context)
            self._context = context
        return context, integrator


def _nth_seed(seed: int, n: int) -> int:
    """``seed + n`` kept among OpenMM's seeds, 1 … 2**31 − 1 (0 would mean "pick one at random")."""
    return (int(seed) + n - 1) % (2**31 - 1) + 1


class _ReplicasSideBySide(multistate.ReplicaExchangeSampler):
    """openmmtools' replica exchange with the replicas' MD and energies computed on several cores at once.

    openmmtools goes through the replicas one after another (or over MPI ranks).  Here replica ``r``
    belongs to slot ``r % n`` of :class:`~openmm_biomd.affinity.DedicatedThreads` (``n`` slots, one per
    core), and each slot has Contexts of its own (a Context cache for MD and one for energies), made and
    driven from its core.  Each iteration the per-replica work (openmmtools' ``_propagate_replica`` and
    ``_compute_replica_energies``) runs side by side first; openmmtools' own bookkeeping then takes the
    results replica by replica, as if it had computed them itself.  The swaps, storage and
    checkpoints are openmmtools' unchanged.

    Replica ``r`` draws its Langevin noise from a stream of its own, seeded ``langevin_seed + r``
    (:class:`_ReplicaNoise`), so the samples do not depend on the number of cores: one, two or more give the
    same run bit for bit (on the CPU platform, whose energies and forces do not depend on the Context either).
    """

    _threads: DedicatedThreads | None = None

    def run_on(self, threads: DedicatedThreads, langevin_seed: int, platform: Any, properties: dict) -> None:
        """Run every later iteration's per-replica work on ``threads`` (one slot per core)."""
        options = dict(platform=platform, platform_properties=properties or None)
        self._threads = threads
        self._slot = threading.local()  # .index: the slot the calling thread works for (None: none)
        noise = _ReplicaNoise(langevin_seed, properties)
        self._slot_caches = {
            "sampler": [_ReplicaNoiseCache(noise, **options) for _ in range(threads.n_slots)],
            "energy": [cache.ContextCache(**options) for _ in range(threads.n_slots)],
        }

    # openmmtools reads its two caches from these attributes inside the per-replica work: each slot its own.
    sampler_context_cache = property(lambda self: self._cache_for("sampler"),
                                     lambda self, value: self._assign_cache("sampler", value))
    energy_context_cache = property(lambda self: self._cache_for("energy"),
                                    lambda self, value: self._assign_cache("energy", value))

    def _assign_cache(self, role: str, value: Any) -> None:
        self.__dict__.setdefault("_assigned_caches", {})[role] = value

    def _cache_for(self, role: str) -> Any:
        """The calling slot's cache for ``role``; outside the per-replica work the one assigned."""
        slot = getattr(self.__dict__.get("_slot"), "index", None)
        return self.__dict__["_assigned_caches"][role] if slot is None else self._slot_caches[role][slot]

    def _side_by_side(self, per_replica: Callable[[int], Any]) -> dict[int, Any]:
        """``per_replica(r)`` for every replica, replica ``r`` in slot ``r % n``; results by replica."""
        n = self._threads.n_slots

        def in_slot(replica: int) -> Any:
            self._slot.index = replica % n
            try:
                return per_replica(replica)
            finally:
                self._slot.index = None

        calls = [(r % n, functools.partial(in_slot, r)) for r in range(self.n_replicas)]
        return dict(enumerate(self._threads.run(calls)))

    def _ahead(self, store: str, per_replica: Callable[[int], Any], bookkeeping: Callable[[], None]) -> None:
        """``per_replica`` for every replica side by side, kept in ``store``; then openmmtools' ``bookkeeping``,
        whose per-replica calls take those results (:meth:`_taken`)."""
        if self._threads is None:
            return bookkeeping()
        self.__dict__[store] = self._side_by_side(per_replica)
        try:
            bookkeeping()
        finally:
            self.__dict__[store] = {}

    def _taken(self, store: str, replica_id: int, per_replica: Callable[[int], Any]) -> Any:
        done = self.__dict__.get(store, {})
        return done.pop(replica_id) if replica_id in done else per_replica(replica_id)

    def _propagate_replicas(self) -> None:
        self._ahead("_propagated", self._propagate_with_own_noise, super()._propagate_replicas)

    def _propagate_with_own_noise(self, replica_id: int) -> Any:
        """openmmtools' propagation of one replica in the calling slot, with the replica's own noise."""
        with self.sampler_context_cache.propagating(replica_id):
            return super()._propagate_replica(replica_id)

    def _propagate_replica(self, replica_id: int) -> Any:
        return self._taken("_propagated", replica_id, super()._propagate_replica)

    def _compute_energies(self) -> None:
        self._ahead("_computed", super()._compute_replica_energies, super()._compute_energies)

    def _compute_replica_energies(self, replica_id: int) -> Any:
        return self._taken("_computed", replica_id, super()._compute_replica_energies)


def cv_from_energies(reduced: np.ndarray, centres: np.ndarray, force_constant: float, temperature_k: float) -> np.ndarray:
    """The CV of each configuration from its reduced energies in every window.

    Parameters
    ----------
    reduced : ``[..., K]`` reduced potentials of configurations in the K windows (kT)
    centres : ``[K]`` window centres (CV units; at least two distinct)
    force_constant : k, kJ/mol per CV unit²
    temperature_k : temperature of the reduced potentials, K

    Returns
    -------
    np.ndarray
        ``[...]`` CV values: the least-squares slope of ``u_l − β·½k·c_l²``
        against ``c_l`` is ``−βk·cv``.
    """
    beta = 1.0 / kt_kj_mol(temperature_k)
    c = np.asarray(centres, dtype=np.float64)
    y = np.asarray(reduced, dtype=np.float64) - 0.5 * beta * force_constant * c**2  # [..., K]
    dc = c - c.mean()
    slope = (y - y.mean(axis=-1, keepdims=True)) @ dc / np.dot(dc, dc)
    return -slope / (beta * force_constant)


def run_exchange(
    windows: list[dict],
    equilibrate_window: Any,
    system: Any,
    settings: Any,
    out: Path,
    platform: Any,
    properties: dict,
    *,
    progress: Any = None,
    log: Any = None,
) -> list[dict]:
    """Run (or resume) replica exchange between ``windows``; write every window's ``cv.csv`` and ``result.json``.

    Parameters
    ----------
    windows : the plan (``index``, ``centre``, ``start_frame``, ... per window)
    equilibrate_window : ``plan -> (positions [N, 3] nm, velocities [N, 3] nm/ps, box or None, record)``,
        the plain windows' minimisation and equilibration from the seed frame (``record``:
        ``seed``, ``start_cv_openmm``, ``approach_ps``, ``equilibrated_cv``); called side by side
        on the cores of ``settings.cpus``
    system : the System with the umbrella restraint (``umbrella_centre`` a global parameter)
    settings : :class:`~.umbrella.UmbrellaSettings` (swaps every ``sample_interval_ps``; the replicas run
        side by side on the cores of ``cpus``, :class:`_ReplicasSideBySide`)
    out : run directory
    platform, properties : OpenMM platform for every Context
    progress : ``(iteration, n_iterations, exchange record) -> None``, called every few iterations
    log : file-like for progress lines

    Returns
    -------
    list[dict]
        Per window (plan order) the result also written to ``window_NNN/result.json``.
    """
    n_iterations = settings.n_samples
    started = time.perf_counter()
    cpus = list(settings.cpus) if settings.cpus else None
    with DedicatedThreads(len(cpus) if cpus else 1, cpus) as threads:
        if (out / STORAGE_FILE).exists() and (out / RECORDS_FILE).exists():
            sampler, reporter, records = _resumed_sampler(out)
            if log is not None:
                print(f"replica exchange: resuming at iteration {sampler.iteration} of {n_iterations}", file=log,
                      flush=True)
        else:
            _refuse_a_lost_storage(out, log)
            sampler, reporter, records = _new_sampler(windows, equilibrate_window, system, settings, cpus, out)
        first = sampler.iteration
        # A resumed run has new Contexts and integrators: fresh noise, not a replay of the stream it started with.
        sampler.run_on(threads, replica_seed(settings.seed, LANGEVIN_SEED_OFFSET + first), platform, properties)
        md_started = time.perf_counter()
        # openmmtools prints its citations on stdout: to stderr with them, away from a command's JSON output.
        # The storage is closed whatever happens, so that a rerun can resume from it.
        stats = None  # the statistics of the last progress step (a run resumed at its end has none yet)
        with contextlib.redirect_stdout(sys.stderr), contextlib.closing(reporter):
            while sampler.iteration < n_iterations:
                with (_seeded_swaps(replica_seed(settings.seed, SWAP_SEED_OFFSET + sampler.iteration)),
                      _explained_exchange_blow_up(sampler, out)):
                    sampler.run(n_iterations=min(PROGRESS_ITERATIONS, n_iterations - sampler.iteration))
                stats = exchange_statistics(reporter, windows)
                if log is not None:
                    print(f"replica exchange: iteration {sampler.iteration}/{n_iterations}, neighbour swap acceptance "
                          f"{stats['lowest_neighbour_acceptance']:.2f} lowest / "
                          f"{stats['mean_neighbour_acceptance']:.2f} mean", file=log, flush=True)
                if progress is not None:
                    progress(sampler.iteration, n_iterations, stats)
            md_s = time.perf_counter() - md_started
            results = _window_results(reporter, windows, records, settings, out)
            if stats is None:
                stats = exchange_statistics(reporter, windows)
    ran_ps = (n_iterations - first) * settings.sample_interval_ps * len(windows)
    stats["ns_per_day_all_windows"] = ran_ps / 1000.0 / md_s * 86400.0 if md_s > 0 and ran_ps else None
    stats["cpus"] = cpus
    stats["wall_s"] = time.perf_counter() - started
    if progress is not None:
        progress(n_iterations, n_iterations, stats)
    return results


def _refuse_a_lost_storage(out: Path, log: Any) -> None:
    """Before a new exchange overwrites ``out``'s files: refuse when the windows' records are gone beside a storage
    holding iterations, or only ``exchange.nc`` is gone (its checkpoint file is still there, so it was lost, not
    cleared for a fresh start); say so when both are gone beside the records (the fresh start the damaged-file
    remedy offers)."""
    if not (out / RECORDS_FILE).exists():
        # a storage without the records had died before its first iteration (they are written once it exists),
        # unless the records were deleted: then it holds iterations a new exchange would delete
        stored = _stored_iterations(out / STORAGE_FILE)
        if stored:
            raise DamagedRunFileError(
                f"{out / RECORDS_FILE} is missing, but {out / STORAGE_FILE} holds {stored} iterations of exchange: "
                f"they resume only with the windows' records, and a new exchange would delete them. Restore "
                f"{RECORDS_FILE} from a copy, or delete {STORAGE_FILE} and {CHECKPOINT_FILE} to run the exchange "
                "again from the start")
        return
    if (out / CHECKPOINT_FILE).exists():
        raise DamagedRunFileError(
            f"{out / STORAGE_FILE} is missing, but its checkpoint {out / CHECKPOINT_FILE} is there: the exchange "
            f"resumes only from both, and a new one would delete it. Restore {STORAGE_FILE} from a copy, or delete "
            f"{CHECKPOINT_FILE} too to run the exchange again from the start (its windows are equilibrated again).")
    if log is not None:
        print(f"replica exchange: {STORAGE_FILE} and {CHECKPOINT_FILE} are gone from {out}: the exchange runs again "
              "from the start, its windows equilibrated again", file=log, flush=True)


def _stored_iterations(storage: Path) -> int:
    """The iterations openmmtools' storage file holds (0: none, no file, or one too damaged to say)."""
    if not storage.exists():
        return 0
    try:
        with contextlib.redirect_stdout(sys.stderr):  # (openmmtools' greetings, away from a command's JSON output)
            reporter = multistate.MultiStateReporter(str(storage), open_mode="r")
            try:
                return int(reporter.read_last_iteration())
            finally:
                reporter.close()
    except Exception:  # (netCDF4/HDF5 on a file cut short: nothing it holds can be resumed anyway)
        return 0


def _resumed_sampler(out: Path) -> tuple[_ReplicasSideBySide, Any, dict[int, dict]]:
    """The sampler, its reporter and the windows' records of a run stored in ``out``."""
    records = {int(k): v for k, v in read_json(out / RECORDS_FILE).items()}
    reporter = multistate.MultiStateReporter(str(out / STORAGE_FILE), checkpoint_interval=CHECKPOINT_INTERVAL)
    try:
        sampler = _ReplicasSideBySide.from_storage(reporter)
    except (OSError, RuntimeError, KeyError, IndexError, ValueError) as e:  # netCDF4/HDF5 on a file cut short
        reporter.close()
        # the file that failed is named (a damaged or missing checkpoint had been reported as exchange.nc's damage)
        if not (out / CHECKPOINT_FILE).exists():
            failed, why = out / CHECKPOINT_FILE, f"it is missing, and {STORAGE_FILE} cannot resume without it"
        else:
            failed = out / (CHECKPOINT_FILE if CHECKPOINT_FILE in str(e) else STORAGE_FILE)
            why = f"openmmtools cannot resume from it ({type(e).__name__}: {e})"
        raise damaged_file(failed, why, f"Restore {STORAGE_FILE} and {CHECKPOINT_FILE} from a copy, or delete both "
                           "to run the exchange again from the start (its windows are equilibrated again), or use a "
                           "new output directory.") from e
    return sampler, reporter, records


def _new_sampler(windows: list[dict], equilibrate_window: Any, system: Any, settings: Any, cpus: list[int] | None,
                 out: Path) -> tuple[_ReplicasSideBySide, Any, dict[int, dict]]:
    """Equilibrate the windows (side by side on ``cpus``: the next window on the first core free, as their
    lengths differ with their approaches), then a new sampler storing to ``out/exchange.nc``."""
    from openmm import unit

    storage = out / STORAGE_FILE
    # the records first: old ones beside a storage being created would be taken for a resumable run
    (out / RECORDS_FILE).unlink(missing_ok=True)
    storage.unlink(missing_ok=True)  # a file without its window records died before its first iteration
    (out / CHECKPOINT_FILE).unlink(missing_ok=True)
    by_index = dict(run_on_cpus(equilibrate_window, windows, cpus))
    equilibrated = [by_index[i] for i in range(len(windows))]
    records, thermodynamic_states, sampler_states = {}, [], []
    base = states.ThermodynamicState(system, settings.temperature_k * unit.kelvin)
    for plan, (positions, velocities, box, record) in zip(windows, equilibrated):
        records[plan["index"]] = record
        centre = UmbrellaCentreState(umbrella_centre=plan["centre"])
        thermodynamic_states.append(states.CompoundThermodynamicState(base, composable_states=[centre]))
        sampler_states.append(states.SamplerState(positions * unit.nanometer,
                                                  velocities * unit.nanometer / unit.picosecond, box_vectors=box))
    # (each replica's integrator noise: _ReplicaNoise)
    move = mcmc.LangevinDynamicsMove(timestep=settings.timestep_fs * unit.femtosecond,
                                     collision_rate=settings.friction_per_ps / unit.picosecond,
                                     n_steps=whole_steps(settings.sample_interval_ps, settings.timestep_fs,
                                                         "sample interval"),
                                     reassign_velocities=False)
    sampler = _ReplicasSideBySide(mcmc_moves=move, number_of_iterations=settings.n_samples,
                                  replica_mixing_scheme="swap-all", online_analysis_interval=None)
    reporter = multistate.MultiStateReporter(str(storage), checkpoint_interval=CHECKPOINT_INTERVAL)
    with contextlib.redirect_stdout(sys.stderr):
        sampler.create(thermodynamic_states, sampler_states, reporter)
    _atomic_write_json(out / RECORDS_FILE, {str(k): v for k, v in records.items()})  # marks the file resumable
    return sampler, reporter, records


@contextlib.contextmanager
def _explained_exchange_blow_up(sampler: Any, out: Path) -> Iterator[None]:
    """openmmtools' NaN failure of a replica as an :class:`~..data.md.MDBlewUpError` that says what to do."""
    from openmmtools.multistate.utils import SimulationNaNError

    try:
        yield
    except SimulationNaNError as e:
        raise MDBlewUpError(
            f"replica exchange blew up after iteration {sampler.iteration} ({str(e).splitlines()[0]}). "
            f"{out / STORAGE_FILE} keeps every iteration up to its last checkpoint (every {CHECKPOINT_INTERVAL} "
            "iterations; openmmtools saved the failing state under nan-error-logs/). Rerunning the same command "
            "resumes there with fresh noise, but MD that blew up once mostly does again: start a new output "
            "directory with a smaller --timestep or a gentler --force-constant, or check the seed path."
        ) from e


def _window_results(reporter: Any, windows: list[dict], records: dict[int, dict], settings: Any,
                    out: Path) -> list[dict]:
    """CV series per window from the stored energies; ``cv.csv`` and ``result.json`` for each."""
    energies = reporter.read_energies()[0][1:]  # [T, R, K]; iteration 0 is the start, before any MD
    replica_states = reporter.read_replica_thermodynamic_states()[1:]  # [T, R]: window of each replica
    centres = np.array([w["centre"] for w in windows])
    cv = cv_from_energies(energies, centres, settings.force_constant, settings.temperature_k)  # [T, R]
    n_iterations = len(cv)
    times = (np.arange(n_iterations) + 1) * settings.sample_interval_ps
    # The sample of window k at iteration t: the replica that was in window k then.
    replica_of = np.argsort(replica_states, axis=1)  # [T, K]
    per_window = np.take_along_axis(cv, replica_of, axis=1)  # [T, K]
    results = []
    for k, plan in enumerate(windows):
        samples = per_window[:, k]
        wdir = out / f"window_{plan['index']:03d}"
        wdir.mkdir(parents=True, exist_ok=True)
        write_csv(wdir / "cv.csv", WINDOW_CV_COLUMNS, np.stack([times, samples], axis=1))
        result = {
            **plan,
            **records[plan["index"]],
            "force_constant": settings.force_constant,
            "replica_exchange": True,
            "n_samples": int(n_iterations),
            "mean_cv": float(samples.mean()),
            "std_cv": float(samples.std()),
            "min_cv": float(samples.min()),
            "max_cv": float(samples.max()),
        }
        _atomic_write_json(wdir / "result.json", result)
        results.append(result)
    return results


def exchange_statistics(reporter: Any, windows: list[dict]) -> dict:
    """Swap acceptance between windows neighbouring in CV and how far the replicas travelled.

    Returns
    -------
    dict
        ``neighbour_acceptance`` (per pair of neighbouring centres), its ``mean_`` and
        ``lowest_``; ``iterations``; ``windows_visited`` per replica (started in plan order)
        and ``round_trips`` (lowest-centre window to the highest and back, over all replicas).
    """
    accepted, proposed = reporter.read_mixing_statistics()
    accepted = np.atleast_3d(accepted).sum(axis=0)  # [K, K]
    proposed = np.atleast_3d(proposed).sum(axis=0)
    centres = np.array([w["centre"] for w in windows])
    order = np.argsort(centres)
    pairs = []
    for a, b in zip(order[:-1], order[1:]):
        n = proposed[a, b] + proposed[b, a]
        pairs.append({"centres": [float(centres[a]), float(centres[b])],
                      "acceptance": float((accepted[a, b] + accepted[b, a]) / n) if n else None})
    rates = [p["acceptance"] for p in pairs if p["acceptance"] is not None]
    replica_states = np.asarray(reporter.read_replica_thermodynamic_states())  # [T + 1, R]
    return {
        "iterations": int(len(replica_states) - 1),
        "neighbour_acceptance": pairs,
        "mean_neighbour_acceptance": float(np.mean(rates)) if rates else 0.0,
        "lowest_neighbour_acceptance": float(np.min(rates)) if rates else 0.0,
        "windows_visited": [int(len(np.unique(replica_states[:, r]))) for r in range(replica_states.shape[1])],
        "round_trips": _round_trips(replica_states, int(order[0]), int(order[-1])),
    }


def _round_trips(replica_states: np.ndarray, lowest: int, highest: int) -> int:
    """Completed lowest → highest → lowest journeys through the windows, over all replicas (``[T, R]`` states)."""
    trips = 0
    for series in replica_states.T:
        target, reached = lowest, 0
        for state in series:
            if state == target:
                reached += 1
                target = highest if target == lowest else lowest
        trips += max(reached - 1, 0) // 2  # the first arrival at the lowest window is where a trip starts
    return trips
