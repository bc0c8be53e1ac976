"""Comparing dissociation paths: generated against metadynamics.

Two paths of different lengths and speeds are compared at equal *progress*:
each is resampled at ``n_points`` levels of the ligand–pocket centroid
distance between its bound value and the exit distance, taking at each level
the first frame that reaches it (first passage: what the ligand did on its way
out, not where it wandered afterwards).  At each level the two frames are
superimposed on the pocket atoms (the receptor frame of reference) and the
ligand RMSD is taken without further fitting — so it measures *where* the
ligand is relative to the pocket, including which exit it took.  The path RMSD
is the mean over levels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.md import damaged_file, read_json
from .seeding_common import load_recorded_path, unbind_attempt_remedy
from .unbind import Pocket, mean_success_at_k


def resample_by_progress(frames_nm: np.ndarray, pocket: Pocket, n_points: int = 20,
                         upper_nm: float | None = None) -> np.ndarray:
    """Frames ``[n_points, N, 3]`` nm at evenly spaced first-passage levels of the centroid distance.

    Levels run from the path's first-frame distance to ``upper_nm`` (default
    ``pocket.exit_distance_nm``); a path that never gets there is refused.
    """
    frames = np.asarray(frames_nm, dtype=np.float64)
    d = pocket.distances(frames)
    top = pocket.exit_distance_nm if upper_nm is None else float(upper_nm)
    if d.max() < top:
        raise ValueError(f"the path never leaves the pocket (largest distance {d.max():.3f} nm < {top:.3f} nm)")
    running = np.maximum.accumulate(d)
    levels = np.linspace(d[0], top, n_points)
    index = np.searchsorted(running, levels, side="left")
    return frames[np.minimum(index, len(frames) - 1)]


def _superpose(mobile: np.ndarray, target: np.ndarray, on: np.ndarray) -> np.ndarray:
    """``mobile [N, 3]`` moved by the rotation + translation that best fits ``mobile[on]`` onto ``target[on]``."""
    a, b = mobile[on], target[on]
    ca, cb = a.mean(0), b.mean(0)
    u, _, vt = np.linalg.svd((a - ca).T @ (b - cb))
    d = np.sign(np.linalg.det(u @ vt))
    rotation = u @ np.diag([1.0, 1.0, d]) @ vt
    return (mobile - ca) @ rotation + cb


def path_rmsd_nm(path_a: np.ndarray, path_b: np.ndarray, pocket: Pocket, n_points: int = 20) -> float:
    """Mean ligand RMSD (nm) between two dissociation paths at equal progress (see the module docstring).

    Progress runs to the exit distance, or to the farthest distance the shorter-reaching path got if that
    is less: a metadynamics path stops once *its* CV is 1 nm past its bound value, which can fall a few
    hundredths of a nm short of this pocket's exit distance.
    """
    top = min(pocket.exit_distance_nm, *(float(pocket.distances(np.asarray(p)).max()) for p in (path_a, path_b)))
    a = resample_by_progress(path_a, pocket, n_points, top)
    b = resample_by_progress(path_b, pocket, n_points, top)
    lig = pocket.ligand
    per_level = [np.sqrt(np.mean(np.sum((_superpose(x, y, pocket.pocket)[lig] - y[lig]) ** 2, axis=-1)))
                 for x, y in zip(a, b)]
    return float(np.mean(per_level))


def nearest_path_rmsd_nm(path: np.ndarray, references: list[np.ndarray], pocket: Pocket,
                         n_points: int = 20) -> float:
    """Path RMSD to the closest of several reference paths, nm."""
    if not references:
        raise ValueError("no reference paths to compare with")
    return min(path_rmsd_nm(path, ref, pocket, n_points) for ref in references)


def campaign_paths(directory: str | Path) -> list[np.ndarray]:
    """The paths ``[T, N, 3]`` nm of a finished dissociation campaign that left the pocket, each up to its
    exit frame (a campaign run with ``after_exit_ps`` has frames after it).

    A campaign with a ``summary.json`` must be finished and hold every seed it planned: one unfinished, or a seed
    deleted, had been scored against the paths that were left, without a word.  (A folder of seeds without a
    summary, laid out by hand, is read as it is.)
    """
    directory = Path(directory)
    results = sorted(directory.glob("seed_*/result.json"))
    if (directory / "summary.json").exists():
        summary = read_json(directory / "summary.json", keys=("status", "seeds"))
        if summary["status"] != "complete":
            raise ValueError(f"the dissociation campaign {directory} is not finished (status {summary['status']!r}): "
                             "rerun the generate-data command that made it to finish it, then use it as reference")
        results = [directory / f"seed_{index:03d}" / "result.json" for index in range(len(summary["seeds"]))]
        for result_path in results:
            if not result_path.exists():
                raise damaged_file(result_path, f"it is missing, but the campaign's summary.json plans "
                                   f"{len(results)} seeds", f"Rerun the generate-data command that made "
                                   f"{directory}: it runs that seed again.")
    paths = []
    for result_path in results:
        result = read_json(result_path, keys=("dissociated",))
        if result["dissociated"]:
            xyz = load_recorded_path(result_path.parent / "path.dcd", directory / "topology.pdb",
                                     result.get("n_frames"))
            end = result.get("exit_frame")  # absent in campaigns made before after_exit_ps existed: path ends there
            paths.append(xyz if end is None else xyz[: end + 1])
    return paths


def read_unbind_summary(directory: str | Path) -> dict:
    """``summary.json`` of a ``biomd unbind`` run, refused with a clear message if it is not one."""
    path = Path(directory) / "summary.json"
    if not path.exists():
        raise FileNotFoundError(f"{directory} is not a biomd unbind output (no summary.json); run `biomd unbind` first")
    summary = read_json(path)
    if summary.get("format") != "biomd-unbind":
        raise ValueError(f"{path} is not a biomd unbind summary (format {summary.get('format')!r})")
    return summary


def pocket_of(summary: dict) -> Pocket:
    """The success criterion an unbind run used (from its ``summary.json``)."""
    p = summary["pocket"]
    return Pocket(np.asarray(p["ligand_atoms"], dtype=int), np.asarray(p["pocket_atoms"], dtype=int),
                  float(p["pocket_radius_nm"]), float(p["margin_nm"]), float(p["bound_distance_nm"]))


def generated_paths(directory: str | Path, summary: dict) -> dict[int, np.ndarray]:
    """Successful attempts of an unbind run: ``{attempt: [T, N_modelled, 3] nm}``."""
    directory = Path(directory)
    paths = {}
    for r in summary["results"]:
        if r["success"]:
            folder = directory / f"attempt_{r['attempt']:03d}"
            paths[r["attempt"]] = load_recorded_path(folder / "path.dcd", directory / "topology.pdb",
                                                     r.get("n_frames"), unbind_attempt_remedy(folder))
    return paths


def unbinding_metrics(directory: str | Path, references: list[np.ndarray], n_points: int = 20,
                      paths: dict[int, np.ndarray] | None = None) -> dict:
    """Success@1/@10 and path RMSD to the nearest reference path of a ``biomd unbind`` run.

    Parameters
    ----------
    directory : the unbind output (``summary.json``, ``attempt_*/path.dcd``)
    references : reference dissociation paths ``[T, N_modelled, 3]`` nm on the same atoms
        (e.g. :func:`campaign_paths` restricted to the modelled atoms)
    paths : the run's :func:`generated_paths` when the caller has read them already

    Success@k is the unbiased estimate over each start's attempts (see
    :func:`~openmm_biomd.enhanced.unbind.success_at_k`), averaged over starts;
    ``None`` where no start has ``k`` attempts.
    """
    summary = read_unbind_summary(directory)
    pocket = pocket_of(summary)
    paths = generated_paths(directory, summary) if paths is None else paths
    if references and paths:
        n_gen, n_ref = next(iter(paths.values())).shape[1], references[0].shape[1]
        if n_gen != n_ref:
            raise ValueError(f"the generated paths have {n_gen} atoms but the reference paths {n_ref}: "
                             "restrict the references to the modelled atoms")
    rmsd = {a: nearest_path_rmsd_nm(p, references, pocket, n_points) for a, p in paths.items()} if references else {}
    values = list(rmsd.values())
    results = summary["results"]
    return {
        **{k: summary.get(k) for k in ("time_to_first_path_s", "mean_exit_time_ps", "generation_wall_s",
                                         "gate_retries", "gate_rejections")},
        "attempts": len(results),
        "successes": int(sum(r["success"] for r in results)),
        "n_starts": len({r["start_index"] for r in results}),
        "success_at_1": mean_success_at_k(results, 1),
        "success_at_10": mean_success_at_k(results, 10),
        "exit_distance_nm": pocket.exit_distance_nm,
        "max_distance_nm": [r["max_distance_nm"] for r in results],
        "n_reference_paths": len(references),
        "path_rmsd_to_nearest_reference_nm": {
            "mean": float(np.mean(values)) if values else None,
            "median": float(np.median(values)) if values else None,
            "n": len(values),
            "per_attempt": {str(a): v for a, v in rmsd.items()},
        },
    }
