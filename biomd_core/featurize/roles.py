"""Residue roles: protein, nucleic, ligand, solvent, ion.

Each residue gets one role, decided by an ordered list of rules
(:data:`ROLE_RULES`); the first rule that matches wins and everything no rule
claims is a **ligand** -- so unknown residues (cofactors, drug-like molecules,
host-guest systems, modified residues) always featurise.

Rules look at the residue name and, where names are not enough, at the
residue's element composition (a one-atom residue of an ion element is an ion;
an O + 2 H residue is water whatever it is called).
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Sequence

ROLES: tuple[str, ...] = ("protein", "nucleic", "ligand", "solvent", "ion")
ROLE_INDEX: dict[str, int] = {name: i for i, name in enumerate(ROLES)}

AMINO_ACIDS = frozenset({
    "ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE",
    "LEU", "LYS", "MET", "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL",
})
#: Protonation states, disulfide cysteine and common CHARMM/AMBER spellings.
AMINO_ACID_VARIANTS = frozenset({
    "HID", "HIE", "HIP", "HSD", "HSE", "HSP", "CYX", "CYM", "ASH", "GLH", "LYN", "ARN", "TYM",
})
CAPS = frozenset({"ACE", "NME", "NH2", "NHE", "NMA"})
PROTEIN_RESIDUES = AMINO_ACIDS | AMINO_ACID_VARIANTS | CAPS

NUCLEIC_RESIDUES = frozenset({
    "DA", "DC", "DG", "DT", "DU", "A", "C", "G", "U", "RA", "RC", "RG", "RU",
    "ADE", "CYT", "GUA", "THY", "URA",
})
WATER_RESIDUES = frozenset({
    "HOH", "WAT", "SOL", "H2O", "TIP", "TIP3", "TIP4", "TIP5", "TIP3P", "TIP4P", "TP3",
    "T3P", "T4P", "T4E", "T5P", "SPC", "SPCE", "OPC", "DOD",
})
#: Residue names used for monatomic ions by PDB, AMBER and CHARMM.
ION_RESIDUES = frozenset({
    "NA", "CL", "K", "MG", "CA", "ZN", "LI", "RB", "CS", "BR", "IOD", "F", "MN", "FE",
    "FE2", "CO", "NI", "CU", "CU1", "CD", "SR", "BA", "HG", "AL",
    "Na+", "Cl-", "K+", "Li+", "Rb+", "Cs+", "F-", "Br-", "I-", "NA+", "CL-",
    "SOD", "CLA", "POT", "CAL", "CES", "LIT", "RUB", "ZN2", "MG2",
})
#: Elements that, alone in a residue, are an ion.
ION_ELEMENTS = frozenset({
    "Li", "Na", "K", "Rb", "Cs", "Mg", "Ca", "Sr", "Ba", "Mn", "Fe", "Co", "Ni", "Cu",
    "Zn", "Cd", "Hg", "Al", "F", "Cl", "Br", "I",
})


def _is_protein(name: str) -> bool:
    # AMBER names terminal residues with an N/C prefix ("NALA", "CLYS").
    return name in PROTEIN_RESIDUES or (
        len(name) == 4 and name[0] in "NC" and name[1:] in PROTEIN_RESIDUES)


def _is_nucleic(name: str) -> bool:
    # AMBER marks 5'/3' terminal nucleotides with a trailing 5 or 3 ("DA5", "RU3").
    return name in NUCLEIC_RESIDUES or (name[-1:] in ("5", "3") and name[:-1] in NUCLEIC_RESIDUES)


def _is_water_composition(elements: Sequence[str | None]) -> bool:
    # Virtual sites (element None / "VS") of 4- and 5-site models are ignored.
    real = Counter(e for e in elements if e not in (None, "", "VS"))
    return real == Counter({"O": 1, "H": 2})


def _is_ion(name: str, elements: Sequence[str | None]) -> bool:
    return len(elements) == 1 and (elements[0] in ION_ELEMENTS or name in ION_RESIDUES)


#: Ordered (role, predicate(residue_name, element_symbols)) rules. Name-based
#: water comes first (a heavy-atom-only PDB water is still water); ions before
#: nucleotides so a lone iodide named "I" is not mistaken for inosine.
ROLE_RULES: tuple[tuple[str, Callable[[str, Sequence[str | None]], bool]], ...] = (
    ("solvent", lambda name, els: name in WATER_RESIDUES),
    ("ion", _is_ion),
    ("protein", lambda name, els: _is_protein(name)),
    ("nucleic", lambda name, els: _is_nucleic(name)),
    ("solvent", lambda name, els: _is_water_composition(els)),
)


def residue_role(name: str, element_symbols: Sequence[str | None]) -> int:
    """Role index (into :data:`ROLES`) of one residue.

    Parameters
    ----------
    name
        Residue name as in the topology (white space is stripped).
    element_symbols
        Element symbol of each atom in the residue (None for virtual sites).

    Returns
    -------
    int
        ``ROLE_INDEX[role]``; ``ROLE_INDEX["ligand"]`` when no rule matches.
    """
    name = name.strip()
    for role, rule in ROLE_RULES:
        if rule(name, element_symbols):
            return ROLE_INDEX[role]
    return ROLE_INDEX["ligand"]
