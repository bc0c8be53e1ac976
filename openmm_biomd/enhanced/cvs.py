"""Collective variables for ligand unbinding, as OpenMM forces and as numpy twins.

Every CV here is an OpenMM ``Force`` whose *energy*, in kJ/mol, is numerically
the CV value (nm, or dimensionless for the path progress), so it can be a
variable of a ``CustomCVForce`` (umbrella restraints) or an
``openmm.app.metadynamics.BiasVariable``.  Each has a numpy twin used for
analysis and tests, which must agree with OpenMM to float precision.

- **Ligand–pocket distance**: distance between the geometric centroids of the
  ligand and the pocket (``CustomCentroidBondForce``) — the CV the training
  data's metadynamics biased (:mod:`openmm_biomd.data.metadynamics`).
- **Path CVs** (Branduardi, Gervasio & Parrinello, J. Chem. Phys. 126, 054103,
  2007) from nodes ``X_0 … X_{M-1}`` along a path::

      s(x) = 1/(M-1) · Σ_i i·exp(-λ d_i²) / Σ_i exp(-λ d_i²)     ∈ [0, 1]  progress
      z(x) = -1/λ · ln Σ_i exp(-λ d_i²)                           nm²       distance from the path

  with ``d_i`` the RMSD (nm, after optimal superposition, ``RMSDForce``) of the
  chosen atoms to node ``i``.  ``λ`` defaults to ``2.3 / ⟨d_{i,i+1}²⟩`` (the
  usual choice: neighbouring nodes weigh ``e^-2.3 ≈ 0.1`` of each other), which
  makes ``s`` smooth but still resolving.  Nodes are picked along a generated
  path at roughly equal RMSD spacing (:func:`select_path_nodes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.metadynamics import centroid_distance_force, centroid_distance_nm

__all__ = [
    "PathCV",
    "centroid_distance_force",
    "centroid_distance_nm",
    "kabsch_rmsd_nm",
    "path_cv_values",
    "select_path_nodes",
]


def atom_indices(indices: Any, name: str, n_atoms: int | None = None) -> np.ndarray:
    """``indices`` as a 1-D int64 array of distinct atom indices (in ``[0, n_atoms)`` when given).

    Clear errors for an empty list, a boolean mask or non-integer values (numpy would
    silently read a mask as atoms 0 and 1, or truncate floats), negative or
    out-of-range indices, and an atom listed twice.
    """
    array = np.asarray(indices).reshape(-1)
    if array.size == 0:
        raise ValueError(f"{name} is empty: a CV needs at least one atom")
    if array.dtype == bool:
        raise TypeError(f"{name} is a boolean mask: give atom indices (np.flatnonzero(mask))")
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must hold integer atom indices, got dtype {array.dtype}")
    if array.min() < 0:
        raise ValueError(f"{name} has a negative atom index ({int(array.min())})")
    if n_atoms is not None and array.max() >= n_atoms:
        raise ValueError(f"{name} has atom index {int(array.max())}, but the frames have {n_atoms} atoms")
    if len(np.unique(array)) != len(array):
        raise ValueError(f"{name} lists an atom twice")
    return array.astype(np.int64)


#: Below this mean squared RMSD between neighbouring nodes (nm²) a path does not move its atoms.
_STILL_PATH_NM2 = 1e-12


def kabsch_rmsd_nm(frames_nm: np.ndarray, reference_nm: np.ndarray) -> np.ndarray:
    """RMSD after optimal superposition (translation + rotation), as ``RMSDForce`` computes it.

    Parameters
    ----------
    frames_nm : ``[T, A, 3]`` nm (the chosen atoms only)
    reference_nm : ``[A, 3]`` nm

    Returns
    -------
    np.ndarray
        ``[T]`` nm.
    """
    x = np.asarray(frames_nm, dtype=np.float64)
    x = x - x.mean(axis=1, keepdims=True)
    y = np.asarray(reference_nm, dtype=np.float64)
    y = y - y.mean(axis=0)
    h = np.einsum("tai,aj->tij", x, y)  # [T, 3, 3]
    u, s, vt = np.linalg.svd(h)
    # Reflections are not rotations: flip the smallest singular value when det < 0.
    sign = np.sign(np.linalg.det(u @ vt))
    s[:, -1] *= sign
    msd = (np.sum(x**2, axis=(1, 2)) + np.sum(y**2) - 2.0 * s.sum(axis=1)) / x.shape[1]
    return np.sqrt(np.clip(msd, 0.0, None))


def select_path_nodes(frames_nm: np.ndarray, atoms: np.ndarray, n_nodes: int) -> np.ndarray:
    """Frame indices of ``n_nodes`` path nodes spaced roughly equally in RMSD along the path.

    The path's arc length is accumulated from the RMSD between consecutive
    frames (of ``atoms``); nodes are the frames nearest to equal arc-length
    steps, first and last frame always included, no frame twice.

    Parameters
    ----------
    frames_nm : ``[T, N, 3]`` nm, the path in time order
    atoms : indices of the atoms the path CV uses
    n_nodes : at least 2
    """
    if n_nodes < 2:
        raise ValueError(f"a path needs at least 2 nodes, got {n_nodes}")
    frames = np.asarray(frames_nm)[:, atoms]
    if len(frames) < n_nodes:
        raise ValueError(f"the path has {len(frames)} frames, fewer than the {n_nodes} nodes asked for "
                         "(--path-nodes, n_nodes): ask for fewer nodes or give a longer path")
    steps = np.array([kabsch_rmsd_nm(frames[i + 1: i + 2], frames[i])[0] for i in range(len(frames) - 1)])
    arc = np.concatenate([[0.0], np.cumsum(steps)])
    targets = np.linspace(0.0, arc[-1], n_nodes)
    chosen = [int(np.argmin(np.abs(arc - t))) for t in targets]
    chosen[0], chosen[-1] = 0, len(frames) - 1
    # Keep strictly increasing indices (plateaus in arc length could repeat a frame).
    for i in range(1, n_nodes):
        chosen[i] = max(chosen[i], chosen[i - 1] + 1)
    for i in range(n_nodes - 2, -1, -1):
        chosen[i] = min(chosen[i], chosen[i + 1] - 1)
    return np.asarray(chosen, dtype=int)


@dataclass(frozen=True)
class PathCV:
    """Path collective variables through fixed nodes.

    Attributes
    ----------
    nodes_nm : ``[M, N, 3]`` nm, full-system positions of the nodes (only
        ``atoms`` are used; ``RMSDForce`` wants every particle's reference)
    atoms : indices of the atoms whose RMSD defines the path
    lambda_per_nm2 : λ, 1/nm²
    """

    nodes_nm: np.ndarray
    atoms: np.ndarray
    lambda_per_nm2: float

    @classmethod
    def from_path(cls, frames_nm: np.ndarray, atoms: Any, n_nodes: int = 12,
                  lambda_per_nm2: float | None = None) -> "PathCV":
        """Nodes picked along ``frames_nm [T, N, 3]`` nm; λ from the node spacing unless given."""
        frames = np.asarray(frames_nm, dtype=np.float64)
        if frames.ndim != 3 or frames.shape[-1] != 3:
            raise ValueError(f"path frames must have shape [T, N, 3] nm, got {frames.shape}")
        atoms = atom_indices(atoms, "the path CV's atoms", frames.shape[1])
        finite = np.isfinite(frames[:, atoms]).all(axis=(1, 2))
        if not finite.all():
            raise ValueError(f"frame {int(np.argmin(finite))} of the path holds non-finite coordinates of the "
                             "path CV's atoms")
        nodes = frames[select_path_nodes(frames, atoms, n_nodes)]
        if lambda_per_nm2 is None:
            spacing = np.array([kabsch_rmsd_nm(nodes[i + 1: i + 2, atoms], nodes[i, atoms])[0]
                                for i in range(len(nodes) - 1)])
            mean_sq = float(np.mean(spacing**2))
            if not mean_sq > _STILL_PATH_NM2:  # (identical frames leave ~1e-16 nm² of round-off)
                raise ValueError("the path's nodes are identical: the path does not move the chosen atoms")
            lambda_per_nm2 = 2.3 / mean_sq
        return cls(nodes, atoms, float(lambda_per_nm2))

    def __post_init__(self) -> None:
        if not (np.isfinite(self.lambda_per_nm2) and self.lambda_per_nm2 > 0):
            raise ValueError(f"lambda_per_nm2 must be a positive number (1/nm²), got {self.lambda_per_nm2}")

    @property
    def n_nodes(self) -> int:
        return len(self.nodes_nm)

    def _rmsd_forces(self) -> list:
        import openmm

        return [openmm.RMSDForce(node.tolist(), [int(i) for i in self.atoms]) for node in self.nodes_nm]

    def _sum(self) -> str:
        return "+".join(f"exp(-lam*d{i}^2)" for i in range(self.n_nodes))

    def force(self, which: str) -> Any:
        """A ``CustomCVForce`` whose energy is ``s`` (``which="s"``, dimensionless) or ``z`` (nm²)."""
        import openmm

        total = self._sum()
        if which == "s":
            weighted = "+".join(f"{i}*exp(-lam*d{i}^2)" for i in range(self.n_nodes))
            expression = f"({weighted})/(({total})*{self.n_nodes - 1})"
        elif which == "z":
            expression = f"-log({total})/lam"
        else:
            raise ValueError(f"path CV is 's' or 'z', not {which!r}")
        cv = openmm.CustomCVForce(expression)
        cv.addGlobalParameter("lam", self.lambda_per_nm2)
        for i, rmsd in enumerate(self._rmsd_forces()):
            cv.addCollectiveVariable(f"d{i}", rmsd)
        return cv

    def values(self, frames_nm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(s [T], z [T] nm²)`` of ``frames_nm [T, N, 3]`` nm in numpy (see :func:`path_cv_values`)."""
        return path_cv_values(frames_nm, self.nodes_nm, self.atoms, self.lambda_per_nm2)


def path_cv_values(frames_nm: np.ndarray, nodes_nm: np.ndarray, atoms: np.ndarray,
                   lambda_per_nm2: float) -> tuple[np.ndarray, np.ndarray]:
    """Path progress ``s [T]`` and distance ``z [T]`` (nm²) of frames ``[T, N, 3]`` nm."""
    frames = np.asarray(frames_nm, dtype=np.float64)[:, atoms]
    d2 = np.stack([kabsch_rmsd_nm(frames, node[atoms]) ** 2 for node in np.asarray(nodes_nm)], axis=1)  # [T, M]
    # log-sum-exp for z (far from the path every weight underflows).
    a = -lambda_per_nm2 * d2
    top = a.max(axis=1, keepdims=True)
    w = np.exp(a - top)
    s = (w * np.arange(d2.shape[1])).sum(1) / w.sum(1) / (d2.shape[1] - 1)
    z = -(np.log(w.sum(1)) + top[:, 0]) / lambda_per_nm2
    return s, z
