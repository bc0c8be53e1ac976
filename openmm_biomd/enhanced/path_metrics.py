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

import numpy as np

from .unbind import Pocket


def resample_by_progress(frames_nm: np.ndarray, pocket: Pocket, n_points: int = 20) -> np.ndarray:
    """Frames ``[n_points, N, 3]`` nm at evenly spaced first-passage levels of the centroid distance.

    Levels run from the path's first-frame distance to ``pocket.exit_distance_nm``;
    a path that never gets there is refused.
    """
    frames = np.asarray(frames_nm, dtype=np.float64)
    d = pocket.distances(frames)
    exit_nm = pocket.exit_distance_nm
    if d.max() < exit_nm:
        raise ValueError(f"the path never leaves the pocket (largest distance {d.max():.3f} nm < {exit_nm:.3f} nm)")
    running = np.maximum.accumulate(d)
    levels = np.linspace(d[0], exit_nm, n_points)
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
    """Mean ligand RMSD (nm) between two dissociation paths at equal progress (see the module docstring)."""
    a = resample_by_progress(path_a, pocket, n_points)
    b = resample_by_progress(path_b, pocket, n_points)
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
