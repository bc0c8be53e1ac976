"""Checks of user-given frames against an OpenMM System (``openmm_biomd.data.frame_checks``)."""

from __future__ import annotations

import numpy as np
import openmm
import pytest

from openmm_biomd.data.frame_checks import (
    MAX_COORDINATE_NM,
    BrokenBond,
    check_frames_fit,
    first_broken_bond,
    first_damaged_frame,
    stiff_bonds,
)


def _chain() -> tuple[openmm.System, np.ndarray]:
    """Four particles in a line: 0–1 a 0.1 nm constraint, 1–2 a stiff 0.15 nm bond, 2–3 a soft 0.5 nm restraint.

    Returns the System and a frame ``[1, 4, 3]`` nm at those lengths.
    """
    system = openmm.System()
    for _ in range(4):
        system.addParticle(12.0)
    system.addConstraint(0, 1, 0.1)
    bonds = openmm.HarmonicBondForce()
    bonds.addBond(1, 2, 0.15, 3.0e5)  # covalent: kJ/mol/nm²
    bonds.addBond(2, 3, 0.5, 1.0e3)  # a restraint: may stretch along a path
    system.addForce(bonds)
    x = np.zeros((1, 4, 3))
    x[0, :, 0] = [0.0, 0.1, 0.25, 0.75]
    return system, x


def test_stiff_bonds_are_constraints_and_covalent_bonds_not_restraints():
    system, _ = _chain()
    pairs, lengths = stiff_bonds(system)
    assert pairs.tolist() == [[0, 1], [1, 2]]
    np.testing.assert_allclose(lengths, [0.1, 0.15])


def test_first_broken_bond_names_frame_atoms_and_lengths():
    system, x = _chain()
    frames = np.repeat(x, 4, axis=0)
    frames[:, :, 1] += np.linspace(0.0, 0.3, 4)[:, None]  # a rigid shift keeps every bond
    frames[1, 3, 0] += 2.0  # the restraint stretched 2 nm: allowed
    frames[2, :2, 0] += [0.0, 0.003]  # thermal motion of the constraint: allowed
    assert first_broken_bond(frames, system) is None
    frames[3, 2, 0] += 0.2  # the covalent bond at 0.35 nm: more than 1.5 × 0.15 + 0.05
    assert first_broken_bond(frames, system) == BrokenBond(3, (1, 2), pytest.approx(0.35), pytest.approx(0.15))
    squeezed = x.copy()
    squeezed[0, 1, 0] = 0.04  # constraint 0.04 nm: under half its length
    assert first_broken_bond(squeezed, system).atoms == (0, 1)
    with pytest.raises(ValueError, match=r"frame 3 of the path does not fit the system: atoms 1 and 2 \(0-based\), "
                                         r"bonded at 0.150 nm, are 0.350 nm apart"):
        check_frames_fit(frames, system)


def test_frames_of_a_subset_check_only_their_bonds():
    """Frames of atoms [1, 2, 3] (a model's atoms): the constraint to atom 0 is not theirs."""
    system, x = _chain()
    subset = x[:, 1:].copy()
    assert first_broken_bond(subset, system, atoms=np.array([1, 2, 3])) is None
    subset[0, 1, 0] += 0.3
    assert first_broken_bond(subset, system, atoms=np.array([1, 2, 3])).atoms == (1, 2)


def test_a_trajectory_wrapped_atom_by_atom_fits_in_its_box():
    system, x = _chain()
    box = np.diag([3.0, 3.0, 3.0])
    wrapped = x.copy()
    wrapped[0, 2, 0] -= 3.0  # atom 2 wrapped into the image on the other side
    assert first_broken_bond(wrapped, system).atoms == (1, 2)
    assert first_broken_bond(wrapped, system, box_nm=box) is None
    assert first_broken_bond(wrapped, system, box_nm=np.repeat(box[None], 1, axis=0)) is None  # [T, 3, 3]


def test_damaged_frames_are_named_before_bonds():
    system, x = _chain()
    frames = np.repeat(x, 3, axis=0)
    assert first_damaged_frame(frames) is None
    frames[2, 0, 0] = 2 * MAX_COORDINATE_NM
    frames[1, 0, 0] = np.nan
    assert first_damaged_frame(frames) == 1
    with pytest.raises(ValueError, match="frame 1 of the start structure holds coordinates that are not finite"):
        check_frames_fit(frames, system, "start structure")
