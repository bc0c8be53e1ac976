"""Path collective variables: OpenMM's RMSDForce inside CustomCVForce against the numpy twin."""

from __future__ import annotations

import mdtraj
import numpy as np
import openmm
import pytest

from openmm_biomd.data.systems import get_system
from openmm_biomd.enhanced.cvs import PathCV, kabsch_rmsd_nm, select_path_nodes


@pytest.fixture(scope="module")
def host_guest():
    return get_system("host-guest").load()


def _pull_path(loaded, n_frames=30, distance_nm=1.5, seed=0):
    """A hand-made exit path: the guest pulled out along z, with thermal-size noise on every atom."""
    ligand = mdtraj.Topology.from_openmm(loaded.topology).select("resname B2")
    rng = np.random.default_rng(seed)
    frames = np.repeat(np.asarray(loaded.positions)[None], n_frames, axis=0)
    frames[:, ligand, 2] += np.linspace(0.0, distance_nm, n_frames)[:, None]
    return frames + rng.normal(0.0, 0.01, frames.shape), ligand


def _energies(force, frames):
    system = openmm.System()
    for _ in range(frames.shape[1]):
        system.addParticle(1.0)
    system.addForce(force)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    out = []
    for frame in frames:
        context.setPositions(frame)
        out.append(context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole))
    return np.array(out)


def test_kabsch_rmsd_matches_mdtraj(host_guest):
    frames, _ = _pull_path(host_guest, 5)
    rotation = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))[0]
    rotation *= np.sign(np.linalg.det(rotation))
    moved = frames @ rotation.T + 0.7
    ours = kabsch_rmsd_nm(moved, frames[0])
    top = mdtraj.Topology.from_openmm(host_guest.topology)
    theirs = mdtraj.rmsd(mdtraj.Trajectory(moved.astype(np.float32), top), mdtraj.Trajectory(frames[:1].astype(np.float32), top))
    np.testing.assert_allclose(ours, theirs, atol=2e-5)
    assert ours[0] < 1e-5


def test_path_cv_forces_agree_with_numpy_and_progress_runs_from_0_to_1(host_guest):
    frames, ligand = _pull_path(host_guest)
    atoms = np.arange(frames.shape[1])  # whole complex: the host's alignment carries the guest's exit
    cv = PathCV.from_path(frames, atoms, n_nodes=8)
    assert cv.n_nodes == 8 and cv.lambda_per_nm2 > 0
    s_np, z_np = cv.values(frames)
    s_mm, z_mm = _energies(cv.force("s"), frames), _energies(cv.force("z"), frames)
    np.testing.assert_allclose(s_mm, s_np, atol=1e-5)
    np.testing.assert_allclose(z_mm, z_np, atol=1e-6)
    assert s_np[0] < 0.05 and s_np[-1] > 0.95
    assert np.all(np.diff(s_np) > -0.05)  # progress grows along the path (up to the noise)
    # a frame off the path (the guest pushed sideways) is farther from it in z
    off = frames[len(frames) // 2].copy()
    off[ligand, 0] += 0.4
    assert cv.values(off[None])[1][0] > z_np[len(frames) // 2] + 0.001
    with pytest.raises(ValueError, match="'s' or 'z'"):
        cv.force("x")


def test_path_nodes_are_spread_along_the_path(host_guest):
    frames, _ = _pull_path(host_guest, n_frames=40)
    # a path that waits at the start for 20 frames: nodes must not crowd into the wait
    waiting = np.concatenate([np.repeat(frames[:1], 20, axis=0), frames])
    nodes = select_path_nodes(waiting, np.arange(frames.shape[1]), 6)
    assert nodes[0] == 0 and nodes[-1] == len(waiting) - 1
    assert np.all(np.diff(nodes) > 0)
    assert (nodes[1:] >= 19).all()
    with pytest.raises(ValueError, match="at least 2 nodes"):
        select_path_nodes(frames, np.arange(3), 1)


def test_path_cv_refuses_bad_atoms_frames_and_lambda(host_guest):
    """Atom lists numpy would misread (a mask as atoms 0 and 1, floats truncated, negatives wrapped), NaN
    frames, a still path and a non-positive λ: each a clear error, not a CV of the wrong atoms."""
    frames, ligand = _pull_path(host_guest, n_frames=20)
    n = frames.shape[1]
    mask = np.zeros(n, dtype=bool)
    mask[ligand] = True
    bad_atoms = {"boolean mask": (mask, TypeError), "integer atom indices": (ligand + 0.5, TypeError),
                 "negative atom index": (np.array([-1, 3]), ValueError), "lists an atom twice": ([3, 3], ValueError),
                 "is empty": ([], ValueError),
                 f"has atom index {n}, but the frames have {n} atoms": ([0, n], ValueError)}
    for message, (atoms, error) in bad_atoms.items():
        with pytest.raises(error, match=message):
            PathCV.from_path(frames, atoms, n_nodes=6)
    torn = frames.copy()
    torn[4, ligand[0], 1] = np.nan
    with pytest.raises(ValueError, match="frame 4 of the path holds non-finite coordinates"):
        PathCV.from_path(torn, ligand, n_nodes=6)
    with pytest.raises(ValueError, match=r"shape \[T, N, 3\]"):
        PathCV.from_path(frames[..., :2], ligand, n_nodes=6)
    with pytest.raises(ValueError, match="nodes are identical"):  # round-off alone once gave λ ~ 1e17
        PathCV.from_path(np.repeat(frames[:1], 20, axis=0), ligand, n_nodes=6)
    for lam in (-5.0, float("nan")):
        with pytest.raises(ValueError, match="lambda_per_nm2 must be a positive number"):
            PathCV.from_path(frames, ligand, n_nodes=6, lambda_per_nm2=lam)
    assert PathCV.from_path(frames, ligand.tolist(), n_nodes=6).atoms.dtype == np.int64  # lists are fine
