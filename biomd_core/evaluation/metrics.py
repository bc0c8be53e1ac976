"""Metrics of generated trajectories, each against reference MD where it needs one.

All inputs are frames ``[F, N, 3]`` in nm of the same modelled atoms (the
``SystemGraph`` of the model) unless stated; results are plain floats.
Divergences use natural logarithms (Jensen–Shannon range [0, ln 2]).
"""

from __future__ import annotations

import numpy as np

#: van der Waals radii (nm) for clash detection; others use 0.17 nm.
VDW_RADII_NM = {"H": 0.110, "C": 0.170, "N": 0.155, "O": 0.152, "S": 0.180, "P": 0.180, "F": 0.147, "Cl": 0.175,
                "Br": 0.185, "I": 0.198}


def js_divergence(p: np.ndarray, q: np.ndarray, eps: float = 1e-12) -> float:
    """Jensen–Shannon divergence (nats) of two histograms (normalised here)."""
    p = np.asarray(p, float).ravel() + eps
    q = np.asarray(q, float).ravel() + eps
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)
    return float(0.5 * (p * np.log(p / m)).sum() + 0.5 * (q * np.log(q / m)).sum())


def ramachandran_angles(traj) -> np.ndarray:
    """Backbone (φ, ψ) of every residue that has both: ``[F, R, 2]`` radians (an mdtraj Trajectory)."""
    import mdtraj

    phi_idx, phi = mdtraj.compute_phi(traj)
    psi_idx, psi = mdtraj.compute_psi(traj)
    # φ of residue i uses C(i−1); ψ uses N(i+1): pair them by their shared CA (2nd atom of φ, 1st+1 of ψ).
    phi_ca = {int(q[2]): k for k, q in enumerate(phi_idx)}
    pairs = [(phi_ca[int(q[1])], k) for k, q in enumerate(psi_idx) if int(q[1]) in phi_ca]
    if not pairs:
        raise ValueError("no residue has both φ and ψ; Ramachandran metrics need a peptide backbone")
    return np.stack([np.stack([phi[:, i], psi[:, j]], -1) for i, j in pairs], axis=1)


def ramachandran_jsd(angles_a: np.ndarray, angles_b: np.ndarray, bins: int = 36) -> float:
    """Mean over residues of the JSD between 2-D (φ, ψ) histograms; angles ``[F, R, 2]`` rad."""
    edges = np.linspace(-np.pi, np.pi, bins + 1)
    values = []
    for r in range(angles_a.shape[1]):
        ha, _, _ = np.histogram2d(angles_a[:, r, 0], angles_a[:, r, 1], bins=[edges, edges])
        hb, _, _ = np.histogram2d(angles_b[:, r, 0], angles_b[:, r, 1], bins=[edges, edges])
        values.append(js_divergence(ha, hb))
    return float(np.mean(values))


def tica(features: np.ndarray, lag: int, n_components: int = 2, regularisation: float = 1e-8):
    """Time-lagged independent components of ``features [F, D]`` (mean-free, symmetrised).

    Returns ``(mean [D], projection [D, n_components], timescale eigenvalues [n_components])``.
    """
    from scipy.linalg import eigh

    if features.shape[0] <= lag:
        raise ValueError(f"TICA lag {lag} frames needs more than {lag} frames")
    mean = features.mean(0)
    x = features - mean
    c0 = x.T @ x / len(x) + regularisation * np.eye(x.shape[1])
    ct = x[:-lag].T @ x[lag:] / (len(x) - lag)
    ct = 0.5 * (ct + ct.T)
    values, vectors = eigh(ct, c0)
    order = np.argsort(values)[::-1][:n_components]
    return mean, vectors[:, order], values[order]


def tica_jsd(reference: np.ndarray, generated: np.ndarray, lag: int, bins: int = 40) -> float:
    """JSD between 2-D histograms of the first two TICA components fitted on the reference features."""
    mean, proj, _ = tica(reference, lag)
    a, b = (reference - mean) @ proj, (generated - mean) @ proj
    lo, hi = np.percentile(a, 0.5, axis=0), np.percentile(a, 99.5, axis=0)
    pad = 0.25 * (hi - lo)
    edges = [np.linspace(lo[i] - pad[i], hi[i] + pad[i], bins + 1) for i in range(2)]
    ha, _, _ = np.histogram2d(np.clip(a[:, 0], edges[0][0], edges[0][-1]), np.clip(a[:, 1], edges[1][0], edges[1][-1]), bins=edges)
    hb, _, _ = np.histogram2d(np.clip(b[:, 0], edges[0][0], edges[0][-1]), np.clip(b[:, 1], edges[1][0], edges[1][-1]), bins=edges)
    return js_divergence(ha, hb)


def torsion_features(angles: np.ndarray) -> np.ndarray:
    """``[F, R, 2]`` angles → ``[F, 4R]`` (sin, cos) features for TICA."""
    flat = angles.reshape(len(angles), -1)
    return np.concatenate([np.sin(flat), np.cos(flat)], axis=1)


def superpose(frames_nm: np.ndarray, reference_nm: np.ndarray, atoms: np.ndarray | None = None) -> np.ndarray:
    """Rigidly align every frame onto ``reference_nm [N, 3]`` on ``atoms`` (Kabsch); returns ``[F, N, 3]``."""
    atoms = np.arange(frames_nm.shape[1]) if atoms is None else atoms
    ref = reference_nm[atoms] - reference_nm[atoms].mean(0)
    out = np.empty_like(frames_nm)
    for f, frame in enumerate(frames_nm):
        c = frame[atoms].mean(0)
        u, _, vt = np.linalg.svd((frame[atoms] - c).T @ ref)
        d = np.sign(np.linalg.det(u @ vt))
        rot = u @ np.diag([1.0, 1.0, d]) @ vt
        out[f] = (frame - c) @ rot + reference_nm[atoms].mean(0)
    return out


def rmsf(frames_nm: np.ndarray, align_atoms: np.ndarray | None = None) -> np.ndarray:
    """Per-atom root-mean-square fluctuation (nm) after aligning on ``align_atoms`` to the mean structure."""
    aligned = superpose(frames_nm, frames_nm[0], align_atoms)
    for _ in range(2):  # iterate towards the mean structure
        aligned = superpose(aligned, aligned.mean(0), align_atoms)
    return np.sqrt(((aligned - aligned.mean(0)) ** 2).sum(-1).mean(0))


def pearson_r(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two profiles; NaN when either is constant to rounding (the RMSF of identical frames
    is ~1e-16 nm of superposition round-off, which had correlated at 0.32)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    flat = lambda x: np.std(x) <= 1e-12 * max(1.0, float(np.max(np.abs(x))))  # noqa: E731
    if len(a) < 2 or flat(a) or flat(b):
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def bond_lengths(frames_nm: np.ndarray, bonds: np.ndarray) -> np.ndarray:
    """``[F, E]`` nm."""
    return np.linalg.norm(frames_nm[:, bonds[:, 0]] - frames_nm[:, bonds[:, 1]], axis=-1)


def bond_angles_list(bonds: np.ndarray, n_atoms: int) -> np.ndarray:
    """All bonded triplets ``[A, 3]`` (i, j, k) with j the central atom."""
    neighbors: list[list[int]] = [[] for _ in range(n_atoms)]
    for i, j in bonds:
        neighbors[i].append(int(j))
        neighbors[j].append(int(i))
    triples = [(a, j, c) for j, nb in enumerate(neighbors) for x, a in enumerate(nb) for c in nb[x + 1 :]]
    return np.array(triples, dtype=np.int64).reshape(-1, 3)


def bond_angles(frames_nm: np.ndarray, triples: np.ndarray) -> np.ndarray:
    """``[F, A]`` radians."""
    u = frames_nm[:, triples[:, 0]] - frames_nm[:, triples[:, 1]]
    v = frames_nm[:, triples[:, 2]] - frames_nm[:, triples[:, 1]]
    cos = (u * v).sum(-1) / (np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1))
    return np.arccos(np.clip(cos, -1.0, 1.0))


def geometry_errors(generated: np.ndarray, reference: np.ndarray, bonds: np.ndarray) -> dict:
    """Bond-length and angle errors of generated frames against the reference MD's mean per bond/angle.

    Returns ``bond_mae_A``, ``bond_max_dev_A`` (largest deviation in any frame), ``angle_mae_deg``.
    """
    ref_len = bond_lengths(reference, bonds).mean(0)
    dev = np.abs(bond_lengths(generated, bonds) - ref_len) * 10.0
    triples = bond_angles_list(bonds, generated.shape[1])
    out = {"bond_mae_A": float(dev.mean()), "bond_max_dev_A": float(dev.max())}
    if len(triples):
        ref_ang = bond_angles(reference, triples).mean(0)
        out["angle_mae_deg"] = float(np.degrees(np.abs(bond_angles(generated, triples) - ref_ang)).mean())
    return out


def clash_pairs(n_atoms: int, bonds: np.ndarray, groups: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Heavy-or-not atom pairs between two groups (may be the same) more than three bonds apart: ``[P, 2]``."""
    from ..model.system import topological_pairs

    close = {(int(i), int(j)) for i, j, _ in topological_pairs(n_atoms, bonds)}
    a, b = groups
    same = np.array_equal(a, b)
    pairs = [(int(i), int(j)) for i in a for j in b if (not same or i < j) and i != j and (int(i), int(j)) not in close]
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def clash_score(frames_nm: np.ndarray, pairs: np.ndarray, elements: list[str], tolerance_nm: float = 0.04) -> float:
    """Fraction of frames with at least one pair closer than the sum of vdW radii minus ``tolerance_nm``."""
    if len(pairs) == 0:
        return 0.0
    radii = np.array([VDW_RADII_NM.get(e, 0.17) for e in elements])
    limit = radii[pairs[:, 0]] + radii[pairs[:, 1]] - tolerance_nm
    d = np.linalg.norm(frames_nm[:, pairs[:, 0]] - frames_nm[:, pairs[:, 1]], axis=-1)
    return float((d < limit).any(axis=1).mean())
