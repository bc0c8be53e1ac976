"""Per-residue receptor–ligand interaction energies along a path, and their heat map.

Which residues hold the ligand, and when do they let go?  For every frame of a
path (MD, a generated dissociation, an umbrella window) and every receptor
residue, this module computes the ligand–residue *nonbonded* interaction energy,
split into Coulomb and Lennard-Jones parts, from the System's ``NonbondedForce``
parameters in vectorised numpy, and draws it as a heat map (residues × time).

What is included
----------------
Columns are receptor residues (``by="residue"``) or single receptor atoms
(``by="atom"``: for a host such as CB7 that is one residue, it shows which
portal carbonyls hold the guest).  The decomposition is pairwise and exact for
what OpenMM's ``NonbondedForce`` computes between ligand atoms ``i`` and
receptor atoms ``j``:

* Charges, σ, ε per particle with Lorentz–Berthelot combination
  (``q_i q_j``, ``(σ_i + σ_j)/2``, ``sqrt(ε_i ε_j)``); per-particle parameter
  offsets are applied at the global parameters' default values.
* Exceptions *override* the pair: an exception with ``(chargeProd, σ, ε)`` is
  evaluated with those parameters, plain Coulomb + LJ, no cutoff (as OpenMM
  does); an exclusion (zero ``chargeProd`` and ``ε``) contributes nothing.
* ``NoCutoff``: vacuum Coulomb ``k q_i q_j / r`` + ``4ε((σ/r)^12 − (σ/r)^6)``.
* ``CutoffNonPeriodic`` / ``CutoffPeriodic``: OpenMM's reaction field
  ``k q_i q_j (1/r + k_rf r^2 − c_rf)`` and LJ, both zero beyond the cutoff,
  LJ with OpenMM's switching function when the force uses one; periodic
  distances by the minimum image (OpenMM's triclinic reduction).
* ``Ewald`` / ``PME`` / ``LJPME``: a lattice sum is not a sum over residue
  pairs.  With ``long_range="reaction-field"`` (the default) such systems are
  decomposed *as if* they used ``CutoffPeriodic`` (minimum-image reaction-field
  Coulomb and truncated LJ at the same cutoff and reaction-field dielectric), and
  the result says so in :attr:`InteractionEnergies.notes`; with
  ``long_range="refuse"`` they raise.  The OpenMM reference makes the same
  conversion, so the check below holds for it too.
* The long-range dispersion correction depends on the box volume and atom-type
  counts, not on positions: it belongs to no residue and is left out.

Not included: implicit-solvent terms (``GBSAOBCForce``, ``CustomGBForce``) are
many-body (Born radii depend on every atom) and not pairwise decomposable; their
ligand–receptor part is reported separately, per frame, as
``E_GB(complex) − E_GB(receptor alone) − E_GB(ligand alone)``, each evaluated by
OpenMM on a System that *holds only* those particles (so the removed part no
longer descreens).  ``CustomNonbondedForce``/``CustomBondForce`` terms (e.g.
NBFIX, some 1-4 schemes) and bonded terms of a covalent ligand are listed in the
notes and not decomposed.

Validation
----------
:func:`openmm_interaction_energy` is the OpenMM-side reference: with only a copy
of the ``NonbondedForce`` in a System, ``E(ligand + receptor) − E(receptor) −
E(ligand)`` where each part is evaluated by zeroing the charges and ε of every
other particle (and of every exception that touches one, so exceptions stay
consistent).  The sum of :func:`residue_interaction_energies` over residues
equals it to round-off (tested).

"Letting go"
------------
For a residue whose most negative total energy is ``E_min < 0`` (reached at frame
``f_min``), its *release frame* is the first frame after which ``|E|`` stays
below ``release_fraction · |E_min|`` (default 10 %) up to the end of the path:
one past the last frame with ``|E| ≥ release_fraction · |E_min|`` (that frame is
``f_min`` or later), or ``None`` if the last frame is still above the threshold
(the residue never lets go) or ``E_min ≥ 0`` (it never held).

Units: nm, ps, kJ/mol, elementary charges.
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from biomd_core.io.dcd import load_quietly
from biomd_core.io.output_folder import check_output_folder, claim_output_folder, json_with_keys

from ..data.frame_checks import check_frames_fit, minimum_image
from ..trajectory_io import check_dcd_whole

#: Coulomb's constant 1/(4π ε0) in kJ mol⁻¹ nm e⁻², OpenMM's value (ONE_4PI_EPS0 of OpenMM ≥ 8.0).
ONE_4PI_EPS0 = 138.93545764438198

#: Water residue names: solvent, not receptor.
WATER_RESIDUES = frozenset({"HOH", "WAT", "SOL", "TIP", "TIP3", "TIP4", "TIP5", "SPC", "T3P", "T4P", "T5P", "H2O"})

#: Monatomic ion residue names: solvent when the residue has one atom (a structural Zn stays receptor).
ION_RESIDUES = frozenset(
    {"NA", "CL", "K", "NA+", "CL-", "K+", "SOD", "CLA", "POT", "LI", "LI+", "RB", "CS", "BR", "IOD", "F", "MG", "CA"}
)

#: Long-range treatments this module accepts for Ewald/PME/LJPME systems.
LONG_RANGE = ("reaction-field", "refuse")
#: the files `biomd interactions` writes into its folder (claimed with biomd_core.io.output_folder)
INTERACTIONS_OUTPUTS = ("interactions.csv", "interactions.json", "interactions.png")

_GB_FORCES = ("GBSAOBCForce", "GBSAGBVIForce", "CustomGBForce")
_UNDECOMPOSED_FORCES = ("CustomNonbondedForce", "CustomBondForce", "AmoebaMultipoleForce", "AmoebaVdwForce")


# --------------------------------------------------------------------------- result


@dataclass
class InteractionEnergies:
    """Ligand–residue nonbonded interaction energies along a path.

    Attributes
    ----------
    coulomb_kj_mol : np.ndarray
        ``[T, R]`` kJ/mol, electrostatic part per frame and residue.
    lj_kj_mol : np.ndarray
        ``[T, R]`` kJ/mol, Lennard-Jones part.
    residue_indices : np.ndarray
        ``[R]`` int, topology residue index (``Residue.index``) of every column.
    residue_labels : list[str]
        ``[R]`` names such as ``"LEU99"`` (``"A:LEU99"`` when several chains
        appear; ``"CUC1:O3"`` for atom columns).
    ligand_atoms : np.ndarray
        ``[L]`` int, ligand atom indices.
    times_ps : np.ndarray or None
        ``[T]`` ps, time of every frame (None: frame numbers only).
    gb_kj_mol : np.ndarray or None
        ``[T]`` kJ/mol, ligand–receptor part of the implicit-solvent energy
        (not per residue; see the module docstring), None when not computed.
    method : str
        How the energies were computed, in words.
    notes : list[str]
        Approximations made and terms left out.
    group_atoms : list[np.ndarray]
        ``[R]`` receptor atom indices summed into each column.
    by : str
        ``"residue"`` (one column per residue) or ``"atom"`` (one per receptor atom).
    """

    coulomb_kj_mol: np.ndarray
    lj_kj_mol: np.ndarray
    residue_indices: np.ndarray
    residue_labels: list[str]
    ligand_atoms: np.ndarray
    times_ps: np.ndarray | None = None
    gb_kj_mol: np.ndarray | None = None
    method: str = ""
    notes: list[str] = field(default_factory=list)
    group_atoms: list[np.ndarray] = field(default_factory=list)
    by: str = "residue"

    @property
    def total_kj_mol(self) -> np.ndarray:
        """``[T, R]`` kJ/mol, Coulomb + LJ."""
        return self.coulomb_kj_mol + self.lj_kj_mol

    @property
    def n_frames(self) -> int:
        return int(self.coulomb_kj_mol.shape[0])

    @property
    def n_residues(self) -> int:
        return int(self.coulomb_kj_mol.shape[1])

    def summed_kj_mol(self) -> np.ndarray:
        """``[T]`` kJ/mol, total nonbonded interaction with all listed residues."""
        return self.total_kj_mol.sum(axis=1)

    def frame_times(self) -> np.ndarray:
        """``[T]``: :attr:`times_ps`, or frame numbers when there are no times."""
        return np.arange(self.n_frames, dtype=float) if self.times_ps is None else np.asarray(self.times_ps, float)

    def release_frames(self, release_fraction: float = 0.1) -> list[int | None]:
        """Per residue, the frame from which it has let go of the ligand (see the module docstring).

        Returns
        -------
        list[int | None]
            ``[R]``; None where the residue never held (``E_min ≥ 0``) or still holds at the last frame.
        """
        if not 0.0 < release_fraction < 1.0:
            raise ValueError(f"release_fraction must lie in (0, 1), got {release_fraction}")
        total = self.total_kj_mol  # [T, R]
        e_min = total.min(axis=0)  # [R]
        above = np.abs(total) >= release_fraction * np.abs(e_min)[None, :]  # [T, R]
        # Last frame at or above the threshold; the minimum itself always is.
        last_above = self.n_frames - 1 - np.argmax(above[::-1], axis=0)  # [R]
        out: list[int | None] = []
        for r in range(self.n_residues):
            release = int(last_above[r]) + 1
            out.append(release if (e_min[r] < 0 and release < self.n_frames) else None)
        return out

    def residue_order(self, top: int | None = None, rank: str = "min") -> np.ndarray:
        """Column indices of the ``top`` residues that hold the ligand most strongly.

        Parameters
        ----------
        top : how many (None: all)
        rank : ``"min"`` (most negative minimum over frames) or ``"mean"`` (most negative mean)

        Returns
        -------
        np.ndarray
            ``[min(top, R)]`` column indices, strongest first.
        """
        total = self.total_kj_mol
        if rank == "min":
            score = total.min(axis=0)
        elif rank == "mean":
            score = total.mean(axis=0)
        else:
            raise ValueError(f"rank must be 'min' or 'mean', not {rank!r}")
        order = np.argsort(score, kind="stable")
        return order if top is None else order[: int(top)]

    def summary(self, release_fraction: float = 0.1, hold_threshold_kj_mol: float = 2.5) -> dict:
        """JSON-ready per-residue summary, strongest binder first.

        Parameters
        ----------
        release_fraction : fraction of a residue's minimum defining "let go"
        hold_threshold_kj_mol : a residue "holds" the ligand when its minimum is at
            most ``-hold_threshold_kj_mol`` (default 2.5 kJ/mol ≈ kT at 300 K)
        """
        total = self.total_kj_mol
        times = self.frame_times()
        releases = self.release_frames(release_fraction)
        rows = []
        for r in self.residue_order():
            f_min = int(np.argmin(total[:, r]))
            release = releases[r]
            rows.append(
                {
                    "residue": self.residue_labels[r],
                    "residue_index": int(self.residue_indices[r]),
                    "min_kj_mol": float(total[f_min, r]),
                    "min_frame": f_min,
                    "coulomb_at_min_kj_mol": float(self.coulomb_kj_mol[f_min, r]),
                    "lj_at_min_kj_mol": float(self.lj_kj_mol[f_min, r]),
                    "mean_kj_mol": float(total[:, r].mean()),
                    "mean_coulomb_kj_mol": float(self.coulomb_kj_mol[:, r].mean()),
                    "mean_lj_kj_mol": float(self.lj_kj_mol[:, r].mean()),
                    "holds": bool(total[f_min, r] <= -hold_threshold_kj_mol),
                    "release_frame": release,
                    "release_time_ps": None if (release is None or self.times_ps is None) else float(times[release]),
                }
            )
        summed = self.summed_kj_mol()
        out = {
            "n_frames": self.n_frames,
            "n_residues": self.n_residues,
            "n_ligand_atoms": int(len(self.ligand_atoms)),
            "method": self.method,
            "notes": list(self.notes),
            "release_rule": (
                f"release_frame = first frame after which |E| stays below {release_fraction:g} x |E_min| of that "
                "residue until the end of the path (null: never held, or still holding at the last frame)"
            ),
            "release_fraction": release_fraction,
            "hold_threshold_kj_mol": hold_threshold_kj_mol,
            "nonbonded_total_kj_mol": _series_stats(summed),
            "gb_total_kj_mol": None if self.gb_kj_mol is None else _series_stats(np.asarray(self.gb_kj_mol)),
            "residues": rows,
        }
        return out


def _series_stats(x: np.ndarray) -> dict:
    """Min/mean/first/last of a ``[T]`` series, kJ/mol."""
    return {"min": float(x.min()), "mean": float(x.mean()), "first": float(x[0]), "last": float(x[-1])}


# --------------------------------------------------------------------------- force-field parameters


@dataclass
class _PairModel:
    """What the decomposition needs from a ``NonbondedForce``, in nm, e, kJ/mol.

    charges, sigmas, epsilons : ``[N]`` effective per-particle parameters
    exceptions : ``[E, 2]`` int particle pairs; exc_params ``[E, 3]`` (chargeProd, σ, ε)
    """

    charges: np.ndarray
    sigmas: np.ndarray
    epsilons: np.ndarray
    exceptions: np.ndarray
    exc_params: np.ndarray
    cutoff_nm: float | None  # None: no cutoff
    periodic: bool
    krf: float
    crf: float
    switch_nm: float | None
    exceptions_periodic: bool
    method: str
    notes: list[str]


def _nonbonded_force(system: Any) -> Any:
    import openmm

    forces = [f for f in system.getForces() if isinstance(f, openmm.NonbondedForce)]
    if len(forces) != 1:
        raise ValueError(f"the System must hold exactly one NonbondedForce to decompose (it has {len(forces)})")
    return forces[0]


def _resolve_method(force: Any, long_range: str) -> tuple[int, list[str]]:
    """The NonbondedForce method the decomposition (and its reference) evaluates, and notes on it."""
    import openmm

    if long_range not in LONG_RANGE:
        raise ValueError(f"long_range must be one of {', '.join(LONG_RANGE)}, not {long_range!r}")
    nb = openmm.NonbondedForce
    if hasattr(force, "getIncludeDirectSpace") and not force.getIncludeDirectSpace():
        raise ValueError("the NonbondedForce leaves out direct-space pairs (setIncludeDirectSpace(False)): "
                         "its pair energies are computed elsewhere and cannot be decomposed here")
    method = force.getNonbondedMethod()
    notes: list[str] = []
    if method in (nb.Ewald, nb.PME, nb.LJPME):
        name = {nb.Ewald: "Ewald", nb.PME: "PME", nb.LJPME: "LJPME"}[method]
        if long_range == "refuse":
            raise ValueError(
                f"the System uses {name}: a lattice sum is not a sum over residue pairs. Use "
                "long_range='reaction-field' to decompose it as minimum-image reaction-field Coulomb + truncated LJ "
                "at the same cutoff (an approximation, stated in the result's notes)"
            )
        notes.append(
            f"{name} replaced by minimum-image reaction-field Coulomb and truncated LJ at the same cutoff "
            f"({force.getCutoffDistance().value_in_unit_system(openmm.unit.md_unit_system):g} nm, reaction-field "
            f"dielectric {force.getReactionFieldDielectric():g}): lattice sums are not per-residue"
        )
        method = nb.CutoffPeriodic
    if method != nb.NoCutoff and force.getUseDispersionCorrection():
        notes.append("long-range dispersion correction left out (position-independent, belongs to no residue)")
    return method, notes


def _pair_model(system: Any, long_range: str) -> _PairModel:
    """Effective parameters of the System's NonbondedForce (offsets applied at default global values)."""
    import openmm
    from openmm import unit

    force = _nonbonded_force(system)
    method, notes = _resolve_method(force, long_range)
    nb = openmm.NonbondedForce
    n = force.getNumParticles()
    params = np.empty((n, 3))
    for i in range(n):
        q, s, e = force.getParticleParameters(i)
        params[i] = (q.value_in_unit(unit.elementary_charge), s.value_in_unit(unit.nanometer),
                     e.value_in_unit(unit.kilojoule_per_mole))
    defaults = {force.getGlobalParameterName(k): force.getGlobalParameterDefaultValue(k)
                for k in range(force.getNumGlobalParameters())}
    for k in range(force.getNumParticleParameterOffsets()):
        name, i, dq, ds, de = force.getParticleParameterOffset(k)
        params[i] += defaults[name] * np.array([dq, ds, de])
    n_exc = force.getNumExceptions()
    pairs = np.empty((n_exc, 2), dtype=int)
    exc = np.empty((n_exc, 3))
    for k in range(n_exc):
        i, j, qq, s, e = force.getExceptionParameters(k)
        pairs[k] = (i, j)
        exc[k] = (qq.value_in_unit(unit.elementary_charge**2), s.value_in_unit(unit.nanometer),
                  e.value_in_unit(unit.kilojoule_per_mole))
    for k in range(force.getNumExceptionParameterOffsets()):
        name, e_index, dqq, ds, de = force.getExceptionParameterOffset(k)
        exc[e_index] += defaults[name] * np.array([dqq, ds, de])

    cutoff = force.getCutoffDistance().value_in_unit(unit.nanometer)
    if method == nb.NoCutoff:
        return _PairModel(params[:, 0], params[:, 1], params[:, 2], pairs, exc, None, False, 0.0, 0.0, None, False,
                          "vacuum Coulomb + Lennard-Jones, no cutoff (NonbondedForce NoCutoff)", notes)
    eps_rf = force.getReactionFieldDielectric()
    # OpenMM's reaction field: k_rf = (ε_rf − 1) / ((2 ε_rf + 1) r_c^3), c_rf = 1/r_c + k_rf r_c^2.
    krf = (eps_rf - 1.0) / ((2.0 * eps_rf + 1.0) * cutoff**3)
    crf = 1.0 / cutoff + krf * cutoff**2
    switch = force.getSwitchingDistance().value_in_unit(unit.nanometer) if force.getUseSwitchingFunction() else None
    periodic = method == nb.CutoffPeriodic
    words = (
        f"reaction-field Coulomb (dielectric {eps_rf:g}) + Lennard-Jones"
        f"{f' switched from {switch:g} nm' if switch is not None else ''}, cutoff {cutoff:g} nm"
        f"{', minimum-image distances' if periodic else ''}"
    )
    return _PairModel(params[:, 0], params[:, 1], params[:, 2], pairs, exc, cutoff, periodic, krf, crf, switch,
                      bool(periodic and force.getExceptionsUsePeriodicBoundaryConditions()), words, notes)


def _other_force_notes(system: Any) -> list[str]:
    """Forces whose ligand–receptor part the decomposition does not contain."""
    names = sorted({type(f).__name__ for f in system.getForces()})
    notes = []
    gb = [n for n in names if n in _GB_FORCES]
    if gb:
        notes.append(f"implicit solvent ({', '.join(gb)}) is many-body: not per residue; its ligand-receptor total "
                     "per frame is gb_kj_mol when computed")
    other = [n for n in names if n in _UNDECOMPOSED_FORCES]
    if other:
        notes.append(f"not decomposed (pairwise terms outside NonbondedForce): {', '.join(other)}")
    return notes


# --------------------------------------------------------------------------- geometry


def _box_array(box_vectors_nm: Any, n_frames: int) -> np.ndarray:
    """Box vectors as ``[T, 3, 3]`` nm (rows a, b, c) from ``[3, 3]``, ``[T, 3, 3]`` or a Quantity."""
    from openmm import unit

    if unit.is_quantity(box_vectors_nm):
        box_vectors_nm = box_vectors_nm.value_in_unit(unit.nanometer)
    box = np.asarray(box_vectors_nm, dtype=np.float64)
    if box.shape == (3, 3):
        box = np.broadcast_to(box, (n_frames, 3, 3))
    if box.shape != (n_frames, 3, 3):
        raise ValueError(f"box vectors must have shape [3, 3] or [T, 3, 3] = [{n_frames}, 3, 3], got {box.shape}")
    return box


def _default_box(system: Any) -> np.ndarray:
    from openmm import unit

    return np.array([v.value_in_unit(unit.nanometer) for v in system.getDefaultPeriodicBoxVectors()])


def _as_frames(frames_nm: Any, system: Any, box_vectors_nm: Any = None) -> np.ndarray:
    """``[T, N, 3]`` float64 nm from an array, a single ``[N, 3]`` frame or a Quantity, refused unless
    every frame is sound and fits ``system`` (its atom count and stiff bonds; :mod:`..data.frame_checks`)."""
    from openmm import unit

    if unit.is_quantity(frames_nm):
        frames_nm = frames_nm.value_in_unit(unit.nanometer)
    x = np.asarray(frames_nm, dtype=np.float64)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ValueError(f"frames must have shape [T, N, 3] nm, got {x.shape}")
    if x.shape[1] != system.getNumParticles():
        raise ValueError(f"frames have {x.shape[1]} atoms, the System {system.getNumParticles()} particles")
    box = None
    if system.usesPeriodicBoundaryConditions():  # a trajectory may be wrapped atom by atom
        box = _box_array(_default_box(system) if box_vectors_nm is None else box_vectors_nm, len(x))
    check_frames_fit(x, system, "trajectory", box_nm=box)
    return x


# --------------------------------------------------------------------------- residues


def _ligand_array(topology: Any, ligand_atoms: Any) -> np.ndarray:
    """Ligand atom indices from indices or an mdtraj selection string."""
    if isinstance(ligand_atoms, str):
        from openmm_biomd.data.metadynamics import select_atoms

        return select_atoms(topology, ligand_atoms, "ligand selection")
    lig = np.unique(np.asarray(ligand_atoms, dtype=int))
    if lig.size == 0:
        raise ValueError("no ligand atoms given")
    if lig.min() < 0 or lig.max() >= topology.getNumAtoms():
        raise ValueError(f"ligand atom indices must lie in [0, {topology.getNumAtoms()})")
    return lig


def _receptor_residues(topology: Any, ligand: np.ndarray, residues: Any) -> list[Any]:
    """OpenMM residues to decompose over (each keeps at least one non-ligand atom)."""
    lig = set(int(i) for i in ligand)
    all_res = list(topology.residues())
    if residues is None:
        chosen = [r for r in all_res if not _is_solvent(r)]
    elif isinstance(residues, str):
        from openmm_biomd.data.metadynamics import select_atoms

        selected = select_atoms(topology, residues, "--residues selection")
        wanted = {atom.residue.index for atom in _atoms_at(topology, selected)}
        chosen = [r for r in all_res if r.index in wanted]
    else:
        wanted = {int(i) for i in residues}
        bad = [i for i in wanted if not 0 <= i < len(all_res)]
        if bad:
            raise ValueError(f"residue indices {sorted(bad)[:5]} out of range [0, {len(all_res)})")
        chosen = [r for r in all_res if r.index in wanted]
    chosen = [r for r in chosen if any(a.index not in lig for a in r.atoms())]
    if not chosen:
        raise ValueError("no receptor residue to decompose over (all selected residues are ligand or solvent)")
    return chosen


def _is_solvent(residue: Any) -> bool:
    """Water, or a monatomic ion."""
    name = residue.name.upper()
    return name in WATER_RESIDUES or (len(residue) == 1 and name in ION_RESIDUES)


def _atoms_at(topology: Any, indices: np.ndarray) -> list[Any]:
    atoms = list(topology.atoms())
    return [atoms[int(i)] for i in indices]


def _labels(residues: list[Any]) -> list[str]:
    """``NAME<id>``, with ``chain:`` in front when the residues span several chains."""
    chains = {r.chain.index for r in residues}
    labels = []
    for r in residues:
        label = f"{r.name}{r.id}"
        if len(chains) > 1:
            label = f"{r.chain.id or r.chain.index}:{label}"
        labels.append(label)
    return labels


# --------------------------------------------------------------------------- decomposition


def residue_interaction_energies(
    system: Any,
    topology: Any,
    frames_nm: Any,
    ligand_atoms: Any,
    residues: Any = None,
    *,
    near_nm: float | None = None,
    box_vectors_nm: Any = None,
    times_ps: Sequence[float] | None = None,
    by: str = "residue",
    long_range: str = "reaction-field",
    include_gb: bool = False,
    gb_platform: str | None = None,
    max_chunk_pairs: int = 2_000_000,
) -> InteractionEnergies:
    """Ligand–residue nonbonded interaction energies per frame, Coulomb and LJ apart.

    Parameters
    ----------
    system : openmm.System
        Must hold one ``NonbondedForce``; its parameters define the pair energies.
    topology : openmm.app.Topology
        Residues of the System's particles.
    frames_nm : array_like
        ``[T, N, 3]`` nm (or one ``[N, 3]`` frame, or a Quantity).
    ligand_atoms : sequence of int or str
        Ligand atom indices, or an mdtraj selection such as ``"resname B2"``.
    residues : None, sequence of int or str
        Receptor residues: None for every non-solvent residue other than the
        ligand (water and one-atom ion residues are solvent), topology residue indices,
        or an mdtraj selection (the residues of the atoms it matches).  Ligand
        atoms inside a chosen residue are never counted as receptor.
    near_nm : float, optional
        Keep only residues with an atom within ``near_nm`` of a ligand atom in at
        least one frame (applied after the computation: the sum over kept
        residues then no longer covers the whole receptor).
    box_vectors_nm : array_like, optional
        ``[3, 3]`` or ``[T, 3, 3]`` nm (rows a, b, c) for periodic systems; default
        the System's default box.
    times_ps : sequence of float, optional
        ``[T]`` ps, stored for plots and tables.
    by : ``"residue"`` or ``"atom"``
        Columns: one per residue, or one per receptor atom of those residues
        (labelled ``"CUC1:O3"``), for receptors that are one big residue such as
        a host molecule.
    long_range : ``"reaction-field"`` or ``"refuse"``
        What to do with Ewald/PME/LJPME (see the module docstring).
    include_gb : bool
        Also compute the ligand–receptor part of implicit-solvent forces per frame
        with OpenMM (:func:`gb_interaction_energy`); needs OpenMM contexts.
    gb_platform : str, optional
        OpenMM platform for the GB energies (default: CUDA when present, else CPU).
    max_chunk_pairs : int
        Frames are processed in chunks of at most this many frame×ligand×receptor
        atom pairs (bounds memory at about 100 bytes per pair).

    Returns
    -------
    InteractionEnergies
        ``coulomb_kj_mol`` and ``lj_kj_mol`` of shape ``[T, R]``, kJ/mol.
    """
    x = _as_frames(frames_nm, system, box_vectors_nm)  # [T, N, 3]
    n_frames, n_atoms = x.shape[:2]
    if n_atoms != topology.getNumAtoms():
        raise ValueError(f"frames have {n_atoms} atoms, the topology {topology.getNumAtoms()} atoms")
    model = _pair_model(system, long_range)
    lig = _ligand_array(topology, ligand_atoms)  # [L]
    if by not in ("residue", "atom"):
        raise ValueError(f"by must be 'residue' or 'atom', not {by!r}")
    res_list = _receptor_residues(topology, lig, residues)
    lig_set = set(int(i) for i in lig)
    # Receptor atoms grouped by column (a residue, or one atom), in column order, with each group's start.
    if by == "residue":
        groups = [[a.index for a in r.atoms() if a.index not in lig_set] for r in res_list]
        labels = _labels(res_list)
        column_residue = [r.index for r in res_list]
    else:
        atoms = [a for r in res_list for a in r.atoms() if a.index not in lig_set]
        groups = [[a.index] for a in atoms]
        res_labels = dict(zip([r.index for r in res_list], _labels(res_list)))
        labels = [f"{res_labels[a.residue.index]}:{a.name}" for a in atoms]
        column_residue = [a.residue.index for a in atoms]
    rec = np.asarray([i for g in groups for i in g], dtype=int)  # [M]
    starts = np.cumsum([0] + [len(g) for g in groups[:-1]])  # [R]
    n_lig, n_rec = len(lig), len(rec)

    box = None
    if model.periodic or model.exceptions_periodic:
        box = _box_array(_default_box(system) if box_vectors_nm is None else box_vectors_nm, n_frames)  # [T, 3, 3]
        widths = np.stack([box[:, 0, 0], box[:, 1, 1], box[:, 2, 2]], axis=1).min()
        if model.cutoff_nm is not None and model.cutoff_nm > 0.5 * widths:
            raise ValueError(f"cutoff {model.cutoff_nm:g} nm exceeds half the smallest box width ({widths:g} nm)")

    q, s, e = model.charges, model.sigmas, model.epsilons
    qq = ONE_4PI_EPS0 * q[lig, None] * q[None, rec]  # [L, M] kJ/mol nm
    sig = 0.5 * (s[lig, None] + s[None, rec])  # [L, M] nm (Lorentz)
    eps4 = 4.0 * np.sqrt(e[lig, None] * e[None, rec])  # [L, M] kJ/mol (Berthelot)

    # Exceptions between ligand and receptor replace the regular pair: zero it there, add it separately.
    pos_lig = np.full(n_atoms, -1)
    pos_lig[lig] = np.arange(n_lig)
    pos_rec = np.full(n_atoms, -1)
    pos_rec[rec] = np.arange(n_rec)
    ex_l, ex_m, ex_p = [], [], []
    if len(model.exceptions):
        i, j = model.exceptions[:, 0], model.exceptions[:, 1]
        for a, b in ((i, j), (j, i)):
            hit = (pos_lig[a] >= 0) & (pos_rec[b] >= 0)
            ex_l.append(pos_lig[a[hit]])
            ex_m.append(pos_rec[b[hit]])
            ex_p.append(model.exc_params[hit])
    ex_l = np.concatenate(ex_l) if ex_l else np.zeros(0, int)  # [E']
    ex_m = np.concatenate(ex_m) if ex_m else np.zeros(0, int)
    ex_p = np.concatenate(ex_p) if ex_p else np.zeros((0, 3))
    qq[ex_l, ex_m] = 0.0
    eps4[ex_l, ex_m] = 0.0

    coul = np.zeros((n_frames, len(groups)))  # [T, R]
    lj = np.zeros((n_frames, len(groups)))
    nearest = np.full(n_rec, np.inf)  # [M] closest approach to the ligand over all frames, nm
    chunk = max(1, int(max_chunk_pairs // max(1, n_lig * n_rec)))
    for t0 in range(0, n_frames, chunk):
        xs = x[t0 : t0 + chunk]  # [t, N, 3]
        d = xs[:, None, rec, :] - xs[:, lig, None, :]  # [t, L, M, 3]
        if model.periodic:
            d = minimum_image(d, box[t0 : t0 + chunk])
        r = np.sqrt(np.einsum("tlmk,tlmk->tlm", d, d))  # [t, L, M] nm
        nearest = np.minimum(nearest, r.min(axis=(0, 1)))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            inv_r = 1.0 / r
            c_pair = qq * inv_r  # [t, L, M]
            sr6 = (sig * inv_r) ** 6
            lj_pair = eps4 * (sr6 * sr6 - sr6)
            if model.cutoff_nm is not None:
                inside = r < model.cutoff_nm
                c_pair = np.where(inside, c_pair + qq * (model.krf * r * r - model.crf), 0.0)
                if model.switch_nm is not None:
                    u = np.clip((r - model.switch_nm) / (model.cutoff_nm - model.switch_nm), 0.0, 1.0)
                    lj_pair = lj_pair * (1.0 + u**3 * (-10.0 + u * (15.0 - 6.0 * u)))
                lj_pair = np.where(inside, lj_pair, 0.0)
        # Zero-parameter pairs at r = 0 give 0·inf = NaN: they contribute nothing (a real overlap stays inf).
        c_atom = np.where(np.isnan(c_pair), 0.0, c_pair).sum(axis=1)  # [t, M]
        lj_atom = np.where(np.isnan(lj_pair), 0.0, lj_pair).sum(axis=1)
        if len(ex_l):
            de = xs[:, rec[ex_m], :] - xs[:, lig[ex_l], :]  # [t, E', 3]
            if model.exceptions_periodic:
                de = minimum_image(de, box[t0 : t0 + chunk])
            re = np.linalg.norm(de, axis=-1)  # [t, E']
            sr6 = (ex_p[:, 1] / re) ** 6
            # Exceptions are plain Coulomb + LJ with their own parameters and no cutoff (as in OpenMM).
            np.add.at(c_atom, (slice(None), ex_m), ONE_4PI_EPS0 * ex_p[:, 0] / re)
            np.add.at(lj_atom, (slice(None), ex_m), 4.0 * ex_p[:, 2] * (sr6 * sr6 - sr6))
        coul[t0 : t0 + chunk] = np.add.reduceat(c_atom, starts, axis=1)  # [t, R]
        lj[t0 : t0 + chunk] = np.add.reduceat(lj_atom, starts, axis=1)

    keep = np.arange(len(groups))
    notes = list(model.notes) + _other_force_notes(system)
    if near_nm is not None:
        res_near = np.minimum.reduceat(nearest, starts)  # [R]
        keep = np.flatnonzero(res_near <= near_nm)
        if keep.size == 0:
            raise ValueError(f"no receptor {by} comes within {near_nm:g} nm of the ligand in any frame")
        notes.append(f"only the {keep.size} {by}s within {near_nm:g} nm of the ligand in some frame are listed")
    gb = None
    if include_gb:
        gb = gb_interaction_energy(system, x, lig, rec, box_vectors_nm=box_vectors_nm, platform=gb_platform)
    if times_ps is not None:
        times_ps = np.asarray(times_ps, dtype=float)
        if times_ps.shape != (n_frames,):
            raise ValueError(f"times_ps must have shape [{n_frames}], got {times_ps.shape}")
    return InteractionEnergies(
        coulomb_kj_mol=coul[:, keep],
        lj_kj_mol=lj[:, keep],
        residue_indices=np.asarray([column_residue[k] for k in keep], dtype=int),
        residue_labels=[labels[k] for k in keep],
        group_atoms=[np.asarray(groups[k], dtype=int) for k in keep],
        by=by,
        ligand_atoms=lig,
        times_ps=times_ps,
        gb_kj_mol=gb,
        method=model.method,
        notes=notes,
    )


# --------------------------------------------------------------------------- OpenMM references


def _platform(name: str | None) -> Any:
    import openmm

    try:
        return openmm.Platform.getPlatformByName(name or "Reference")
    except Exception:
        names = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
        raise ValueError(f"OpenMM platform {name!r} is not available here; available: {', '.join(names)}") from None


def _energies(system: Any, frames: np.ndarray, box: np.ndarray | None, platform: Any,
              properties: dict | None = None) -> np.ndarray:
    """``[T]`` kJ/mol potential energy of ``system`` at every frame (box set before positions)."""
    import openmm
    from openmm import unit

    context = openmm.Context(system, openmm.VerletIntegrator(0.001), platform, properties or {})
    out = np.empty(len(frames))
    for t, frame in enumerate(frames):
        if box is not None:
            context.setPeriodicBoxVectors(*box[t])
        context.setPositions(np.ascontiguousarray(frame))
        out[t] = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    del context
    return out


def _bare_system(system: Any, n_particles: int | None = None) -> Any:
    """An empty System with the same particles (or ``n_particles`` unit masses) and default box."""
    import openmm

    out = openmm.System()
    if n_particles is None:
        for i in range(system.getNumParticles()):
            out.addParticle(system.getParticleMass(i))
    else:
        for _ in range(n_particles):
            out.addParticle(1.0)
    out.setDefaultPeriodicBoxVectors(*system.getDefaultPeriodicBoxVectors())
    return out


def _nonbonded_only(system: Any, force: Any, keep: np.ndarray) -> Any:
    """A System holding only a copy of ``force`` with every particle outside ``keep`` switched off.

    Switched-off particles get zero charge and ε (and zero parameter offsets);
    every exception touching one gets zero chargeProd and ε — it stays an
    exclusion, so no pair is switched back on.
    """
    import openmm

    f = openmm.XmlSerializer.clone(force)
    f.setForceGroup(0)
    off = np.ones(f.getNumParticles(), dtype=bool)
    off[keep] = False
    for i in np.flatnonzero(off):
        _, sigma, _ = f.getParticleParameters(int(i))
        f.setParticleParameters(int(i), 0.0, sigma, 0.0)
    for k in range(f.getNumParticleParameterOffsets()):
        name, i, *_ = f.getParticleParameterOffset(k)
        if off[i]:
            f.setParticleParameterOffset(k, name, i, 0.0, 0.0, 0.0)
    dead = set()
    for k in range(f.getNumExceptions()):
        i, j, _, sigma, _ = f.getExceptionParameters(k)
        if off[i] or off[j]:
            f.setExceptionParameters(k, i, j, 0.0, sigma, 0.0)
            dead.add(k)
    for k in range(f.getNumExceptionParameterOffsets()):
        name, e_index, *_ = f.getExceptionParameterOffset(k)
        if e_index in dead:
            f.setExceptionParameterOffset(k, name, e_index, 0.0, 0.0, 0.0)
    out = _bare_system(system)
    out.addForce(f)
    return out


def _partner(system: Any, ligand: np.ndarray, partner_atoms: Any) -> np.ndarray:
    lig = np.unique(np.asarray(ligand, dtype=int))
    if partner_atoms is None:
        partner = np.setdiff1d(np.arange(system.getNumParticles()), lig)
    else:
        partner = np.setdiff1d(np.unique(np.asarray(partner_atoms, dtype=int)), lig)
    if partner.size == 0:
        raise ValueError("no receptor (partner) atoms")
    return partner


def openmm_interaction_energy(
    system: Any,
    frames_nm: Any,
    ligand_atoms: Sequence[int],
    partner_atoms: Sequence[int] | None = None,
    *,
    box_vectors_nm: Any = None,
    long_range: str = "reaction-field",
    platform: str | None = "Reference",
) -> np.ndarray:
    """OpenMM's ligand–receptor nonbonded interaction energy per frame (the reference for the decomposition).

    ``E(ligand + partner) − E(partner) − E(ligand)``, each evaluated by OpenMM on a
    System that holds only a copy of the ``NonbondedForce`` in which every other
    particle (and every exception touching one) has zero charge and ε.  Ewald/PME/
    LJPME are converted to ``CutoffPeriodic`` as in
    :func:`residue_interaction_energies` (``long_range``), and the dispersion
    correction is switched off, so both sides compute the same thing.

    Parameters
    ----------
    system : openmm.System with one NonbondedForce
    frames_nm : ``[T, N, 3]`` nm
    ligand_atoms : ligand atom indices
    partner_atoms : receptor atom indices (default: every non-ligand particle)
    box_vectors_nm : ``[3, 3]`` or ``[T, 3, 3]`` nm for periodic systems (default: the System's)
    long_range : ``"reaction-field"`` or ``"refuse"``
    platform : OpenMM platform name (default ``Reference``: double precision)

    Returns
    -------
    np.ndarray
        ``[T]`` kJ/mol.
    """
    import openmm

    x = _as_frames(frames_nm, system, box_vectors_nm)
    lig = np.unique(np.asarray(ligand_atoms, dtype=int))
    partner = _partner(system, lig, partner_atoms)
    force = openmm.XmlSerializer.clone(_nonbonded_force(system))
    method, _ = _resolve_method(force, long_range)
    force.setNonbondedMethod(method)
    force.setUseDispersionCorrection(False)
    # Our System has no other forces: PME's reciprocal-space bookkeeping is gone with the method change.
    box = None
    if method == openmm.NonbondedForce.CutoffPeriodic:
        box = _box_array(_default_box(system) if box_vectors_nm is None else box_vectors_nm, len(x))
    plat = _platform(platform)
    parts = {}
    for name, keep in (("both", np.union1d(lig, partner)), ("partner", partner), ("ligand", lig)):
        parts[name] = _energies(_nonbonded_only(system, force, keep), x, box, plat)
    return parts["both"] - parts["partner"] - parts["ligand"]


def _subset_force(force: Any, atoms: np.ndarray) -> Any:
    """A copy of a per-particle force (GBSAOBCForce, CustomGBForce, ...) over ``atoms`` only.

    Works on the serialised XML: keeps the ``<Particle>`` entries of ``atoms`` (in
    order) and the exclusions among them, renumbered; everything else (energy
    expressions, tabulated functions, dielectrics) is copied unchanged.
    """
    import openmm

    root = ET.fromstring(openmm.XmlSerializer.serialize(force))
    new_index = {int(a): k for k, a in enumerate(atoms)}
    particles = root.find("Particles")
    if particles is None:
        raise ValueError(f"cannot take a subset of a {type(force).__name__}: no <Particles> in its XML")
    children = list(particles)
    for child in children:
        particles.remove(child)
    for a in atoms:
        particles.append(children[int(a)])
    exclusions = root.find("Exclusions")
    if exclusions is not None:
        for child in list(exclusions):
            p1, p2 = int(child.get("p1")), int(child.get("p2"))
            exclusions.remove(child)
            if p1 in new_index and p2 in new_index:
                child.set("p1", str(new_index[p1]))
                child.set("p2", str(new_index[p2]))
                exclusions.append(child)
    return openmm.XmlSerializer.deserialize(ET.tostring(root, encoding="unicode"))


def gb_interaction_energy(
    system: Any,
    frames_nm: Any,
    ligand_atoms: Sequence[int],
    partner_atoms: Sequence[int] | None = None,
    *,
    box_vectors_nm: Any = None,
    platform: str | None = None,
) -> np.ndarray | None:
    """Ligand–receptor part of the implicit-solvent energy per frame, or None without GB forces.

    ``E_GB(ligand + partner) − E_GB(partner alone) − E_GB(ligand alone)`` summed over
    the System's GB forces (``GBSAOBCForce``, ``GBSAGBVIForce``, ``CustomGBForce``),
    each part evaluated on a System holding *only* those particles: Born radii are
    many-body, so a removed particle must stop descreening, not merely lose its
    charge.  For OBC this includes the ACE non-polar surface term.

    Parameters
    ----------
    frames_nm : ``[T, N, 3]`` nm
    ligand_atoms, partner_atoms : atom indices (partner default: all non-ligand particles)
    box_vectors_nm : ``[3, 3]`` or ``[T, 3, 3]`` nm when a GB force is periodic
    platform : OpenMM platform name (default: CUDA when present, else CPU; the
        interaction is a difference of totals, and mixed/single precision moves it
        by about 1e-3 kJ/mol on T4 lysozyme, while ``Reference`` is 5-10x slower)

    Returns
    -------
    np.ndarray or None
        ``[T]`` kJ/mol.
    """
    x = _as_frames(frames_nm, system, box_vectors_nm)
    forces = [f for f in system.getForces() if type(f).__name__ in _GB_FORCES]
    if not forces:
        return None
    lig = np.unique(np.asarray(ligand_atoms, dtype=int))
    partner = _partner(system, lig, partner_atoms)
    if platform is None:
        from openmm_biomd.data.md import select_platform

        plat, properties = select_platform(None, n_atoms=system.getNumParticles())
    else:
        plat, properties = _platform(platform), {}
    box = None
    if any(f.usesPeriodicBoundaryConditions() for f in forces):
        box = _box_array(_default_box(system) if box_vectors_nm is None else box_vectors_nm, len(x))
    total = np.zeros(len(x))
    for sign, atoms in ((1.0, np.union1d(lig, partner)), (-1.0, partner), (-1.0, lig)):
        sub = _bare_system(system, n_particles=len(atoms))
        for f in forces:
            g = _subset_force(f, atoms)
            g.setForceGroup(0)
            sub.addForce(g)
        total += sign * _energies(sub, x[:, atoms], box, plat, properties)
    return total


# --------------------------------------------------------------------------- outputs


def plot_interaction_heatmap(
    energies: InteractionEnergies,
    path_png: str | os.PathLike,
    times_ps: Sequence[float] | None = None,
    top: int = 20,
    rank: str = "min",
    release_fraction: float = 0.1,
) -> Path:
    """Heat map of the ``top`` residues' interaction energies over the path, with the total above it.

    Rows are the ``top`` residues ranked by their most negative minimum
    (``rank="min"``) or mean (``rank="mean"``), listed in sequence order; columns
    are frames (or times).  The diverging colour map is centred at 0 kJ/mol
    (blue: attraction, red: repulsion), its limits ± the strongest attraction shown
    (clashes saturate); black ticks mark each residue's release frame.  The panel
    above shows the summed Coulomb, LJ and total (and GB when computed), with
    repulsive peaks beyond twice the deepest minimum clipped.

    Parameters
    ----------
    energies : InteractionEnergies ``[T, R]``
    path_png : output file
    times_ps : ``[T]`` ps (default ``energies.times_ps``, else frame numbers)
    top : number of residues shown
    rank : ``"min"`` or ``"mean"``
    release_fraction : see :meth:`InteractionEnergies.release_frames`

    Returns
    -------
    Path
        ``path_png``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if times_ps is None:
        times_ps = energies.times_ps
    x = np.arange(energies.n_frames, dtype=float) if times_ps is None else np.asarray(times_ps, dtype=float)
    xlabel = "frame" if times_ps is None else "time (ps)"
    cols = np.sort(energies.residue_order(top, rank))  # sequence order reads like the protein
    data = energies.total_kj_mol[:, cols].T  # [R', T]
    vmax = _colour_limit(data)

    n_rows = len(cols)
    fig = Figure(figsize=(10, 2.6 + 0.22 * n_rows), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 2, height_ratios=[1.0, max(1.5, 0.22 * n_rows)], width_ratios=[40, 1])
    ax_sum = fig.add_subplot(grid[0, 0])
    ax_map = fig.add_subplot(grid[1, 0], sharex=ax_sum)
    ax_bar = fig.add_subplot(grid[1, 1])
    fig.add_subplot(grid[0, 1]).axis("off")

    series = [energies.coulomb_kj_mol.sum(axis=1), energies.lj_kj_mol.sum(axis=1), energies.summed_kj_mol()]
    ax_sum.plot(x, series[0], label="Coulomb", lw=1)
    ax_sum.plot(x, series[1], label="LJ", lw=1)
    ax_sum.plot(x, series[2], label="Coulomb + LJ", color="k", lw=1.5)
    if energies.gb_kj_mol is not None:
        series.append(np.asarray(energies.gb_kj_mol))
        ax_sum.plot(x, series[-1], label="GB (not per residue)", lw=1, ls="--")
    ax_sum.axhline(0.0, color="0.6", lw=0.5)
    lo = min(0.0, min(float(v.min()) for v in series))
    hi = max(0.0, max(float(v.max()) for v in series))
    clipped = lo < 0 and hi > 2.0 * -lo
    if clipped:  # a clash (1e10 kJ/mol on a rigid pull) would flatten the binding part to a line
        hi = 2.0 * -lo
    pad = 0.05 * (hi - lo) or 1.0
    ax_sum.set_ylim(lo - pad, hi + pad)
    ax_sum.set_ylabel("all residues\n(kJ/mol)", fontsize=8)
    if clipped:
        ax_sum.text(0.01, 0.95, "repulsive peaks clipped", transform=ax_sum.transAxes, fontsize=7, va="top")
    ax_sum.legend(fontsize=7, ncols=4, loc="best")
    ax_sum.tick_params(labelbottom=False)

    edges = _edges(x)
    mesh = ax_map.pcolormesh(edges, np.arange(n_rows + 1) - 0.5, data, cmap="RdBu_r", vmin=-vmax, vmax=vmax,
                             shading="flat")
    releases = energies.release_frames(release_fraction)
    for row, c in enumerate(cols):
        if releases[c] is not None:
            ax_map.plot([x[releases[c]]] * 2, [row - 0.45, row + 0.45], color="k", lw=1.5)
    ax_map.set_yticks(np.arange(n_rows))
    ax_map.set_yticklabels([energies.residue_labels[c] for c in cols], fontsize=7)
    ax_map.set_ylim(n_rows - 0.5, -0.5)
    ax_map.set_xlabel(xlabel)
    ax_map.set_title(
        f"ligand–residue nonbonded interaction, top {n_rows} by {rank} (| = lets go)", fontsize=9
    )
    fig.colorbar(mesh, cax=ax_bar, extend="both").set_label("kJ/mol")
    path = Path(path_png)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def _colour_limit(data: np.ndarray) -> float:
    """Symmetric colour limit, kJ/mol: set by the strongest attraction.

    Attraction is bounded (tens of kJ/mol per residue); repulsion in a clash is
    not (1e10 on a rigid pull), so the attractive side sets the scale and clashes
    saturate (the colour bar is extended both ways).
    """
    attractive = -data[data < 0]
    if attractive.size:
        limit = float(attractive.max())
    else:
        limit = float(np.percentile(np.abs(data), 95)) if data.size else 0.0
    return limit if limit > 0 else 1.0


def _edges(x: np.ndarray) -> np.ndarray:
    """``[T + 1]`` cell edges around ``[T]`` centres (uneven spacing allowed)."""
    if len(x) == 1:
        return np.array([x[0] - 0.5, x[0] + 0.5])
    mid = 0.5 * (x[1:] + x[:-1])
    return np.concatenate([[x[0] - (mid[0] - x[0])], mid, [x[-1] + (x[-1] - mid[-1])]])


def write_interactions(
    out_dir: str | os.PathLike,
    energies: InteractionEnergies,
    *,
    top: int = 20,
    rank: str = "min",
    release_fraction: float = 0.1,
    extra: dict | None = None,
) -> dict:
    """Write ``interactions.csv``, ``interactions.json`` and ``interactions.png`` into ``out_dir``.

    ``interactions.csv`` has one row per frame and residue: ``frame, time_ps,
    residue, coulomb_kj_mol, lj_kj_mol, total_kj_mol`` (``time_ps`` empty when
    there are no times).  ``interactions.json`` is :meth:`InteractionEnergies.summary`
    (per residue: minimum, mean, release frame; see the module docstring for the
    release rule) plus the per-frame totals and ``extra``.

    Returns
    -------
    dict
        The JSON summary, with ``files`` naming the three paths.
    """
    summary = energies.summary(release_fraction)  # first: it checks release_fraction before a file is written
    if top < 1:
        raise ValueError(f"top must be at least 1 (residues shown in the heat map), got {top}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_t, n_r = energies.n_frames, energies.n_residues
    frames = np.repeat(np.arange(n_t), n_r)  # [T·R], frame-major
    times = [""] * (n_t * n_r) if energies.times_ps is None else [f"{v:.6g}" for v in np.repeat(energies.times_ps, n_r)]
    labels = energies.residue_labels * n_t
    c = energies.coulomb_kj_mol.reshape(-1)  # [T·R], frame-major like `frames`
    lj = energies.lj_kj_mol.reshape(-1)
    lines = ["frame,time_ps,residue,coulomb_kj_mol,lj_kj_mol,total_kj_mol"]
    lines += [f"{f},{t},{lab},{a:.6f},{b:.6f},{a + b:.6f}" for f, t, lab, a, b in zip(frames, times, labels, c, lj)]
    csv_path = out / "interactions.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    png_path = plot_interaction_heatmap(energies, out / "interactions.png", top=top, rank=rank,
                                        release_fraction=release_fraction)
    summary["per_frame"] = {
        "time_ps": None if energies.times_ps is None else [float(v) for v in energies.times_ps],
        "nonbonded_total_kj_mol": [float(v) for v in energies.summed_kj_mol()],
        "gb_total_kj_mol": None if energies.gb_kj_mol is None else [float(v) for v in energies.gb_kj_mol],
    }
    if extra:
        summary.update(extra)
    json_path = out / "interactions.json"
    summary["files"] = {"csv": str(csv_path), "json": str(json_path), "png": str(png_path)}
    json_path.write_text(json.dumps(summary, indent=2))
    return summary


# --------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``biomd interactions``."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--system", help="bundled system whose force field scores the frames (e.g. host-guest)")
    source.add_argument(
        "--inputs", nargs="+", metavar="FILE",
        help="your inputs: a.prmtop a.inpcrd | system.xml state.xml top.pdb | x.pdb (with --forcefield) | x.top x.gro",
    )
    parser.add_argument("--forcefield", nargs="+", metavar="XML", help="force-field XMLs for a PDB input")
    parser.add_argument("--implicit-solvent", choices=["HCT", "OBC1", "OBC2", "GBn", "GBn2"],
                        help="for Amber/GROMACS inputs")
    parser.add_argument("--trajectory", required=True,
                        help="frames of the whole system (DCD, XTC, ... anything mdtraj reads), atoms in System order")
    parser.add_argument("--ligand",
                        help="mdtraj selection of the ligand (default: the bundled system's ligand residue)")
    parser.add_argument("--residues", help="mdtraj selection: decompose over these atoms' residues "
                                           "(default: every non-solvent residue)")
    parser.add_argument("--near", type=float, metavar="NM",
                        help="list only residues within NM of the ligand in some frame")
    parser.add_argument("--stride", type=int, default=1, help="use every n-th frame (default 1)")
    parser.add_argument("--frame-interval", type=float, metavar="PS",
                        help="ps between frames (default: from the DCD header or the trajectory's times)")
    parser.add_argument("--top", type=int, default=20, help="residues shown in the heat map (default 20)")
    parser.add_argument("--rank", choices=["min", "mean"], default="min", help="rank residues by minimum or mean")
    parser.add_argument("--release-fraction", type=float, default=0.1,
                        help="a residue lets go once |E| stays below this fraction of its minimum (default 0.1)")
    parser.add_argument("--long-range", choices=list(LONG_RANGE), default="reaction-field",
                        help="PME/Ewald systems: decompose with reaction field at the same cutoff, or refuse")
    parser.add_argument("--no-gb", action="store_true", help="skip the implicit-solvent interaction total")
    parser.add_argument("--check-frames", type=int, default=2,
                        help="frames checked against OpenMM's own interaction energy (default 2; 0: none)")
    parser.add_argument("--by", choices=["residue", "atom"], default="residue",
                        help="one column per residue, or per receptor atom (for a host that is one residue)")
    parser.add_argument("--platform", help="OpenMM platform for the GB energies (default CUDA when present, else "
                                           "CPU; the check always uses Reference)")
    parser.add_argument("--out", required=True, help="output directory")


def _trajectory_times(path: Path, traj: Any, stride: int, interval_ps: float | None) -> np.ndarray | None:
    """``[T]`` ps of the frames kept (after ``stride``), or ``None`` when the file does not say.

    A DCD's time step is read from its header, except mdtraj's placeholder of exactly 1 AKMA unit
    (0.0489 ps, no MD step): ``biomd unbind`` paths written before 2026-12-07 carry it, and trusting it
    put every release time ~20× too early.
    """
    n = traj.n_frames
    if interval_ps is not None:
        return np.arange(n) * interval_ps * stride
    if path.suffix.lower() != ".dcd":
        return np.asarray(traj.time, dtype=float)
    from openmm_biomd.data.md import dcd_frame_spacing_ps, read_dcd_header

    try:
        h = read_dcd_header(path)
    except ValueError:
        h = None
    if h and (dt := dcd_frame_spacing_ps(h)) is not None:
        # The header stores the step as float32 AKMA units: round to 1e-6 ps.
        return np.round((h["first_step"] * h["timestep_ps"] + np.arange(n) * dt * stride), 6)
    warnings.warn(f"{path}'s header gives no time step: frames are reported by number (among those read: with "
                  "--stride N, number k is the file's frame k·N), with no times; give --frame-interval PS (a biomd "
                  "unbind path: its summary.json's frame_interval_ps)", stacklevel=2)
    return None


def main(args: argparse.Namespace) -> int:
    """``biomd interactions``: per-residue interaction energies of a trajectory; prints a JSON digest."""
    import mdtraj

    from openmm_biomd.data.systems import get_system

    if args.stride < 1:
        raise ValueError("--stride must be at least 1")
    if args.top < 1:  # (0 and -1 had drawn an empty or cut heat map)
        raise ValueError(f"--top must be at least 1 (residues shown in the heat map), got {args.top}")
    if args.check_frames < 0:  # (it had been read as 0: no check, without a word)
        raise ValueError(f"--check-frames must be 0 (no check) or more, got {args.check_frames}")
    if not 0.0 < args.release_fraction < 1.0:  # checked again when written, but before the energies are computed
        raise ValueError(f"--release-fraction must lie in (0, 1), got {args.release_fraction}")
    if args.inputs:
        from openmm_biomd.data.inputs import load_input_files

        extra = {"implicit_solvent": args.implicit_solvent} if args.implicit_solvent else {}
        loaded = load_input_files(args.inputs, forcefield=args.forcefield or (), **extra)
    else:
        if args.forcefield or args.implicit_solvent:
            raise ValueError("--forcefield and --implicit-solvent apply to --inputs, not to bundled systems")
        loaded = get_system(args.system).load()
    ligand = args.ligand
    if ligand is None:
        name = loaded.description.get("ligand_residue")
        if not name:
            raise ValueError("give --ligand (an mdtraj selection such as 'resname LIG')")
        ligand = f"resname {name}"
    for option, value in (("--near", args.near), ("--frame-interval", args.frame_interval)):
        if value is not None and not value > 0:
            raise ValueError(f"{option} must be positive, not {value}")
    path = Path(args.trajectory)
    if not path.is_file():
        raise FileNotFoundError(f"trajectory {path} does not exist")
    if path.suffix.lower() == ".dcd":
        check_dcd_whole(path)
    # another command's folder, or files of the user's, are refused by name (an interactions.csv was replaced)
    earlier = json_with_keys("interactions.json", "per_frame")
    check_output_folder(args.out, "interactions", INTERACTIONS_OUTPUTS, earlier)
    md_top = mdtraj.Topology.from_openmm(loaded.topology)
    try:
        traj = load_quietly(path, top=md_top, stride=args.stride)
    except ValueError as exc:  # mdtraj: atom count mismatch
        raise ValueError(f"{path} does not match the system ({md_top.n_atoms} atoms): {exc}") from None
    except OSError as exc:  # not a trajectory mdtraj reads, or cut short
        raise ValueError(f"cannot read {path} as a trajectory ({exc}); give one mdtraj reads (DCD, XTC, ...)") from None
    if traj.n_frames == 0:
        raise ValueError(f"{path} holds no frames")
    times = _trajectory_times(path, traj, args.stride, args.frame_interval)
    frames = np.asarray(traj.xyz, dtype=np.float64)  # [T, N, 3] nm
    box = None if traj.unitcell_vectors is None else np.asarray(traj.unitcell_vectors, dtype=np.float64)
    if not loaded.system.usesPeriodicBoundaryConditions():
        box = None
    energies = residue_interaction_energies(
        loaded.system, loaded.topology, frames, ligand, residues=args.residues, near_nm=args.near,
        box_vectors_nm=box, times_ps=times, by=args.by, long_range=args.long_range, include_gb=not args.no_gb,
        gb_platform=args.platform,
    )
    extra: dict[str, Any] = {
        "system": loaded.description.get("name"),
        "trajectory": str(path.resolve()),
        "ligand_selection": ligand,
        "stride": args.stride,
    }
    if args.check_frames > 0:
        pick = np.unique(np.linspace(0, energies.n_frames - 1, min(args.check_frames, energies.n_frames)).astype(int))
        partner = np.concatenate(energies.group_atoms)  # exactly the receptor atoms decomposed over
        if args.near is None:  # with --near the listed residues are a subset: nothing exact to compare with
            ref = openmm_interaction_energy(
                loaded.system, frames[pick], energies.ligand_atoms, partner,
                box_vectors_nm=None if box is None else box[pick], long_range=args.long_range,
            )
            diff = np.abs(ref - energies.summed_kj_mol()[pick])
            extra["openmm_check"] = {"frames": pick.tolist(), "openmm_kj_mol": ref.tolist(),
                                     "max_abs_diff_kj_mol": float(diff.max())}
            if diff.max() > 1e-3 * max(1.0, float(np.abs(ref).max())):
                warnings.warn(f"decomposed sum differs from OpenMM by {diff.max():.3g} kJ/mol", stacklevel=1)
    claim_output_folder(args.out, "interactions", INTERACTIONS_OUTPUTS, earlier)
    summary = write_interactions(args.out, energies, top=args.top, rank=args.rank,
                                 release_fraction=args.release_fraction, extra=extra)
    digest = {
        "out": str(args.out),
        "n_frames": summary["n_frames"],
        "n_residues": summary["n_residues"],
        "strongest": [
            {k: row[k] for k in ("residue", "min_kj_mol", "release_time_ps")} for row in summary["residues"][:5]
        ],
        "openmm_check": extra.get("openmm_check", {}).get("max_abs_diff_kj_mol"),
        "notes": summary["notes"],
    }
    print(json.dumps(digest, indent=2))
    return 0
