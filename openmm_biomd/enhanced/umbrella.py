"""Umbrella sampling seeded from a path, and its pymbar free-energy profile.

:func:`seed_umbrella_windows` places harmonic windows along a CV — the
ligand–pocket centroid distance or the path progress ``s`` (see
:mod:`.seeding_common`) — and starts each window from the path frame at which
the path first arrives at the window's centre (``seed_frames="first_arrival"``,
:func:`.seeding_common.first_arrival_frames`: across a gap in the path, the
frame before the jump, pulled forward by the restraint) or, on request, the
frame whose CV is nearest the centre.  The path may be a generated one (``biomd
unbind``) or a steered-MD one (:func:`.steered.steered_path`); comparing the
two profiles is the point of the exercise, so both go through exactly the same
code.  Each window: a copy of the System plus
``CustomCVForce("0.5*umbrella_k*(cv-umbrella_centre)^2")`` (the CV force inside),
minimisation with the restraint centred on the seed frame's CV, the
approach (the centre moved to the window's at ``approach_per_ps``, as in a
steered pull, when the seed frame sits off-centre),
``equilibration_ps`` of MD, then ``production_ps`` recording the CV every
``sample_interval_ps`` from the restraint's own ``getCollectiveVariableValues``
(the value the bias acted on, not a re-computation).

:func:`analyze_umbrella` pools the windows with MBAR (``pymbar.FES``): the
reduced bias of every sample in every window, ``u_kn = β·½k(x_n − c_k)²``, the
unbiased state ``u_n = 0``; each window's series is first subsampled to
uncorrelated samples with ``pymbar.timeseries`` (statistical inefficiency).
For a distance CV the profile also gets the volume (Jacobian) term
``+2·kT·ln r`` — ``p(r)`` of two free particles grows as ``r²``, so without it
an unbound plateau slopes down; with it, the profile is the potential of mean
force whose plateau is flat.  The profile is zeroed at its lowest bin (the bound
minimum) and its uncertainties are MBAR's analytical ones relative to that bin
(or bootstrap).  :func:`binding_free_energy` turns it into one number: the
free-energy density of the unbound plateau minus that of the bound-minimum bin,
with MBAR's uncertainty (both regions are states of
``MBAR.compute_perturbed_free_energies``, so their correlation is accounted for).

Layout of ``OUT``::

    OUT/umbrella.json             settings, CV, provenance, windows (centre, seed frame), results
    OUT/topology.pdb
    OUT/path_nodes_path_s.npy     path-CV nodes (path CV only), [M, N, 3] nm
    OUT/window_000/cv.csv         time_ps, cv  (production samples)
    OUT/window_000/result.json    written last: a window with it is finished and skipped on rerun
    OUT/fes.json, fes.csv, fes.png

Resuming is per window: rerunning the same call keeps finished windows and
reruns the window in flight from its seed frame (windows are short compared
with a campaign; a finished window is never touched again).

With ``replica_exchange`` the windows run side by side and swap configurations
(:mod:`.umbrella_exchange`; storage ``OUT/exchange.nc``, resumed from its last
checkpoint; with ``cpus`` the replicas' MD is spread over those cores); they write
the same ``window_NNN`` files, so the analysis is the same.

:func:`refine_umbrella_windows` closes sampling gaps: where two windows
neighbouring in CV overlap too little for MBAR (``neighbour_overlap`` below
``min_overlap``), it adds a window midway, seeded like the others, and repeats
for a few rounds.  Added windows come after the existing ones (same directory,
new indices), so finished windows are kept and a refined run resumes like any
other.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from biomd_core.config import require_at_least
from biomd_core.io.json_values import json_safe
from biomd_core.io.output_folder import (
    check_output_folder,
    claim_output_folder,
    json_with_keys,
    refuse_results_without_record,
)

from ..affinity import distinct_cpus, pinned_to_cpu, run_on_cpus
from ..data.md import (
    RunMismatchError,
    _atomic_write_bytes,
    _atomic_write_json,
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
from ..data.systems import as_loaded_system
from ..data.tables import read_csv, write_csv
from .seeding_common import (
    WINDOW_CV_COLUMNS,
    CVSpec,
    add_input_arguments,
    add_md_arguments,
    check_frames,
    check_resumable,
    cv_record_with_kind,
    first_arrival_frames,
    kt_kj_mol,
    md_kwargs,
    nearest_frames,
    resolve_inputs,
    run_record,
    write_common_files,
)

__all__ = [
    "UmbrellaSettings",
    "add_arguments",
    "analyze_umbrella",
    "binding_free_energy",
    "main",
    "profile_difference",
    "read_windows",
    "refine_umbrella_windows",
    "seed_umbrella_windows",
]

FORMAT = "biomd-umbrella"
#: the files umbrella sampling writes into its folder (claimed with biomd_core.io.output_folder)
UMBRELLA_OUTPUTS = ("umbrella.json", "topology.pdb", "path_nodes_*.npy", "window_[0-9][0-9][0-9]", "exchange*.nc",
                    "refinement.json", "fes.json", "fes.csv", "fes.png")

#: Settings that do not change the data (left out of resume checks).
_NON_DATA = ("platform", "threads", "cpus")
#: Settings that place the windows: a resume may change them when it only adds windows after the existing ones.
_PLACEMENT = ("n_windows", "centres", "cv_min", "cv_max")
#: MBAR overlap of neighbouring windows below which the profile between them is unreliable
#: (Klimovich, Shirts & Mobley, JCAMD 29, 397, 2015).
MIN_OVERLAP = 0.03
#: Below this MBAR overlap two neighbouring windows share no samples at all (fewer than one in a thousand of
#: one window's is attributed to the other): no binding free energy is given across them.
JOINED_OVERLAP = 1e-3
#: What a run recorded before these settings existed did: seeded from the nearest frame, no approach.
SETTINGS_BEFORE_THEY_EXISTED = {"seed_frames": "nearest", "approach_per_ps": None}
#: A window whose approach to its centre would take longer than this many times its production (and than
#: MAX_APPROACH_FLOOR_PS) is refused: the path jumps across that part of the CV.
MAX_APPROACH_PER_PRODUCTION = 10.0
MAX_APPROACH_FLOOR_PS = 50.0
#: Integrator steps between moves of the restraint centre while a window approaches its centre.
APPROACH_UPDATE_STEPS = 10
#: How a window's seed frame is chosen (``UmbrellaSettings.seed_frames``): path CV values ``[T]`` and
#: centres ``[W]`` -> frame indices ``[W]``.
SEED_FRAME_RULES = {"first_arrival": first_arrival_frames, "nearest": nearest_frames}


@dataclass(frozen=True)
class UmbrellaSettings:
    """Umbrella windows (saved in ``umbrella.json``).

    Attributes
    ----------
    n_windows : windows evenly spaced over ``[cv_min, cv_max]`` (ignored when ``centres`` is given)
    centres : explicit window centres, CV units
    cv_min, cv_max : range of the even spacing; None = the path's CV range
    force_constant : k, kJ/mol per CV unit² (kJ/mol/nm² for the distance;
        for the dimensionless path ``s`` typically 10³–10⁴)
    equilibration_ps : restrained MD after minimisation (and the approach), not recorded, ps
    approach_per_ps : speed at which a window's restraint centre moves from its seed frame's CV to
        the window's centre before equilibration, CV units per ps (the steered pull's 0.012 nm/ps by
        default): a seed frame away from its centre (across a gap in the path) is pulled there as a
        steered pull would pull it, not yanked by a spring stretched ``|offset|`` at once (with
        k = 5000 kJ/mol/nm² and 0.15 nm, 56 kJ/mol; BENCHMARKS.md, host–guest umbrella). None: the
        restraint sits at the centre from the start
    production_ps : recorded MD per window, ps
    sample_interval_ps : time between CV samples, ps (a whole number of steps)
    temperature_k, timestep_fs, friction_per_ps : Langevin integrator
    seed : master seed (window ``i`` uses ``replica_seed(seed, i)``)
    seed_frames : which path frame starts a window: ``"first_arrival"`` (default) the frame at which
        the path first arrives at the centre coming from its start — across a gap, the frame before the
        jump (:func:`~.seeding_common.first_arrival_frames`, why: BENCHMARKS.md, host–guest umbrella);
        ``"nearest"`` the frame whose CV is nearest the centre, whichever side of a gap
    max_start_offset : largest allowed |CV(seed frame) − centre|, CV units (also
        how far outside the path's CV range a centre may lie); None = no limit on
        the former, 5 % of the path's CV range for the latter
    replica_exchange : run the windows side by side with Hamiltonian replica exchange
        (:mod:`.umbrella_exchange`), swaps attempted every ``sample_interval_ps`` (then
        0.5–1 ps is typical); needs at least two windows
    platform, threads : OpenMM platform and CPU threads (do not change the data)
    cpus : CPU cores to run windows on side by side, one window per core at a time, each window's
        Context made and driven from its core with one thread unless ``threads`` says otherwise
        (:func:`~openmm_biomd.affinity.run_pinned`; for small systems on the CPU platform several times
        the windows' throughput of one multi-threaded Context, see BENCHMARKS.md). Does not change the
        data, with replica exchange neither: its replicas then run side by side too (replica ``r`` on core
        ``r % len(cpus)``), each drawing its own noise, so any number of cores gives the same samples bit for bit
    """

    n_windows: int | None = 10
    centres: tuple[float, ...] | None = None
    cv_min: float | None = None
    cv_max: float | None = None
    force_constant: float = 1000.0
    equilibration_ps: float = 10.0
    approach_per_ps: float | None = 0.012
    production_ps: float = 100.0
    sample_interval_ps: float = 0.1
    temperature_k: float = 300.0
    timestep_fs: float = 2.0
    friction_per_ps: float = 1.0
    seed: int = 0
    seed_frames: str = "first_arrival"
    max_start_offset: float | None = None
    replica_exchange: bool = False
    platform: str | None = None
    threads: int | None = None
    cpus: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "cpus", distinct_cpus(self.cpus))
        require_positive(self, ("force_constant", "production_ps", "sample_interval_ps", "temperature_k",
                                "timestep_fs", "friction_per_ps"))
        require_at_least([("seed", self.seed, 0)])
        if self.equilibration_ps < 0:
            raise ValueError("equilibration_ps must not be negative")
        whole_steps(self.sample_interval_ps, self.timestep_fs, "sample interval")
        whole_steps(self.equilibration_ps, self.timestep_fs, "equilibration time")
        n = self.production_ps / self.sample_interval_ps
        if abs(n - round(n)) > 1e-6 * max(1.0, n) or round(n) < 2:
            raise ValueError(f"production time {self.production_ps:g} ps must be at least two whole sample "
                             f"intervals of {self.sample_interval_ps:g} ps")
        if self.centres is not None:
            centres = tuple(float(c) for c in self.centres)
            if len(centres) == 0 or not all(math.isfinite(c) for c in centres):
                raise ValueError("centres must be a non-empty list of finite CV values")
            if len(set(centres)) != len(centres):
                raise ValueError("window centres must be distinct")
            object.__setattr__(self, "centres", centres)
        elif self.n_windows is None or self.n_windows < 1:
            raise ValueError("give n_windows >= 1 or explicit centres")
        if self.cv_min is not None and self.cv_max is not None and not self.cv_min < self.cv_max:
            raise ValueError(f"cv_min ({self.cv_min}) must be below cv_max ({self.cv_max})")
        if self.seed_frames not in SEED_FRAME_RULES:
            raise ValueError(f"seed_frames must be one of {', '.join(SEED_FRAME_RULES)}, not {self.seed_frames!r}")
        if self.approach_per_ps is not None and not self.approach_per_ps > 0:
            raise ValueError("approach_per_ps must be positive (or None: no approach)")
        if self.max_start_offset is not None and not self.max_start_offset > 0:
            raise ValueError("max_start_offset must be positive")
        n_windows = len(self.centres) if self.centres is not None else self.n_windows
        if self.replica_exchange and n_windows < 2:
            raise ValueError("replica exchange needs at least two windows")

    @property
    def steps_per_sample(self) -> int:
        return whole_steps(self.sample_interval_ps, self.timestep_fs, "sample interval")

    @property
    def n_samples(self) -> int:
        return int(round(self.production_ps / self.sample_interval_ps))

    def data_record(self) -> dict:
        """The settings that define the data (JSON; what a resume must match)."""
        record = {k: v for k, v in asdict(self).items() if k not in _NON_DATA}
        record["centres"] = None if self.centres is None else list(self.centres)
        return record

    def window_centres(self, path_values: np.ndarray) -> np.ndarray:
        """Centres ``[W]`` (CV units), from ``centres`` or evenly over the range (default: the path's)."""
        if self.centres is not None:
            return np.asarray(self.centres, dtype=np.float64)
        lo = float(np.min(path_values)) if self.cv_min is None else float(self.cv_min)
        hi = float(np.max(path_values)) if self.cv_max is None else float(self.cv_max)
        if self.n_windows > 1 and not lo < hi:
            raise ValueError(f"the CV range [{lo:g}, {hi:g}] is empty: the path does not move along this CV")
        return np.linspace(lo, hi, self.n_windows) if self.n_windows > 1 else np.array([lo])


# --------------------------------------------------------------------------- windows


def _plan_windows(values: np.ndarray, settings: UmbrellaSettings, unit: str) -> list[dict]:
    """Centre, seed frame and its CV for every window; refuse centres the path does not reach.

    A centre must lie inside the path's CV range (give or take 5 % of it, or
    ``max_start_offset`` when set); with ``max_start_offset`` the seed frame's
    CV must also be that close to the centre (a gap in a generated path).
    """
    centres = settings.window_centres(values)
    frames = SEED_FRAME_RULES[settings.seed_frames](values, centres)
    offsets = np.abs(values[frames] - centres)
    lo, hi = float(values.min()), float(values.max())
    slack = settings.max_start_offset if settings.max_start_offset is not None else 0.05 * (hi - lo)
    for i, c in enumerate(centres):
        if not lo - slack <= c <= hi + slack:
            raise ValueError(
                f"window {i} (centre {c:.4g} {unit}) is outside the path's CV range [{lo:.4g}, {hi:.4g}] {unit} "
                f"(tolerance {slack:.3g}); choose centres inside it, or a path that reaches further"
            )
        approach_ps = offsets[i] / settings.approach_per_ps if settings.approach_per_ps else 0.0
        if approach_ps > max(MAX_APPROACH_PER_PRODUCTION * settings.production_ps, MAX_APPROACH_FLOOR_PS):
            raise ValueError(
                f"window {i} (centre {c:.4g} {unit}) would start from frame {int(frames[i])} at CV "
                f"{values[frames[i]]:.4g} {unit} and approach its centre for {approach_ps:.4g} ps at "
                f"{settings.approach_per_ps:g} {unit}/ps, more than {MAX_APPROACH_PER_PRODUCTION:g}x its "
                f"{settings.production_ps:g} ps of sampling: the path jumps across that part of the CV (a damaged "
                "or blown-up frame?). Give a path that goes through it, centres inside the part it covers "
                "(--range), or a faster --approach"
            )
        if settings.max_start_offset is not None and offsets[i] > settings.max_start_offset:
            raise ValueError(
                f"window {i} (centre {c:.4g} {unit}): its seed frame ({int(frames[i])}, CV "
                f"{values[frames[i]]:.4g}) is {offsets[i]:.3g} {unit} away, more than max_start_offset "
                f"{settings.max_start_offset:.3g}: the path has a gap there"
            )
    return [{"index": i, "centre": float(c), "start_frame": int(f), "start_cv": float(values[f]),
             "start_offset": float(o)} for i, (c, f, o) in enumerate(zip(centres, frames, offsets))]


def seed_umbrella_windows(
    loaded: Any,
    path_frames_nm: np.ndarray,
    cv: CVSpec,
    settings: UmbrellaSettings,
    out_dir: str | os.PathLike,
    *,
    log: Any = None,
) -> dict:
    """Run (or resume) umbrella windows along ``cv``, each started from a path frame (``settings.seed_frames``).

    Parameters
    ----------
    loaded : :class:`~openmm_biomd.data.LoadedSystem` (or a bundled system's name)
    path_frames_nm : ``[T, N, 3]`` nm, the path (generated, or steered MD) in time order
    cv : the CV (:class:`~.seeding_common.DistanceCV`, :class:`~.seeding_common.PathCV1D`, ...)
    settings : :class:`UmbrellaSettings`
    out_dir : run directory (see the module docstring); rerun to resume
    log : file-like for one line per window

    Returns
    -------
    dict
        The summary (as in ``OUT/umbrella.json``): ``windows`` (per window:
        ``centre``, ``start_frame``, ``start_cv``, ``mean_cv``, ``std_cv``,
        ``n_samples``, ``wall_s``, ...), ``status``, provenance.

    Raises
    ------
    ValueError
        Empty path, frames that do not fit the system, or a window centre the
        path does not reach.
    RunMismatchError
        ``out_dir`` holds windows made with other settings, CV, path or system.
    """
    started = time.perf_counter()
    loaded = as_loaded_system(loaded)
    n_atoms = loaded.system.getNumParticles()
    frames = check_frames(path_frames_nm, loaded.system, cvs=cv)
    values = np.asarray(cv.values(frames), dtype=np.float64)  # [T]
    if not np.all(np.isfinite(values)):
        raise ValueError("the CV is not finite on every path frame")
    windows = _plan_windows(values, settings, cv.unit)
    out = Path(out_dir)
    summary = {
        "format": FORMAT,
        "status": "running",
        **run_record(loaded, [cv_record_with_kind(cv)], frames),
        "settings": settings.data_record(),
        "path_cv_range": [float(values.min()), float(values.max())],
        "plan": windows,
        # What a resume must match: centres (9 digits) and seed frames.
        "windows_key": [[w["index"], _centre_key(w["centre"]), w["start_frame"]] for w in windows],
        "windows": [],
        "versions": package_versions(),
    }
    old_path = out / "umbrella.json"
    # another command's folder, or files of the user's, are refused by name (a fes.csv of theirs was replaced)
    earlier = json_with_keys("umbrella.json", "format", "settings")
    check_output_folder(out, "umbrella", UMBRELLA_OUTPUTS, earlier)
    refuse_results_without_record(out, "umbrella.json", ("window_[0-9][0-9][0-9]/result.json", "exchange*.nc"))
    if old_path.exists():
        old = read_json(old_path)
        _check_resumable(old, summary, out)
        if old.get("status") == "complete" and old.get("windows_key") == summary["windows_key"] \
                and len(old.get("windows", [])) == len(windows) \
                and all((out / f"window_{w['index']:03d}" / "result.json").exists() for w in windows):
            # nothing to run: the record stays the one of the run that made it (its wall time had been replaced by
            # this call's, and it was rewritten before the analysis found a damaged window), once every window's
            # files are known to be whole
            read_windows(out)
            return old
        started -= float(old.get("wall_s") or 0.0)  # wall_s counts every session of the run
    first_cpu = settings.cpus[0] if settings.cpus else None
    plat, properties = select_platform(settings.platform, pinned_threads(settings.threads, first_cpu), n_atoms)
    claim_output_folder(out, "umbrella", UMBRELLA_OUTPUTS, earlier)
    write_common_files(out, loaded, [cv])
    summary["platform"] = {"name": plat.getName(), "properties": properties, "cpus": settings.cpus}
    if old_path.exists():  # what the finished windows (and a replica-exchange run) recorded is kept
        old = read_json(old_path)
        summary.update({key: old[key] for key in ("windows", "exchange") if key in old})
    finished: dict[int, dict] = {}  # plain windows already run (read first: a damaged one changes nothing)
    todo = []
    for plan in [] if settings.replica_exchange else windows:
        done = out / f"window_{plan['index']:03d}" / "result.json"
        if done.exists():
            finished[plan["index"]] = _window_result(done.parent, plan)
        else:
            todo.append(plan)
    _atomic_write_json(old_path, summary)  # the plan is on disk before the first window runs

    def report(result: dict) -> None:
        if log is not None:
            print(f"window {result['index']}: centre {result['centre']:.3f}, seed frame {result['start_frame']} "
                  f"(CV {result['start_cv']:.3f}) -> mean {result['mean_cv']:.3f} ± {result['std_cv']:.3f} {cv.unit}",
                  file=log, flush=True)

    def save(**fields: Any) -> None:
        summary.update(fields, wall_s=time.perf_counter() - started)
        _atomic_write_json(old_path, summary)

    if settings.replica_exchange:
        with pinned_to_cpu(first_cpu):
            results = _exchange_windows(loaded, frames, cv, settings, windows, out, plat, properties, save, log)
        for result in results:
            report(result)
    else:
        for result in finished.values():
            report(result)

        def run(plan: dict) -> dict:
            return _run_window(loaded, frames[plan["start_frame"]], cv, settings, plan,
                               out / f"window_{plan['index']:03d}", plat, properties)

        # each window's result is on disk before the summary lists it
        for i, result in run_on_cpus(run, todo, settings.cpus):
            finished[todo[i]["index"]] = result
            report(result)
            save(windows=[finished[p["index"]] for p in windows if p["index"] in finished])
        results = [finished[p["index"]] for p in windows]
    save(windows=results, status="complete")
    return summary


def _centre_key(centre: float) -> str:
    """A window centre as resume checks compare it (9 significant digits: JSON round trips and re-spaced
    ``linspace`` centres compare equal)."""
    return f"{centre:.9g}"


def _check_resumable(old: dict, new: dict, out: Path) -> None:
    """The same windows, or the same windows followed by new ones (a refinement).

    Only the windows define the data, so the settings that place them
    (``_PLACEMENT``) may differ when the windows on disk begin the new plan.  A setting a run on disk
    predates reads as what the package did before it existed (:data:`SETTINGS_BEFORE_THEY_EXISTED`).
    """
    old = {**old, "settings": {**SETTINGS_BEFORE_THEY_EXISTED, **old.get("settings", {})}}
    old_key, new_key = old.get("windows_key", []), new["windows_key"]
    if new_key[: len(old_key)] == old_key:
        placement = {k: new["settings"][k] for k in _PLACEMENT}
        old = {**old, "windows_key": new_key, "settings": {**old.get("settings", {}), **placement}}
    elif old_key[: len(new_key)] == new_key:
        raise RunMismatchError(
            f"{out} holds these {len(new_key)} windows and {len(old_key) - len(new_key)} more added by a refinement: "
            "resume it with the same refinement (refine_umbrella_windows, biomd umbrella --refine) or give all "
            "the centres in its umbrella.json"
        )
    check_resumable(old, new, ("system_sha256", "cv", "path_sha256", "windows_key"), out)


def refine_umbrella_windows(
    loaded: Any,
    path_frames_nm: np.ndarray,
    cv: CVSpec,
    settings: UmbrellaSettings,
    out_dir: str | os.PathLike,
    *,
    min_overlap: float = MIN_OVERLAP,
    max_rounds: int = 2,
    log: Any = None,
    **analysis: Any,
) -> dict:
    """Run (or resume) the windows of ``settings``, then add windows where neighbours overlap too little.

    Each round analyses the finished windows with :func:`analyze_umbrella` and
    puts a new window midway between every pair of windows neighbouring in CV
    whose MBAR overlap is below ``min_overlap``, seeded by ``settings.seed_frames``
    like the others; it stops when no pair is below it or after
    ``max_rounds`` rounds in all.  Each round is recorded in ``OUT/refinement.json``
    before its windows run, so a killed refinement resumes with the same call.
    Arguments as :func:`seed_umbrella_windows`; ``analysis`` goes to
    :func:`analyze_umbrella` (``discard_ps``, ``n_bins``, ...).

    Returns
    -------
    dict
        The run's summary (as :func:`seed_umbrella_windows`) with ``refinement``:
        ``rounds`` (per round the lowest neighbour overlap before it and the
        centres added), ``min_overlap`` after the last round and ``converged``
        (every neighbouring pair at or above ``threshold``).
    """
    if settings.replica_exchange and max_rounds > 0:
        raise ValueError("refinement adds windows to finished ones, and replica-exchange windows run together: "
                         "choose the windows up front (more windows or a lower force constant), without refinement")
    if not 0 < min_overlap < 1:
        raise ValueError(f"min_overlap is an MBAR overlap in (0, 1), not {min_overlap}")
    if max_rounds < 0:
        raise ValueError("max_rounds must not be negative")
    out = Path(out_dir)
    record_path = out / "refinement.json"
    record = {"threshold": min_overlap, "base_centres": None, "rounds": []}
    if record_path.exists():
        record = read_json(record_path)
        if record["threshold"] != min_overlap:
            raise RunMismatchError(f"{out} was refined to an overlap of {record['threshold']}, not {min_overlap}: "
                                   "use the same min_overlap or a new output directory")
        if record["base_centres"] is not None:  # go on from the windows the recorded rounds added
            loaded = as_loaded_system(loaded)
            frames = check_frames(path_frames_nm, loaded.system, cvs=cv)
            requested = settings.window_centres(np.asarray(cv.values(frames), dtype=np.float64))
            if list(map(_centre_key, requested)) != list(map(_centre_key, record["base_centres"])):
                raise RunMismatchError(f"{out} refined other windows (centres {record['base_centres']}) than "
                                       f"these ({requested.tolist()}): use the same windows or a new output directory")
            added = [c for r in record["rounds"] for c in r["added_centres"]]
            settings = replace(settings, centres=tuple(record["base_centres"]) + tuple(added), n_windows=None,
                               cv_min=None, cv_max=None)
    summary = seed_umbrella_windows(loaded, path_frames_nm, cv, settings, out, log=log)
    while True:
        fes = analyze_umbrella(out, write=False, **analysis)
        gaps = [p["centres"] for p in fes["neighbour_overlap"] if p["overlap"] < min_overlap]
        if not gaps or len(record["rounds"]) >= max_rounds:
            break
        added = [0.5 * (a + b) for a, b in gaps]
        centres = [w["centre"] for w in summary["plan"]]
        if record["base_centres"] is None:
            record["base_centres"] = centres
        record["rounds"].append({"min_overlap_before": fes["min_overlap"], "added_centres": added})
        _atomic_write_json(record_path, record)
        if log is not None:
            print(f"refinement {len(record['rounds'])}: {len(added)} window(s) at "
                  f"{', '.join(f'{c:.4g}' for c in added)} {cv.unit} (lowest overlap {fes['min_overlap']:.3f})",
                  file=log, flush=True)
        settings = replace(settings, centres=tuple(centres + added), n_windows=None, cv_min=None, cv_max=None)
        summary = seed_umbrella_windows(loaded, path_frames_nm, cv, settings, out, log=log)
    summary["refinement"] = {**record, "min_overlap": fes["min_overlap"], "converged": not gaps}
    _atomic_write_json(out / "umbrella.json", summary)
    return summary


def _exchange_windows(loaded: Any, frames: np.ndarray, cv: CVSpec, settings: UmbrellaSettings, windows: list[dict],
                      out: Path, platform: Any, properties: dict, save: Any, log: Any) -> list[dict]:
    """The windows side by side with replica exchange (:mod:`.umbrella_exchange`); results as plain windows'."""
    if all((out / f"window_{p['index']:03d}" / "result.json").exists() for p in windows):
        return [_window_result(out / f"window_{p['index']:03d}", p) for p in windows]
    from .umbrella_exchange import run_exchange

    def equilibrate_window(plan: dict) -> tuple:
        from openmm import unit

        kept = ("Nothing of the replica exchange is stored yet: it starts once every window is equilibrated, "
                "and a rerun equilibrates them all again.")
        with explained_blow_up(f"the equilibration of umbrella window {plan['index']} (centre "
                               f"{plan['centre']:.4g})", kept):
            simulation, _, record = _equilibrated_window(loaded, frames[plan["start_frame"]], cv, settings, plan,
                                                         platform, properties)
        state = simulation.context.getState(getPositions=True, getVelocities=True)
        box = state.getPeriodicBoxVectors() if loaded.system.usesPeriodicBoundaryConditions() else None
        positions = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        velocities = state.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond)
        return positions, velocities, box, record

    def progress(iteration: int, n_iterations: int, stats: dict) -> None:
        save(exchange={**stats, "iteration": iteration, "n_iterations": n_iterations})

    system = _umbrella_system(loaded, cv, settings.force_constant, float(windows[0]["centre"]))[0]
    return run_exchange(windows, equilibrate_window, system, settings, out, platform, properties,
                        progress=progress, log=log)


def _umbrella_system(loaded: Any, cv: CVSpec, force_constant: float, centre: float) -> tuple[Any, Any]:
    """A copy of the System with ``CustomCVForce("0.5*umbrella_k*(cv-umbrella_centre)^2")``; (system, restraint)."""
    import openmm

    system = openmm.XmlSerializer.clone(loaded.system)
    restraint = openmm.CustomCVForce("0.5*umbrella_k*(cv-umbrella_centre)^2")
    restraint.addGlobalParameter("umbrella_k", force_constant)
    restraint.addGlobalParameter("umbrella_centre", centre)
    restraint.addCollectiveVariable("cv", cv.force())
    system.addForce(restraint)
    return system, restraint


def _equilibrated_window(loaded: Any, start_nm: np.ndarray, cv: CVSpec, settings: UmbrellaSettings, plan: dict,
                         platform: Any, properties: dict) -> tuple[Any, Any, dict]:
    """A window's Simulation after restrained minimisation, the approach and equilibration from its seed frame.

    With ``settings.approach_per_ps`` the restraint is first centred on the seed frame's CV (minimisation
    and velocities there), then its centre moves to the window's in steps of :data:`APPROACH_UPDATE_STEPS`
    at that speed, then the equilibration runs at the centre.  Returns ``(simulation, restraint force,
    record)``, ``record``: ``seed``, ``start_cv_openmm`` (the CV of the seed frame as OpenMM computes it),
    ``approach_ps`` and ``equilibrated_cv``.
    """
    seed = replica_seed(settings.seed, plan["index"])
    centre = float(plan["centre"])
    system, restraint = _umbrella_system(loaded, cv, settings.force_constant, centre)
    simulation = make_simulation(loaded, settings, seed, platform, properties, system=system)
    context = simulation.context
    context.setPositions(np.ascontiguousarray(start_nm))
    start_cv_openmm = float(restraint.getCollectiveVariableValues(context)[0])
    offset = centre - start_cv_openmm
    chunks = 0
    if settings.approach_per_ps is not None:
        step_ps = settings.timestep_fs / 1000.0
        chunks = int(math.ceil(abs(offset) / settings.approach_per_ps / step_ps / APPROACH_UPDATE_STEPS))
        if chunks:  # (the System was made with the restraint at the centre)
            context.setParameter("umbrella_centre", start_cv_openmm)
    equilibrate(simulation, start_nm, settings.temperature_k, seed, 0)
    for i in range(1, chunks + 1):
        context.setParameter("umbrella_centre", start_cv_openmm + offset * i / chunks)
        simulation.step(APPROACH_UPDATE_STEPS)
    simulation.step(whole_steps(settings.equilibration_ps, settings.timestep_fs))
    simulation.currentStep = 0
    context.setTime(0.0)
    equilibrated_cv = float(restraint.getCollectiveVariableValues(context)[0])
    approach_ps = chunks * APPROACH_UPDATE_STEPS * settings.timestep_fs / 1000.0
    return simulation, restraint, {"seed": seed, "start_cv_openmm": start_cv_openmm, "approach_ps": approach_ps,
                                   "equilibrated_cv": equilibrated_cv}


def _run_window(loaded: Any, start_nm: np.ndarray, cv: CVSpec, settings: UmbrellaSettings, plan: dict,
                wdir: Path, platform: Any, properties: dict) -> dict:
    """One window: restrained minimisation, equilibration, production; ``cv.csv`` then ``result.json``."""
    t0 = time.perf_counter()
    kept = (f"The windows that finished before it are kept in {wdir.parent} (each its own result.json); "
            "this one starts again from its seed frame.")
    with explained_blow_up(f"umbrella window {plan['index']} (centre {plan['centre']:.4g})", kept):
        simulation, restraint, record = _equilibrated_window(loaded, start_nm, cv, settings, plan, platform,
                                                             properties)
        context = simulation.context
        sps = settings.steps_per_sample
        samples = np.empty(settings.n_samples)
        t_md = time.perf_counter()
        for i in range(settings.n_samples):
            simulation.step(sps)
            samples[i] = restraint.getCollectiveVariableValues(context)[0]
        md_s = time.perf_counter() - t_md
    wdir.mkdir(parents=True, exist_ok=True)
    times = (np.arange(settings.n_samples) + 1) * settings.sample_interval_ps
    write_csv(wdir / "cv.csv", WINDOW_CV_COLUMNS, np.stack([times, samples], axis=1))
    result = {
        **plan,
        **record,
        "force_constant": settings.force_constant,
        "n_samples": int(settings.n_samples),
        "mean_cv": float(samples.mean()),
        "std_cv": float(samples.std()),
        "min_cv": float(samples.min()),
        "max_cv": float(samples.max()),
        "ns_per_day": settings.production_ps / 1000.0 / md_s * 86400.0 if md_s > 0 else None,
        "wall_s": time.perf_counter() - t0,
    }
    _atomic_write_json(wdir / "result.json", result)
    return result


def read_windows(out_dir: str | os.PathLike) -> tuple[dict, list[dict], list[np.ndarray]]:
    """``(summary, window results, CV samples per window [n_k])`` of a finished umbrella run."""
    out = Path(out_dir)
    path = out / "umbrella.json"
    if not path.exists():
        raise FileNotFoundError(f"{out} has no umbrella.json: not an umbrella run directory")
    summary = read_json(path)
    if summary.get("format") != FORMAT:
        raise ValueError(f"{path} is not {FORMAT} output")
    missing = [p["index"] for p in summary["plan"] if not (out / f"window_{p['index']:03d}" / "result.json").exists()]
    if missing:
        raise RuntimeError(
            f"{out}: windows {missing} are not finished; rerun seed_umbrella_windows (biomd umbrella) first"
        )
    results, samples = [], []
    for p in summary["plan"]:
        wdir = out / f"window_{p['index']:03d}"
        results.append(_window_result(wdir, p))
        if not (wdir / "cv.csv").exists():  # (it had been OSError's bare "No such file or directory")
            raise damaged_file(wdir / "cv.csv", "it is missing, but the window's result.json says it finished",
                               _WINDOW_REMEDY)
        _, table = read_csv(wdir / "cv.csv", finite=True, remedy=_WINDOW_REMEDY, columns=WINDOW_CV_COLUMNS)
        samples.append(table[:, 1])
        recorded = results[-1].get("n_samples")  # (None: a record written by hand)
        if recorded is not None and len(samples[-1]) != recorded:
            raise damaged_file(wdir / "cv.csv", f"it holds {len(samples[-1])} samples, the window's result.json "
                               f"{recorded}", _WINDOW_REMEDY)
    return summary, results, samples


#: what to do about a finished window whose files are damaged (running it again needs no more than that)
_WINDOW_REMEDY = ("Restore it from a copy, or delete the window's result.json and rerun the same biomd umbrella "
                  "command to run that window again.")


def _window_result(wdir: Path, plan: dict) -> dict:
    """A finished window's ``result.json``, once it is the window ``plan`` places (its centre and seed frame): a
    record of another window had been taken for this one's, and one emptied to ``{}`` was a bare KeyError."""
    result = read_json(wdir / "result.json", _WINDOW_REMEDY, keys=("index", "centre"))
    # (windows written by hand for the analysis may record no seed frame)
    seeded = [result.get("start_frame"), plan.get("start_frame")]
    if _centre_key(result["centre"]) != _centre_key(plan["centre"]) or (None not in seeded and len(set(seeded)) > 1):
        raise damaged_file(wdir / "result.json", f"it records a window at {result['centre']} seeded from frame "
                           f"{seeded[0]}, where the run's plan has {plan['centre']} from frame {seeded[1]}",
                           _WINDOW_REMEDY)
    return result


# --------------------------------------------------------------------------- analysis


@contextlib.contextmanager
def _quiet() -> Any:
    """pymbar prints banners (JAX advice, a timeseries caveat) on import; keep them out of logs."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def _subsample(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Uncorrelated samples of one window's CV series and its statistical inefficiency g."""
    with _quiet():
        from pymbar import timeseries

    if np.ptp(x) == 0:
        return x[:1], float(len(x))
    g = float(timeseries.statistical_inefficiency(x))
    idx = np.asarray(timeseries.subsample_correlated_data(x, g=g), dtype=int)
    return x[idx], g


def analyze_umbrella(
    out_dir: str | os.PathLike,
    *,
    n_bins: int = 50,
    cv_range: tuple[float, float] | None = None,
    fes_type: str = "histogram",
    n_bootstraps: int = 0,
    jacobian: bool = True,
    plateau_from: float | None = None,
    discard_ps: float = 0.0,
    seed: int = 0,
    write: bool = True,
    pool: tuple[str | os.PathLike, ...] = (),
) -> dict:
    """Free-energy profile of a finished umbrella run with pymbar (MBAR through ``pymbar.FES``).

    Parameters
    ----------
    out_dir : an umbrella run directory (all windows finished)
    pool : further finished runs of the same CV, force constant, temperature and sample
        interval (e.g. replicates with other MD seeds) whose windows are pooled with
        ``out_dir``'s into one MBAR analysis
    n_bins : equal-width bins over ``cv_range``
    cv_range : ``(lo, hi)`` of the bins, CV units; None = the sampled range.  Give
        the same range (and ``n_bins``) to two runs to compare their profiles bin
        by bin (:func:`profile_difference`)
    fes_type : ``"histogram"`` (analytical or bootstrap uncertainties) or
        ``"kde"`` (needs scikit-learn and ``n_bootstraps >= 2`` for uncertainties)
    n_bootstraps : 0 (histogram: MBAR's analytical uncertainties) or >= 2 (bootstrap)
    jacobian : add ``n·kT·ln x`` for a CV with a volume element ``x^n`` (the distance: n = 2)
    plateau_from : start of the unbound plateau for :func:`binding_free_energy`
        (CV units); default: the upper 20 % of the sampled range
    discard_ps : production time dropped from the start of each window, ps
    seed : bootstrap seed
    write : write ``fes.json``, ``fes.csv``, ``fes.png`` into ``out_dir``

    Returns
    -------
    dict
        ``x`` ``[B]`` bin centres (CV units); ``f_kt``, ``df_kt``, ``f_kj_mol``,
        ``df_kj_mol`` ``[B]`` (NaN for empty bins), zero at the bound minimum
        ``bound_minimum``; ``f_raw_kt`` (no Jacobian term); ``counts`` ``[B]``
        uncorrelated samples per bin; ``windows`` (per window ``g``,
        ``n_uncorrelated``); ``neighbour_overlap`` / ``min_overlap`` (MBAR
        overlap of windows adjacent in CV); ``empty_bins`` (centres of bins without
        a sample between sampled ones) and ``warnings`` (overlaps below 0.03, empty bins);
        ``binding`` (see :func:`binding_free_energy`; ``{"error": ...}`` when the
        sampled range has no plateau above the minimum).
    """
    with _quiet():
        from pymbar import FES
        from pymbar.utils import ParameterError

    out = Path(out_dir)
    summary, results, samples = read_windows(out)
    for other in pool:
        more = read_windows(other)
        _check_poolable(summary, more[0], out, Path(other))
        results, samples = results + more[1], samples + more[2]
    settings = summary["settings"]
    cv_record = summary["cv"][0]
    temperature = float(settings["temperature_k"])
    kt = kt_kj_mol(temperature)
    beta = 1.0 / kt
    check_analysis_options(n_bins, cv_range, fes_type, n_bootstraps, plateau_from, discard_ps,
                           settings.get("production_ps"))

    skip = int(round(discard_ps / float(settings["sample_interval_ps"])))
    kept, windows = [], []
    for result, x in zip(results, samples):
        x = x[skip:]
        if len(x) < 2:
            raise ValueError(f"window {result['index']} keeps {len(x)} samples after discarding {discard_ps} ps")
        u, g = _subsample(x)
        kept.append(u)
        windows.append({"index": result["index"], "centre": result["centre"], "n_samples": int(len(x)),
                        "g": g, "n_uncorrelated": int(len(u)), "mean_cv": float(x.mean()), "std_cv": float(x.std())})
    x_n = np.concatenate(kept)  # [N] CV units
    n_k = np.array([len(u) for u in kept])
    centres = np.array([r["centre"] for r in results])  # [K]
    k = float(settings["force_constant"])
    # [K, N]: reduced bias of every sample in every window.
    u_kn = beta * 0.5 * k * (x_n[None, :] - centres[:, None]) ** 2
    u_n = np.zeros_like(x_n)  # the unbiased state

    if cv_range is None:
        width = np.ptp(x_n)
        # [B + 1]; nudged so the largest sample falls inside the last bin.
        edges = np.linspace(x_n.min(), x_n.max() + 1e-9 * max(width, 1.0), n_bins + 1)
    else:
        lo, hi = float(cv_range[0]), float(cv_range[1])  # (lo < hi: check_analysis_options)
        edges = np.linspace(lo, hi, n_bins + 1)
        if not np.any((x_n >= lo) & (x_n < hi)):
            raise ValueError(f"no sample inside cv_range {cv_range}")
    x = 0.5 * (edges[1:] + edges[:-1])  # [B]
    n_exp = int(cv_record.get("jacobian_exponent", 0)) if jacobian else 0
    if n_exp and np.any(x <= 0):
        raise ValueError("the Jacobian term needs a positive CV; pass jacobian=False")
    jac = n_exp * np.log(x) if n_exp else np.zeros_like(x)

    with _quiet():
        fes = FES(u_kn, n_k)
        params = {"histogram_parameters": {"bin_edges": [edges]}} if fes_type == "histogram" else \
                 {"kde_parameters": {"bandwidth": 0.5 * (edges[1] - edges[0])}}
        # pymbar seeds the *global* numpy RNG (np.random.seed) when seed >= 0: restore it afterwards.
        rng_state = np.random.get_state()
        counts = np.histogram(x_n, bins=edges)[0]  # [B] uncorrelated samples per bin
        # pymbar 4.0's histogram get_fes raises KeyError for an empty bin: ask for filled bins only.
        filled = counts > 0 if fes_type == "histogram" else np.ones(len(x), dtype=bool)
        method = "bootstrap" if n_bootstraps else "analytical"
        try:
            fes.generate_fes(u_n, x_n, fes_type=fes_type, n_bootstraps=int(n_bootstraps),
                             seed=int(seed) if n_bootstraps else -1, **params)
            raw = np.full(len(x), np.nan)
            raw[filled] = fes.get_fes(x[filled], reference_point="from-lowest")["f_i"]
            j = int(np.nanargmin(raw + jac))
            rel = fes.get_fes(x[filled], reference_point="from-specified", fes_reference=x[j],
                              uncertainty_method=method)
        except ParameterError as exc:  # MBAR did not converge: in practice, windows that do not overlap
            raise ValueError(_disconnected_windows_message(centres, kept, cv_record.get("unit"), exc)) from None
        finally:
            np.random.set_state(rng_state)
    f_kt = np.full(len(x), np.nan)
    df_kt = np.full(len(x), np.nan)
    f_kt[filled] = rel["f_i"] + jac[filled] - jac[j]
    df_kt[filled] = rel["df_i"]
    overlap = _neighbour_overlap(fes.get_mbar(), centres)
    warnings = [
        f"windows at {a:.4g} and {b:.4g} {cv_record.get('unit')} overlap by {o:.3f} (< {MIN_OVERLAP}): the profile "
        "between them is unreliable; add windows there (refine_umbrella_windows, biomd umbrella --refine) or lower "
        "the force constant"
        for a, b, o in overlap if o < MIN_OVERLAP
    ]
    holes = _empty_interior_bins(x, counts)
    if len(holes):
        warnings.append(
            f"{len(holes)} bin(s) between sampled ones hold no sample (at {', '.join(f'{h:.4g}' for h in holes)} "
            f"{cv_record.get('unit')}): the profile has holes; where it is steep the restraint cannot hold the CV "
            "near its centre, so raise the force constant there (adding windows alone does not fill them)"
        )
    try:
        if len(np.unique(centres)) < 2:  # one window (pooled replicates too) samples its own well: its "plateau"
            # is the well's flank (it had been reported)
            raise ValueError(f"one window (at {centres[0]:.4g}) samples only its own well, so there is no unbound "
                             "plateau to compare with the bound minimum: run windows along the whole path")
        disjoint = [f"{a:.4g}–{b:.4g} (overlap {o:.1g})" for a, b, o in overlap if o < JOINED_OVERLAP]
        if disjoint:  # MBAR can converge across them, but a difference across them rests on no shared sample (a
            # path whose frames jumped had given 43 kJ/mol between windows 52 nm apart)
            raise ValueError(f"neighbouring windows share no samples: {', '.join(disjoint)} "
                             f"{cv_record.get('unit') or ''}; the bound and unbound states are not joined. "
                             f"{_JOIN_REMEDY}")
        binding = _binding(fes.get_mbar(), x_n, edges, j, n_exp, plateau_from, f_kt, kt)
    except ValueError as exc:
        if plateau_from is not None:
            raise  # the caller asked for this plateau: say why it does not work
        # The profile is still worth writing when the sampled range has no plateau above the minimum.
        binding = {"error": str(exc)}

    result = {
        "format": "biomd-umbrella-fes",
        "cv": cv_record,
        "unit": cv_record.get("unit"),
        "temperature_k": temperature,
        "kt_kj_mol": kt,
        "fes_type": fes_type,
        "uncertainty": method,
        "n_bins": n_bins,
        "jacobian_exponent": n_exp,
        "discard_ps": discard_ps,
        "bound_minimum": float(x[j]),
        "x": x,
        "f_kt": f_kt,
        "df_kt": df_kt,
        "f_kj_mol": f_kt * kt,
        "df_kj_mol": df_kt * kt,
        "f_raw_kt": raw - raw[j] if np.isfinite(raw[j]) else raw,
        "counts": counts,
        "bin_edges": edges,
        "windows": windows,
        "neighbour_overlap": [{"centres": [a, b], "overlap": o} for a, b, o in overlap],
        "min_overlap": min((o for _, _, o in overlap), default=None),
        "empty_bins": holes,
        "warnings": warnings,
        "binding": binding,
        "pooled_with": [str(p) for p in pool],
    }
    if write:
        _write_fes(out, result, results, samples, centres)
    return result


def check_analysis_options(n_bins: int, cv_range: tuple[float, float] | None, fes_type: str, n_bootstraps: int,
                           plateau_from: float | None, discard_ps: float, production_ps: float | None) -> None:
    """Refuse :func:`analyze_umbrella` options that cannot work (``biomd umbrella`` asks before any window
    runs: they had been refused only after all of them, hours in); ``production_ps`` of a window, None when
    the run does not say (then each window's samples left after ``discard_ps`` are counted later)."""
    if n_bins < 2:
        raise ValueError("n_bins must be at least 2")
    if cv_range is not None and not (np.all(np.isfinite(cv_range)) and float(cv_range[0]) < float(cv_range[1])):
        raise ValueError(f"cv_range must be (lo, hi) with lo < hi, both finite, got {tuple(cv_range)}")
    if fes_type not in ("histogram", "kde"):
        raise ValueError(f"fes_type is 'histogram' or 'kde', not {fes_type!r}")
    if n_bootstraps == 1 or n_bootstraps < 0:
        raise ValueError("n_bootstraps is 0 (analytical) or at least 2")
    if plateau_from is not None and not np.isfinite(plateau_from):
        raise ValueError(f"plateau_from must be a finite CV value, got {plateau_from}")
    longest = math.inf if production_ps is None else production_ps
    if not 0 <= discard_ps < longest:
        raise ValueError(f"discard_ps must be at least 0 and shorter than a window's {longest:g} ps of production, "
                         f"got {discard_ps:g} ps")
    if fes_type == "kde":
        try:
            import sklearn  # noqa: F401
        except ImportError:
            raise ImportError(
                "fes_type='kde' needs scikit-learn (pip install scikit-learn); or use 'histogram'"
            ) from None
        if n_bootstraps < 2:
            raise ValueError("a kde profile's uncertainties come from bootstrapping: give n_bootstraps >= 2")


def _check_poolable(a: dict, b: dict, a_dir: Path, b_dir: Path) -> None:
    """Runs pooled into one MBAR analysis must share the CV and what the reduced bias depends on."""
    keys = ("force_constant", "temperature_k", "sample_interval_ps")
    diffs = [k for k in keys if a["settings"][k] != b["settings"][k]]
    if a["cv"] != b["cv"]:
        diffs.append("cv")
    if a.get("system_sha256") != b.get("system_sha256"):
        diffs.append("system")
    if diffs:
        raise ValueError(f"{b_dir} cannot be pooled with {a_dir}: different {', '.join(diffs)}")


def _binding(mbar: Any, x_n: np.ndarray, edges: np.ndarray, j: int, n_exp: int, plateau_from: float | None,
             f_kt: np.ndarray, kt: float) -> dict:
    """Plateau minus bound-minimum free-energy density, with MBAR's uncertainty.

    Two states of ``MBAR.compute_perturbed_free_energies``: the bound-minimum
    bin ``B`` and the plateau ``P``, each with reduced potential ``n·ln x``
    inside (the Jacobian weight ``x^-n``) and ``+inf`` outside, so
    ``f_R = −ln ∫_R p(x) x^-n dx``; dividing by the region's width turns both
    into densities, ``ΔF = (f_P + ln|P|) − (f_B + ln|B|)``.
    """
    lo, hi = float(edges[0]), float(edges[-1])
    if plateau_from is None:
        plateau_from = hi - 0.2 * (hi - lo)
    plateau_from = float(plateau_from)
    b_lo, b_hi = float(edges[j]), float(edges[j + 1])
    if not b_hi <= plateau_from < hi:
        raise ValueError(
            f"the plateau must start above the bound minimum's bin [{b_lo:.4g}, {b_hi:.4g}] and below the sampled "
            f"maximum {hi:.4g}; got plateau_from = {plateau_from:.4g}"
        )
    in_b = (x_n >= b_lo) & (x_n < b_hi)
    in_p = (x_n >= plateau_from) & (x_n < hi)
    if not in_p.any():
        raise ValueError(f"no sample on the plateau (CV >= {plateau_from:.4g})")
    weight = n_exp * np.log(np.clip(x_n, 1e-300, None)) if n_exp else np.zeros_like(x_n)
    u_ln = np.stack([np.where(in_b, weight, np.inf), np.where(in_p, weight, np.inf)])  # [2, N]
    with _quiet():
        res = mbar.compute_perturbed_free_energies(u_ln)
    delta = float(res["Delta_f"][0, 1]) + math.log(hi - plateau_from) - math.log(b_hi - b_lo)
    d_delta = float(res["dDelta_f"][0, 1])
    centres = 0.5 * (edges[1:] + edges[:-1])
    plateau_bins = centres >= plateau_from
    return {
        "delta_f_kt": delta,
        "d_delta_f_kt": d_delta,
        "delta_f_kj_mol": delta * kt,
        "d_delta_f_kj_mol": d_delta * kt,
        "bound_bin": [b_lo, b_hi],
        "plateau": [plateau_from, hi],
        "plateau_profile_mean_kt": (float(np.nanmean(f_kt[plateau_bins]))
                                    if np.any(np.isfinite(f_kt[plateau_bins])) else None),
        "definition": "F(unbound plateau) - F(bound minimum), free-energy densities of the profile (with its "
                      "Jacobian term); > 0 when the bound state is favoured",
    }


def profile_difference(a: dict, b: dict) -> dict:
    """How far two profiles on the same bins are apart, in kT (e.g. generated- vs steered-MD seeding).

    Both come from :func:`analyze_umbrella` (or ``fes.json``) with the same
    ``cv_range`` and ``n_bins``.  Compared over bins filled in both: as
    zeroed (each at its own bound minimum), and after the constant shift that
    best aligns them (inverse-variance weighted mean difference), since a
    profile is defined up to a constant.

    Returns
    -------
    dict
        ``max_abs_kt`` / ``rms_kt`` (as zeroed), ``aligned_max_abs_kt`` /
        ``aligned_rms_kt``, ``shift_kt``, ``max_abs_over_sigma`` (largest
        ``|Δf| / sqrt(df_a² + df_b²)`` after alignment), ``n_bins`` compared.
    """
    xa, xb = np.asarray(a["x"], dtype=float), np.asarray(b["x"], dtype=float)
    if xa.shape != xb.shape or not np.allclose(xa, xb):
        raise ValueError("the profiles have different bins: analyse both with the same cv_range and n_bins")
    fa, fb = (np.asarray(p["f_kt"], dtype=float) for p in (a, b))
    da, db = (np.asarray(p["df_kt"], dtype=float) for p in (a, b))
    both = np.isfinite(fa) & np.isfinite(fb)
    if not both.any():
        raise ValueError("the profiles share no filled bin")
    diff = fa[both] - fb[both]
    var = da[both] ** 2 + db[both] ** 2
    w = np.where(var > 0, 1.0 / np.where(var > 0, var, 1.0), 0.0)
    shift = float(np.sum(w * diff) / np.sum(w)) if np.sum(w) > 0 else float(np.mean(diff))
    aligned = diff - shift
    sigma = np.sqrt(var)
    return {
        "n_bins": int(both.sum()),
        "max_abs_kt": float(np.max(np.abs(diff))),
        "rms_kt": float(np.sqrt(np.mean(diff**2))),
        "shift_kt": shift,
        "aligned_max_abs_kt": float(np.max(np.abs(aligned))),
        "aligned_rms_kt": float(np.sqrt(np.mean(aligned**2))),
        "max_abs_over_sigma": (float(np.max(np.abs(aligned)[sigma > 0] / sigma[sigma > 0]))
                               if np.any(sigma > 0) else None),
    }


def _empty_interior_bins(x: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Centres ``[H]`` of the bins without a sample that lie between the first and the last filled bin."""
    filled = np.flatnonzero(counts)
    if len(filled) == 0:
        return x[:0]
    inside = slice(filled[0], filled[-1] + 1)
    return x[inside][counts[inside] == 0]


_JOIN_REMEDY = ("Add windows between them (more n_windows, biomd umbrella --windows or --refine), lower the force "
                "constant so that neighbours overlap, or run the windows longer")


def _disconnected_windows_message(centres: np.ndarray, samples: list[np.ndarray], unit: str | None,
                                  error: Exception) -> str:
    """Why MBAR could not join the windows, and what to do (``samples``: each window's CV samples)."""
    order = np.argsort(centres)
    gaps = [f"{centres[a]:.4g}–{centres[b]:.4g}" for a, b in zip(order[:-1], order[1:])
            if samples[a].max() < samples[b].min() or samples[b].max() < samples[a].min()]
    where = (f"neighbouring windows whose samples never meet: {', '.join(gaps)} {unit or ''}".rstrip() if gaps else
             "the windows' samples meet, but too few are shared")
    return f"MBAR could not join the windows into one profile ({error}); {where}. {_JOIN_REMEDY}"


def _neighbour_overlap(mbar: Any, centres: np.ndarray) -> list[tuple[float, float, float]]:
    """MBAR overlap ``O[k, l]`` of windows neighbouring in CV (sorted by centre).

    ``O[k, l]`` is the chance that a sample of window ``k`` is attributed to
    ``l``; below ~0.03 the free-energy difference across that gap rests on
    too few samples (Klimovich, Shirts & Mobley, JCAMD 29, 397, 2015).
    Windows at one centre (replicates pooled) count as one: the chance that a
    sample of any of them is attributed to any window at the next centre,
    ``Σ_{k∈A} N_k Σ_{l∈B} O[k, l] / Σ_{k∈A} N_k``; taken one by one, each of
    ``R`` replicates would claim only ~1/R of it.
    """
    _, first, group = np.unique(np.round(centres, 9), return_index=True, return_inverse=True)
    if len(first) < 2:
        return []
    with _quiet():
        matrix = np.asarray(mbar.compute_overlap()["matrix"])  # [K, K]
    member = np.eye(len(first))[group]  # [K, G]: window k sits at the g-th centre
    n_k = np.asarray(mbar.N_k, dtype=float)  # [K] samples per window
    grouped = member.T @ (n_k[:, None] * matrix) @ member / (member.T @ n_k)[:, None]  # [G, G]
    return [(float(centres[first[g]]), float(centres[first[g + 1]]), float(grouped[g, g + 1]))
            for g in range(len(first) - 1)]


def binding_free_energy(out_dir: str | os.PathLike, *, plateau_from: float | None = None, **analysis: Any) -> dict:
    """Free energy of the unbound plateau relative to the bound minimum, with uncertainty.

    Parameters
    ----------
    out_dir : a finished umbrella run directory
    plateau_from : start of the plateau (CV units); default the upper 20 % of the sampled range
    analysis : further :func:`analyze_umbrella` options (``n_bins``, ``jacobian``, ``discard_ps``, ...)

    Returns
    -------
    dict
        ``delta_f_kt``, ``d_delta_f_kt``, ``delta_f_kj_mol``, ``d_delta_f_kj_mol``
        (positive: the bound state is lower), ``bound_bin`` and ``plateau`` (CV ranges),
        and the analysis' ``warnings`` (poorly overlapping windows, holes in the sampled range).
    """
    fes = analyze_umbrella(out_dir, plateau_from=plateau_from, write=False, **analysis)
    binding = fes["binding"]
    if "error" in binding:
        raise ValueError(f"no binding free energy from {out_dir}: {binding['error']}")
    return {**binding, "warnings": fes["warnings"]}


def _write_fes(out: Path, result: dict, results: list[dict], samples: list[np.ndarray], centres: np.ndarray) -> None:
    _atomic_write_json(out / "fes.json", json_safe(result))
    table = np.stack([result["x"], result["f_kt"], result["df_kt"], result["f_kj_mol"], result["df_kj_mol"],
                      result["f_raw_kt"], result["counts"]], axis=1)
    write_csv(out / "fes.csv", ["cv", "f_kt", "df_kt", "f_kj_mol", "df_kj_mol", "f_raw_kt", "n_uncorrelated"], table)
    _atomic_write_bytes(out / "fes.png", _plot(result, samples, centres))


def _plot(result: dict, samples: list[np.ndarray], centres: np.ndarray) -> bytes:
    """PNG bytes: the profile with error bars over the windows' histograms."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    unit = result["unit"]
    label = {"nm": "CV (nm)", "1": "path progress s", "nm^2": "CV (nm²)"}.get(unit, f"CV ({unit})")
    fig = Figure(figsize=(6.4, 6.4))
    FigureCanvasAgg(fig)  # attaches itself to fig
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    ok = np.isfinite(result["f_kt"])
    top.errorbar(result["x"][ok], result["f_kt"][ok], yerr=result["df_kt"][ok], fmt="o-", ms=3, capsize=2,
                 label=f"MBAR ({result['uncertainty']} 1σ)")
    b = result["binding"]
    if "error" not in b:
        top.axvspan(*b["plateau"], color="0.9",
                    label=f"plateau: ΔF = {b['delta_f_kt']:.2f} ± {b['d_delta_f_kt']:.2f} kT")
    top.set_ylabel("free energy (kT)")
    top.legend(fontsize=8)
    jac = f" + {result['jacobian_exponent']} kT ln x" if result["jacobian_exponent"] else ""
    top.set_title(f"umbrella sampling, {len(samples)} windows{jac}", fontsize=10)
    edges = result["bin_edges"]
    for x, c in zip(samples, centres):
        line = bottom.hist(x, bins=edges, histtype="step")[2][0]
        bottom.axvline(c, color=line.get_edgecolor(), ls=":", lw=0.8)
    bottom.set_xlabel(label)
    bottom.set_ylabel("samples per window")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


# --------------------------------------------------------------------------- command line


def _approach_speed(text: str) -> float | None:
    """``--approach``: a positive speed (CV units per ps) or ``none``."""
    if text.strip().lower() == "none":
        return None
    try:
        speed = float(text)
    except ValueError:
        speed = float("nan")
    if not speed > 0:
        raise argparse.ArgumentTypeError(f"give a positive speed in CV units per ps, or none, not {text!r}")
    return speed


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``biomd umbrella`` arguments."""
    add_input_arguments(p, path_required=False, path_note="required unless --analyze-only")
    w = p.add_argument_group("windows")
    where = w.add_mutually_exclusive_group()
    where.add_argument("--windows", type=int, default=10, help="windows evenly over --range (default 10)")
    where.add_argument("--centres", type=float, nargs="+", help="explicit window centres, CV units")
    w.add_argument("--range", type=float, nargs=2, metavar=("MIN", "MAX"),
                   help="CV range of the windows (default: the path's)")
    w.add_argument("--k", type=float, default=1000.0, help="force constant, kJ/mol per CV unit^2 (default 1000)")
    w.add_argument("--time", default="100ps", help="production per window (default 100ps)")
    w.add_argument("--sample-interval", default="0.1ps", help="time between CV samples (default 0.1ps)")
    w.add_argument("--seed-frames", default="first-arrival", choices=["first-arrival", "nearest"],
                   help="path frame that starts a window: where the path first arrives at the centre (default; "
                        "across a gap, the frame before the jump) or the frame whose CV is nearest it")
    w.add_argument("--approach", default=0.012, type=_approach_speed, metavar="SPEED",
                   help="CV units per ps at which a window's restraint moves from its seed frame's CV to its centre "
                        "before equilibration (default 0.012, the steered pull's nm/ps), or 'none': at the centre "
                        "from the start")
    w.add_argument("--max-start-offset", type=float,
                   help="largest |CV(seed frame) - centre| (default: no limit; centres must lie in the path's range)")
    w.add_argument("--cpus", type=int, nargs="+", metavar="CPU",
                   help="run windows side by side, one per listed CPU core, each on one thread pinned to its "
                        "core (fastest for small systems on the CPU platform; results do not change, with "
                        "--exchange neither)")
    w.add_argument("--exchange", action="store_true",
                   help="Hamiltonian replica exchange between the windows, swaps every --sample-interval "
                        "(then 0.5ps-1ps is typical); not with --refine")
    w.add_argument("--refine", type=int, default=0, metavar="ROUNDS",
                   help="up to ROUNDS rounds that add a window midway between neighbours whose MBAR overlap is "
                        "below --min-overlap (default 0: no refinement)")
    w.add_argument("--min-overlap", type=float, default=MIN_OVERLAP,
                   help=f"neighbour overlap that --refine aims for (default {MIN_OVERLAP})")
    a = p.add_argument_group("analysis (pymbar)")
    a.add_argument("--analyze-only", action="store_true", help="only analyse the finished windows in --out")
    a.add_argument("--bins", type=int, default=50, help="histogram bins (default 50)")
    a.add_argument("--bin-range", type=float, nargs=2, metavar=("MIN", "MAX"),
                   help="CV range of the bins (default: the sampled range); same range = comparable profiles")
    a.add_argument("--fes", default="histogram", choices=["histogram", "kde"],
                   help="pymbar FES type (kde needs scikit-learn)")
    a.add_argument("--bootstraps", type=int, default=0, help="bootstrap uncertainties (default 0: analytical)")
    a.add_argument("--plateau-from", type=float,
                   help="start of the unbound plateau, CV units (default: top 20%% of the range)")
    a.add_argument("--no-jacobian", action="store_true", help="no +2kT ln r volume term for the distance CV")
    a.add_argument("--discard", default="0ps", help="production time dropped from each window's start (default 0ps)")
    add_md_arguments(p, equilibration="10ps")


def main(args: argparse.Namespace) -> int:
    """``biomd umbrella``: windows seeded from a path, then the pymbar profile (``fes.json/csv/png``)."""
    if not args.analyze_only:
        if not (args.path or args.unbind):
            raise ValueError("give the path: --path FILE or --unbind DIR (or --analyze-only for finished windows)")
        inputs = resolve_inputs(args)
        cv = inputs.build_cv(args.path_nodes)
        r = args.range or (None, None)
        settings = UmbrellaSettings(
            n_windows=None if args.centres else args.windows, centres=tuple(args.centres) if args.centres else None,
            cv_min=r[0], cv_max=r[1], force_constant=args.k, production_ps=parse_time_ps(args.time),
            sample_interval_ps=parse_time_ps(args.sample_interval), max_start_offset=args.max_start_offset,
            approach_per_ps=args.approach,
            seed_frames=args.seed_frames.replace("-", "_"),
            replica_exchange=args.exchange, platform=args.platform, threads=args.threads,
            cpus=tuple(args.cpus) if args.cpus else None, **md_kwargs(args),
        )
        check_analysis_options(args.bins, args.bin_range, args.fes, args.bootstraps, args.plateau_from,
                               parse_time_ps(args.discard), settings.production_ps)
        log = None if args.quiet else sys.stderr
        if args.refine:
            refine_umbrella_windows(inputs.loaded, inputs.frames_nm, cv, settings, args.out, log=log,
                                    min_overlap=args.min_overlap, max_rounds=args.refine,
                                    discard_ps=parse_time_ps(args.discard))
        else:
            seed_umbrella_windows(inputs.loaded, inputs.frames_nm, cv, settings, args.out, log=log)
    fes = analyze_umbrella(args.out, n_bins=args.bins, cv_range=args.bin_range, fes_type=args.fes,
                           n_bootstraps=args.bootstraps,
                           jacobian=not args.no_jacobian, plateau_from=args.plateau_from,
                           discard_ps=parse_time_ps(args.discard))
    b = fes["binding"]
    keys = ("delta_f_kt", "d_delta_f_kt", "delta_f_kj_mol", "d_delta_f_kj_mol", "error")
    print(json.dumps({"out": str(args.out), "fes": str(Path(args.out) / "fes.json"), "unit": fes["unit"],
                      "bound_minimum": fes["bound_minimum"], **{k: b[k] for k in keys if k in b},
                      "warnings": fes["warnings"]}, indent=2))
    for warning in fes["warnings"]:  # (they had been in fes.json only)
        print(f"biomd umbrella: warning: {warning}", file=sys.stderr)
    if "error" in b:  # the profile (what the command makes) is written; the binding free energy had been
        # missing with a word in the JSON only
        print(f"biomd umbrella: warning: no binding free energy: {b['error']} (the profile is in "
              f"{Path(args.out) / 'fes.json'})", file=sys.stderr)
    return 0
