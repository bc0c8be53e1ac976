"""Load a user's own simulation inputs into a :class:`~openmm_biomd.data.systems.LoadedSystem`.

Four kinds of input, one result (``topology, system, positions [N, 3] nm,
description``):

============== ================================================ ==========================================
kind           files                                            built with
============== ================================================ ==========================================
``amber``      ``.prmtop`` + ``.inpcrd`` (``.rst7``, ``.crd``)  ``AmberPrmtopFile.createSystem``
``openmm-xml`` System ``.xml`` + State ``.xml`` + ``.pdb``       ``XmlSerializer`` (the PDB gives the topology)
``pdb-forcefield`` ``.pdb`` + force-field XML names             ``ForceField(*xmls).createSystem``
``gromacs``    ``.top`` + ``.gro``                              ParmEd (``parmed.load_file(top, xyz=gro)``)
============== ================================================ ==========================================

Periodic inputs get PME with ``nonbonded_cutoff_nm``; others get no cutoff.
Amber coordinates say whether there is a box.  A ``.gro`` always has one (ParmEd
writes the bounding box of a vacuum molecule) and many PDBs carry a dummy
``CRYST1``, so for those ``periodic=None`` means "a box *and* water": set
``periodic`` to override.  The description's ``inputs`` entry holds absolute paths
and options, so ``load_inputs(**description["inputs"])`` rebuilds the same
system (this is how ``biomd generate-data --resume DIR`` works from the run's
metadata alone).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .systems import LoadedSystem, positions_nm

IMPLICIT_SOLVENTS = ("HCT", "OBC1", "OBC2", "GBn", "GBn2")
CONSTRAINTS = ("none", "HBonds", "AllBonds", "HAngles")

AMBER_TOPOLOGY = (".prmtop", ".parm7", ".top7")
AMBER_COORDINATES = (".inpcrd", ".rst7", ".crd", ".rst", ".ncrst")


def load_inputs(
    *,
    prmtop: str | os.PathLike | None = None,
    inpcrd: str | os.PathLike | None = None,
    system_xml: str | os.PathLike | None = None,
    state_xml: str | os.PathLike | None = None,
    pdb: str | os.PathLike | None = None,
    forcefield: Sequence[str] = (),
    top: str | os.PathLike | None = None,
    gro: str | os.PathLike | None = None,
    implicit_solvent: str | None = None,
    constraints: str = "HBonds",
    nonbonded_cutoff_nm: float = 1.0,
    periodic: bool | None = None,
    gromacs_include_dir: str | os.PathLike | None = None,
) -> LoadedSystem:
    """Build a system from a user's files.

    Give exactly one group of files: ``prmtop + inpcrd`` (Amber), ``system_xml +
    state_xml + pdb`` (serialised OpenMM), ``pdb + forcefield`` (PDB with
    force-field XML names such as ``("amber14-all.xml", "implicit/obc2.xml")``),
    or ``top + gro`` (GROMACS, through ParmEd).

    Parameters
    ----------
    implicit_solvent : one of ``HCT, OBC1, OBC2, GBn, GBn2`` or None; Amber and
        GROMACS only (with a PDB, name an implicit-solvent XML instead).
    constraints : ``none, HBonds, AllBonds, HAngles`` (ignored for System XML,
        which carries its own constraints)
    nonbonded_cutoff_nm : PME real-space cutoff for periodic inputs, nm
    periodic : PDB and GROMACS only: use the file's box (PME) or not; None:
        periodic when there is a box and the system contains water
    gromacs_include_dir : GROMACS ``share/gromacs/top`` for ``#include``\\ d
        force fields (default: ParmEd's detection)

    Returns
    -------
    LoadedSystem
        positions ``[N, 3]`` float64 nm; ``description["inputs"]`` rebuilds it.
    """
    groups = {
        "amber": (prmtop, inpcrd),
        "openmm-xml": (system_xml, state_xml),
        "gromacs": (top, gro),
    }
    given = [kind for kind, files in groups.items() if any(f is not None for f in files)]
    if not given and pdb is not None:
        given = ["pdb-forcefield"]
    if len(given) != 1:
        raise ValueError(
            "give exactly one set of inputs: prmtop+inpcrd, system_xml+state_xml+pdb, pdb+forcefield or top+gro"
            + (f" (got {' and '.join(given)})" if given else "")
        )
    kind = given[0]
    if implicit_solvent is not None and kind in ("openmm-xml", "pdb-forcefield"):
        raise ValueError(
            f"implicit_solvent applies to Amber and GROMACS inputs; for {kind} inputs the solvent model is part "
            "of the System XML or the force-field XML (e.g. implicit/obc2.xml)"
        )
    options = {
        "implicit_solvent": implicit_solvent,
        "constraints": constraints,
        "nonbonded_cutoff_nm": float(nonbonded_cutoff_nm),
    }
    if periodic is not None:
        if kind not in ("pdb-forcefield", "gromacs"):
            raise ValueError("periodic applies to PDB and GROMACS inputs (Amber and XML inputs say it themselves)")
        options["periodic"] = bool(periodic)
    if kind == "amber":
        return _load_amber(_need(prmtop, "prmtop", AMBER_TOPOLOGY), _need(inpcrd, "inpcrd", AMBER_COORDINATES), options)
    if kind == "openmm-xml":
        return _load_openmm_xml(
            _need(system_xml, "system_xml", (".xml",)), _need(state_xml, "state_xml", (".xml",)), _need(pdb, "pdb", (".pdb",))
        )
    if kind == "gromacs":
        include = str(Path(gromacs_include_dir).resolve()) if gromacs_include_dir else None
        return _load_gromacs(_need(top, "top", (".top",)), _need(gro, "gro", (".gro",)), options, include)
    if not forcefield:
        raise ValueError("a PDB alone has no force field: also give force-field XML names, e.g. amber14-all.xml implicit/obc2.xml")
    return _load_pdb_forcefield(_need(pdb, "pdb", (".pdb", ".cif", ".pdbx")), tuple(forcefield), options)


def load_input_files(paths: Sequence[str | os.PathLike], forcefield: Sequence[str] = (), **options: Any) -> LoadedSystem:
    """:func:`load_inputs` with files recognised by their extension (what the CLI's ``--inputs`` takes).

    Two ``.xml`` files are told apart by their root element (``<System>`` or ``<State>``).
    """
    kwargs: dict[str, Any] = {}
    for raw in paths:
        path = Path(raw)
        suffix = path.suffix.lower()
        if suffix in AMBER_TOPOLOGY:
            key = "prmtop"
        elif suffix in AMBER_COORDINATES:
            key = "inpcrd"
        elif suffix in (".pdb", ".cif", ".pdbx"):
            key = "pdb"
        elif suffix == ".top":
            key = "top"
        elif suffix == ".gro":
            key = "gro"
        elif suffix == ".xml":
            key = _xml_kind(path)
        else:
            raise ValueError(
                f"{path}: unrecognised input extension {suffix!r}; expected .prmtop/.inpcrd, System and State .xml "
                "with a .pdb, a .pdb with force-field XML names, or .top/.gro"
            )
        if key in kwargs:
            raise ValueError(f"two {key} inputs given: {kwargs[key]} and {path}")
        kwargs[key] = path
    return load_inputs(**kwargs, forcefield=forcefield, **options)


def _need(path: str | os.PathLike | None, what: str, suffixes: tuple[str, ...]) -> Path:
    """An existing file with an expected extension, as an absolute path; clear errors otherwise."""
    if path is None:
        raise ValueError(f"missing {what} input (expected a {'/'.join(suffixes)} file)")
    p = Path(path)
    if p.suffix.lower() not in suffixes:
        raise ValueError(f"{what} input {p} should end in {' or '.join(suffixes)}")
    if not p.is_file():
        raise FileNotFoundError(f"{what} input {p} does not exist")
    return p.resolve()


def _xml_kind(path: Path) -> str:
    """``system_xml`` or ``state_xml`` from the root element of an OpenMM XML file."""
    if not path.is_file():
        raise FileNotFoundError(f"input {path} does not exist")
    with open(path) as fh:
        head = fh.read(4096)
    for tag, key in (("<System", "system_xml"), ("<State", "state_xml")):
        if tag in head:
            return key
    raise ValueError(f"{path}: an XML input must be a serialised OpenMM System or State")


def _constraints(name: str | None) -> Any:
    from openmm import app

    if name is None or str(name).lower() == "none":
        return None
    if name not in CONSTRAINTS:
        raise ValueError(f"unknown constraints {name!r}; choose one of {', '.join(CONSTRAINTS)}")
    return getattr(app, name)


def _implicit(name: str | None) -> Any:
    from openmm import app

    if name is None:
        return None
    if name not in IMPLICIT_SOLVENTS:
        raise ValueError(f"unknown implicit solvent {name!r}; choose one of {', '.join(IMPLICIT_SOLVENTS)}")
    return getattr(app, name)


def _nonbonded(periodic: bool, options: dict) -> dict:
    """createSystem keywords: PME with a cutoff for periodic inputs, no cutoff otherwise."""
    from openmm import app, unit

    if periodic:
        return {"nonbondedMethod": app.PME, "nonbondedCutoff": options["nonbonded_cutoff_nm"] * unit.nanometer}
    return {"nonbondedMethod": app.NoCutoff}


def _solvent_words(options: dict, periodic: bool) -> str:
    if options["implicit_solvent"]:
        return f"{options['implicit_solvent']} implicit solvent"
    return f"PME, cutoff {options['nonbonded_cutoff_nm']} nm" if periodic else "no cutoff (vacuum unless solvent is in the inputs)"


def _load_amber(prmtop_path: Path, inpcrd_path: Path, options: dict) -> LoadedSystem:
    from openmm import app

    prmtop = app.AmberPrmtopFile(str(prmtop_path))
    inpcrd = app.AmberInpcrdFile(str(inpcrd_path))
    box = inpcrd.boxVectors
    system = prmtop.createSystem(
        constraints=_constraints(options["constraints"]),
        implicitSolvent=_implicit(options["implicit_solvent"]),
        **_nonbonded(box is not None, options),
    )
    topology = prmtop.topology
    if box is not None:
        topology.setPeriodicBoxVectors(box)
        system.setDefaultPeriodicBoxVectors(*box)
    positions = positions_nm(inpcrd.getPositions(asNumpy=True))
    _check_counts(system, topology, positions, prmtop_path)
    return LoadedSystem(
        topology,
        system,
        positions,
        {
            "name": prmtop_path.stem,
            "kind": "amber",
            "force_field": f"Amber prmtop {prmtop_path.name}, {_solvent_words(options, box is not None)}, "
            f"constraints {options['constraints']}",
            "inputs": {"prmtop": str(prmtop_path), "inpcrd": str(inpcrd_path), **options},
        },
    )


def _load_openmm_xml(system_path: Path, state_path: Path, pdb_path: Path) -> LoadedSystem:
    import openmm
    from openmm import app

    system = openmm.XmlSerializer.deserialize(system_path.read_text())
    state = openmm.XmlSerializer.deserialize(state_path.read_text())
    if not isinstance(system, openmm.System):
        raise ValueError(f"{system_path} is not a serialised OpenMM System")
    if not isinstance(state, openmm.State):
        raise ValueError(f"{state_path} is not a serialised OpenMM State")
    topology = app.PDBFile(str(pdb_path)).topology
    positions = positions_nm(state.getPositions(asNumpy=True))
    if system.usesPeriodicBoundaryConditions():
        # The State's box is the one that goes with its positions.
        box = state.getPeriodicBoxVectors()
        system.setDefaultPeriodicBoxVectors(*box)
        topology.setPeriodicBoxVectors(box)
    _check_counts(system, topology, positions, system_path)
    forces = sorted({f.__class__.__name__ for f in system.getForces()})
    return LoadedSystem(
        topology,
        system,
        positions,
        {
            "name": system_path.stem,
            "kind": "openmm-xml",
            "force_field": f"serialised OpenMM System {system_path.name} (forces: {', '.join(forces)})",
            "inputs": {"system_xml": str(system_path), "state_xml": str(state_path), "pdb": str(pdb_path)},
        },
    )


def _load_pdb_forcefield(pdb_path: Path, xmls: tuple[str, ...], options: dict) -> LoadedSystem:
    from openmm import app

    structure = app.PDBxFile(str(pdb_path)) if pdb_path.suffix.lower() in (".cif", ".pdbx") else app.PDBFile(str(pdb_path))
    try:
        forcefield = app.ForceField(*xmls)
    except (ValueError, OSError) as exc:
        raise ValueError(f"could not load force field {', '.join(xmls)}: {exc}") from None
    topology = structure.topology
    box = topology.getPeriodicBoxVectors()
    if not _is_periodic(box is not None, topology, options.get("periodic")):
        topology.setPeriodicBoxVectors(None)
        box = None
    try:
        system = forcefield.createSystem(
            topology, constraints=_constraints(options["constraints"]), **_nonbonded(box is not None, options)
        )
    except ValueError as exc:
        # Usually "No template found for residue ...": say which inputs were involved, and (it had relayed only
        # OpenMM's words) that a ligand needs parameters of its own.
        remedy = (" A ligand or other residue these force fields do not know needs parameters of its own: add a "
                  "force-field XML for it to --forcefield (e.g. written with openmmforcefields' GAFF or SMIRNOFF "
                  "template generator), or give inputs that carry them (Amber .prmtop + .inpcrd, GROMACS .top + .gro, "
                  "or a serialised OpenMM System .xml + State .xml + .pdb)") if "No template found" in str(exc) else ""
        raise ValueError(f"{pdb_path.name} with {', '.join(xmls)}: {exc}{remedy}") from None
    positions = positions_nm(structure.getPositions(asNumpy=True))
    _check_counts(system, topology, positions, pdb_path)
    return LoadedSystem(
        topology,
        system,
        positions,
        {
            "name": pdb_path.stem,
            "kind": "pdb-forcefield",
            "force_field": f"{' + '.join(xmls)}, {_solvent_words(options, box is not None)}, constraints {options['constraints']}",
            "inputs": {"pdb": str(pdb_path), "forcefield": list(xmls), **{k: v for k, v in options.items() if k != "implicit_solvent"}},
        },
    )


@contextlib.contextmanager
def _gromacs_topdir(include_dir: str | None) -> Iterator[None]:
    """Point ParmEd at a GROMACS topology directory for the duration of one load (as ParmEd's own tools do)."""
    import parmed.gromacs as gmx

    old = gmx.GROMACS_TOPDIR
    if include_dir is not None:
        gmx.GROMACS_TOPDIR = include_dir
    try:
        yield
    finally:
        gmx.GROMACS_TOPDIR = old


def _load_gromacs(top_path: Path, gro_path: Path, options: dict, include_dir: str | None) -> LoadedSystem:
    import numpy as np

    try:
        import parmed
    except ImportError:  # pragma: no cover - parmed is installed with openmmtools
        raise ImportError("GROMACS inputs need ParmEd: pip install parmed") from None

    with _gromacs_topdir(include_dir):
        structure = parmed.load_file(str(top_path), xyz=str(gro_path))
    box = structure.box
    has_box = box is not None and bool(np.all(np.asarray(box[:3]) > 0))
    periodic = _is_periodic(has_box, structure.topology, options.get("periodic"))
    if not periodic:
        structure.box = None
    system = structure.createSystem(
        constraints=_constraints(options["constraints"]),
        implicitSolvent=_implicit(options["implicit_solvent"]),
        **_nonbonded(periodic, options),
    )
    topology = structure.topology
    if periodic:
        vectors = structure.box_vectors
        system.setDefaultPeriodicBoxVectors(*vectors)
        topology.setPeriodicBoxVectors(vectors)
    positions = positions_nm(np.asarray(structure.coordinates) / 10.0)  # ParmEd coordinates are Å
    _check_counts(system, topology, positions, top_path)
    inputs = {"top": str(top_path), "gro": str(gro_path), **options}
    if include_dir is not None:
        inputs["gromacs_include_dir"] = include_dir
    return LoadedSystem(
        topology,
        system,
        positions,
        {
            "name": top_path.stem,
            "kind": "gromacs",
            "force_field": f"GROMACS topology {top_path.name} via ParmEd, {_solvent_words(options, periodic)}, "
            f"constraints {options['constraints']}",
            "inputs": inputs,
        },
    )


WATER_RESIDUES = frozenset({"HOH", "WAT", "SOL", "TIP3", "TIP4", "TIP5", "SPC", "T3P", "T4P"})


def _is_periodic(has_box: bool, topology: Any, periodic: bool | None) -> bool:
    """Whether to simulate with the box: as asked, else when there is a box and explicit water."""
    if periodic is not None:
        if periodic and not has_box:
            raise ValueError("periodic=True but the inputs have no box")
        return periodic
    return has_box and any(r.name in WATER_RESIDUES for r in topology.residues())


def _check_counts(system: Any, topology: Any, positions: Any, where: Path) -> None:
    """Topology, System and coordinates must describe the same particles, in the same order."""
    n_top, n_sys, n_pos = topology.getNumAtoms(), system.getNumParticles(), len(positions)
    if not n_top == n_sys == n_pos:
        raise ValueError(
            f"{where.name}: inconsistent inputs: topology has {n_top} atoms, System {n_sys} particles, "
            f"coordinates {n_pos} positions"
        )
    bad = np.flatnonzero(~np.isfinite(np.asarray(positions, dtype=np.float64)).all(axis=1))
    if len(bad):  # (had been OpenMM's "Particle position is NaN", naming no file, at the first step)
        raise ValueError(f"{where.name}: the coordinates of {len(bad)} atom(s) are not finite (first: atom {bad[0]}, "
                         "0-based): give coordinates with every atom in place")
    _check_residue_masses(system, topology, where)
    _check_residue_bonds(system, topology, where)


#: The end of both topology/System order errors: what it means and what to do.
_ORDER_ADVICE = ("in another order than the System (or belongs to another system). Give the topology written with "
                 "this System (e.g. by the script that made it).")

#: Largest difference (amu) between a residue's mass by its elements and by the System's particles.
_RESIDUE_MASS_TOLERANCE_AMU = 0.5


def _check_residue_masses(system: Any, topology: Any, where: Path) -> None:
    """Each residue's atoms must weigh in the System what their elements weigh: the same count in another
    order (a PDB with the ligand's lines moved) passes every count check and mislabels every atom.

    Sums per residue, not per atom, because hydrogen mass repartitioning moves mass between an atom
    and its hydrogens, which share its residue; residues with an atom of unknown element are skipped.
    """
    from openmm import unit

    for residue in topology.residues():
        atoms = list(residue.atoms())
        if any(a.element is None for a in atoms):
            continue
        by_element = sum(a.element.mass.value_in_unit(unit.dalton) for a in atoms)
        in_system = sum(system.getParticleMass(a.index).value_in_unit(unit.dalton) for a in atoms)
        if abs(by_element - in_system) > _RESIDUE_MASS_TOLERANCE_AMU:
            first = atoms[0].index
            raise ValueError(
                f"{where.name}: the topology's residue {residue.name} {residue.id} (atoms {first}–{atoms[-1].index}) "
                f"weighs {by_element:.2f} amu by its elements, but the System's particles {first}–{atoms[-1].index} "
                f"weigh {in_system:.2f} amu: the topology lists the atoms {_ORDER_ADVICE}"
            )


def _system_bonded_pairs(system: Any) -> set[tuple[int, int]]:
    """Every pair of particles the System bonds: its constraints and the bonds of its (custom) bond forces."""
    import openmm

    pairs = set()
    for i in range(system.getNumConstraints()):
        a, b, _ = system.getConstraintParameters(i)
        pairs.add((min(a, b), max(a, b)))
    for force in system.getForces():
        if isinstance(force, (openmm.HarmonicBondForce, openmm.CustomBondForce)):
            for i in range(force.getNumBonds()):
                a, b = force.getBondParameters(i)[:2]
                pairs.add((min(a, b), max(a, b)))
    return pairs


def _check_residue_bonds(system: Any, topology: Any, where: Path) -> None:
    """Each bond the topology draws inside a residue must join two particles the System bonds.

    Atoms in another order *within* a residue keep every residue's mass (so
    :func:`_check_residue_masses` passes) but give the model wrong atom names.  Bonds
    between residues are not compared: a PDB's ``CONECT`` records often join a metal to
    its ligands where the force field has no bond.  Atoms without an element (virtual
    sites, Drude particles) are left out, and so is a System without any bond term.
    """
    bonded = _system_bonded_pairs(system)
    if not bonded:
        return
    for a, b in topology.bonds():
        if a.residue is not b.residue or a.element is None or b.element is None:
            continue
        a, b = sorted((a, b), key=lambda atom: atom.index)
        if (a.index, b.index) not in bonded:
            residue = a.residue
            raise ValueError(
                f"{where.name}: the topology bonds atoms {a.name} ({a.index}) and {b.name} ({b.index}) of residue "
                f"{residue.name} {residue.id}, but the System has no bond or constraint between particles {a.index} "
                f"and {b.index}: the topology lists the residue's atoms {_ORDER_ADVICE}"
            )
