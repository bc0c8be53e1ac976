"""The gate's energy model: the modelled atoms alone, in vacuum, without constraints.

The physics gate minimises every generated frame briefly and compares its
energy with equilibrium statistics.  Doing that with the user's full System is
wrong for explicit solvent (the water is still where it was before the jump)
and slow for implicit solvent (a ``CustomGBForce`` evaluation costs ~1 ms even
for 22 atoms, and OpenMM's minimiser re-runs L-BFGS several times to honour
constraints: 80 ms a frame on this CPU).  So the gate scores the modelled atoms'
*intramolecular* energy: bonded terms and Lennard-Jones + Coulomb between
modelled atoms, no cutoff, with every constraint replaced by a stiff harmonic
bond at the constrained length (so the minimiser runs plain L-BFGS).
Equilibrium statistics are computed with the same function, so the comparison
is like with like.

Why by hand: ParmEd can strip solvent and rebuild a System, but it needs a
parameter for every bond and a System built with ``constraints=HBonds`` carries
none for the constrained ones (``ParameterError: Cannot find necessary
parameters``).  Only the standard forces are copied; custom forces (GB,
CMAP-like custom torsions, NBFIX tables) are left out and listed in
:attr:`SoluteSystem.skipped_forces`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import openmm

from biomd_core.sampling.constraints import RigidBonds

#: Force constant replacing a constraint, kJ/mol/nm² (a stiff X–H bond is ~3e5).
CONSTRAINT_BOND_K = 2.0e5


@dataclass(frozen=True)
class SoluteSystem:
    """A vacuum System of the modelled atoms.

    Attributes
    ----------
    system : the ``openmm.System`` over the ``N`` modelled atoms (local indices)
    bond_lengths_nm : ``{(i, j): r0}`` equilibrium length of every bonded or
        constrained pair, local indices with ``i < j``
    skipped_forces : names of forces of the full System that were not copied
    key : sha256 of the serialised System (and scoring System): identifies the
        energy model, so stored energy statistics are only used with the energy
        model they were measured with
    scoring_system : when set, the gate *relaxes* a frame with ``system`` but
        *scores* it with this one (the same atoms with some partners decoupled)
    """

    system: openmm.System
    bond_lengths_nm: dict
    skipped_forces: tuple
    key: str
    scoring_system: openmm.System | None = None


def _local(atom_indices: np.ndarray) -> dict[int, int]:
    return {int(a): i for i, a in enumerate(atom_indices)}


def _copy_bonds(force, local, out: openmm.HarmonicBondForce, lengths: dict) -> None:
    for b in range(force.getNumBonds()):
        i, j, r0, k = force.getBondParameters(b)
        if i in local and j in local:
            out.addBond(local[i], local[j], r0, k)
            lengths[tuple(sorted((local[i], local[j])))] = r0.value_in_unit(openmm.unit.nanometer)


def _copy_angles(force, local) -> openmm.HarmonicAngleForce:
    out = openmm.HarmonicAngleForce()
    for a in range(force.getNumAngles()):
        i, j, k, theta, kf = force.getAngleParameters(a)
        if i in local and j in local and k in local:
            out.addAngle(local[i], local[j], local[k], theta, kf)
    return out


def _copy_torsions(force, local) -> openmm.PeriodicTorsionForce:
    out = openmm.PeriodicTorsionForce()
    for t in range(force.getNumTorsions()):
        i, j, k, m, n, phase, kf = force.getTorsionParameters(t)
        if all(x in local for x in (i, j, k, m)):
            out.addTorsion(local[i], local[j], local[k], local[m], n, phase, kf)
    return out


def _copy_rb_torsions(force, local) -> openmm.RBTorsionForce:
    out = openmm.RBTorsionForce()
    for t in range(force.getNumTorsions()):
        i, j, k, m, *c = force.getTorsionParameters(t)
        if all(x in local for x in (i, j, k, m)):
            out.addTorsion(local[i], local[j], local[k], local[m], *c)
    return out


def _copy_cmap(force, local) -> openmm.CMAPTorsionForce:
    out = openmm.CMAPTorsionForce()
    for m in range(force.getNumMaps()):
        size, energy = force.getMapParameters(m)
        out.addMap(size, energy)
    for t in range(force.getNumTorsions()):
        m, *atoms = force.getTorsionParameters(t)
        if all(x in local for x in atoms):
            out.addTorsion(m, *[local[x] for x in atoms])
    return out


def _copy_nonbonded(force: openmm.NonbondedForce, atom_indices, local, decoupled=None) -> openmm.NonbondedForce:
    out = openmm.NonbondedForce()
    out.setNonbondedMethod(openmm.NonbondedForce.NoCutoff)
    out.setUseDispersionCorrection(False)
    for a in atom_indices:
        q, sigma, eps = force.getParticleParameters(int(a))
        out.addParticle(q, sigma, eps)
    for e in range(force.getNumExceptions()):
        i, j, qq, sigma, eps = force.getExceptionParameters(e)
        if i in local and j in local:
            out.addException(local[i], local[j], qq, sigma, eps)
    if decoupled is not None:
        # Zero exceptions between the decoupled group and the rest: no interaction at all between them.
        group = [local[int(a)] for a in decoupled]
        rest = sorted(set(local.values()) - set(group))
        for i in group:
            for j in rest:
                out.addException(i, j, 0.0, 1.0, 0.0, True)
    return out


_COPIERS = {
    "HarmonicAngleForce": _copy_angles,
    "PeriodicTorsionForce": _copy_torsions,
    "RBTorsionForce": _copy_rb_torsions,
    "CMAPTorsionForce": _copy_cmap,
}

#: Forces that are deliberately absent from a vacuum intramolecular energy.
_IGNORED = {"CMMotionRemover", "MonteCarloBarostat", "MonteCarloAnisotropicBarostat", "MonteCarloMembraneBarostat",
            "MonteCarloFlexibleBarostat", "AndersenThermostat"}


def build_solute_system(system: openmm.System, atom_indices: np.ndarray,
                        decoupled: np.ndarray | None = None) -> SoluteSystem:
    """The vacuum, constraint-free System of the atoms ``atom_indices`` (see the module docstring).

    ``decoupled`` (atom indices of the full System, a subset of ``atom_indices``)
    adds a *scoring* System in which those atoms have no nonbonded interaction
    with the other modelled atoms.  Ligand unbinding uses it for the ligand:
    frames are still relaxed with the full energy (so a ligand pressed into the
    receptor is pushed out), but scored by the two partners' own energies, which
    do not change when the ligand leaves (the binding energy would otherwise
    fail the energy check of every unbound frame).
    """
    atom_indices = np.asarray(atom_indices, dtype=np.int64)
    local = _local(atom_indices)
    if decoupled is not None and not set(int(a) for a in decoupled) <= set(local):
        raise ValueError("decoupled atoms must be modelled atoms")
    out, lengths, skipped = _build(system, atom_indices, local, None)
    xml = openmm.XmlSerializer.serialize(out)
    scoring = None
    if decoupled is not None:
        scoring = _build(system, atom_indices, local, decoupled)[0]
        xml += openmm.XmlSerializer.serialize(scoring)
    return SoluteSystem(out, lengths, tuple(skipped), hashlib.sha256(xml.encode()).hexdigest()[:16], scoring)


def _build(system: openmm.System, atom_indices: np.ndarray, local: dict, decoupled) -> tuple:
    out = openmm.System()
    for a in atom_indices:
        out.addParticle(system.getParticleMass(int(a)))
    bonds = openmm.HarmonicBondForce()
    lengths: dict = {}
    skipped = []
    for force in system.getForces():
        name = type(force).__name__
        if name == "HarmonicBondForce":
            _copy_bonds(force, local, bonds, lengths)
        elif name == "NonbondedForce":
            out.addForce(_copy_nonbonded(force, atom_indices, local, decoupled))
        elif name in _COPIERS:
            out.addForce(_COPIERS[name](force, local))
        elif name not in _IGNORED:
            skipped.append(name)
    for c in range(system.getNumConstraints()):
        i, j, d = system.getConstraintParameters(c)
        if i in local and j in local:
            bonds.addBond(local[i], local[j], d, CONSTRAINT_BOND_K)
            lengths[tuple(sorted((local[i], local[j])))] = d.value_in_unit(openmm.unit.nanometer)
    out.addForce(bonds)
    return out, lengths, skipped


def rigid_bonds(system: openmm.System, atom_indices: np.ndarray) -> RigidBonds:
    """The System's constraints between modelled atoms, as the sampler's :class:`RigidBonds`.

    ``atom_indices`` ``[N]`` are the modelled atoms' indices in the System; constraints with an
    atom outside them are left out (the hand-back's ``applyConstraints`` meets those).
    """
    local = _local(atom_indices)
    pairs, lengths = [], []
    for k in range(system.getNumConstraints()):
        i, j, length = system.getConstraintParameters(k)
        if i in local and j in local:
            pairs.append((local[i], local[j]))
            lengths.append(length.value_in_unit(openmm.unit.nanometer))
    masses = [system.getParticleMass(int(a)).value_in_unit(openmm.unit.dalton) for a in atom_indices]
    return RigidBonds.from_masses(np.asarray(pairs, dtype=np.int64).reshape(-1, 2), lengths, masses)
