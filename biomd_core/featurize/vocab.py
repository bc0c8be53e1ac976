"""Token vocabularies for per-atom categorical features.

A :class:`Vocabulary` maps strings (element symbols, PDB atom names, residue
names) to small integers that index embedding tables. Index 0 is always the
``<unk>`` token, so an unseen token (an unusual ligand atom name, a rare
element) still featurises: it gets the shared "unknown" embedding instead of an
error. A trained checkpoint stores its vocabularies (:meth:`Vocabularies.to_dict`)
and reloads them (:meth:`Vocabularies.from_dict`), so a model keeps the indices it
was trained with even if the defaults here grow later.

Lookups are exact (case-sensitive, after stripping surrounding white space):
element symbols use the canonical capitalisation ("Cl", not "CL"), PDB atom and
residue names are as written in the topology.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

#: The token at index 0 of every vocabulary; unseen tokens map to it.
UNK = "<unk>"


class Vocabulary:
    """An immutable, ordered list of tokens with ``<unk>`` at index 0.

    Parameters
    ----------
    tokens
        The tokens in index order. ``<unk>`` is prepended when it is not already
        the first token; it may not appear anywhere else. Duplicates are an error.
    """

    __slots__ = ("_tokens", "_index")

    def __init__(self, tokens: Iterable[str]):
        tokens = [str(t) for t in tokens]
        if not tokens or tokens[0] != UNK:
            tokens = [UNK, *tokens]
        if UNK in tokens[1:]:
            raise ValueError(f"{UNK!r} may only appear at index 0 of a vocabulary")
        index = {t: i for i, t in enumerate(tokens)}
        if len(index) != len(tokens):
            seen: set[str] = set()
            dups = sorted({t for t in tokens if t in seen or seen.add(t)})
            raise ValueError(f"duplicate tokens in vocabulary: {dups}")
        object.__setattr__(self, "_tokens", tuple(tokens))
        object.__setattr__(self, "_index", index)

    def __setattr__(self, name, value):  # frozen: a vocabulary defines model inputs
        raise AttributeError("Vocabulary is immutable")

    def __reduce__(self):  # pickle through the constructor (__setattr__ is blocked)
        return (type(self), (self._tokens,))

    @property
    def tokens(self) -> tuple[str, ...]:
        """All tokens in index order, ``<unk>`` first."""
        return self._tokens

    def index(self, token: str) -> int:
        """Index of ``token`` (white space stripped); 0 (``<unk>``) if unseen."""
        return self._index.get(str(token).strip(), 0)

    def indices(self, tokens: Iterable[str]) -> np.ndarray:
        """Indices of many tokens, ``[len(tokens)]`` int64 (0 for unseen)."""
        get = self._index.get
        return np.fromiter((get(str(t).strip(), 0) for t in tokens), dtype=np.int64)

    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, token: object) -> bool:
        return isinstance(token, str) and token.strip() in self._index and token.strip() != UNK

    def __getitem__(self, i: int) -> str:
        return self._tokens[i]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._tokens == other._tokens

    def __hash__(self) -> int:
        return hash(self._tokens)

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} tokens: {', '.join(self._tokens[1:6])}, ...)"

    def to_list(self) -> list[str]:
        """Tokens as a plain list (``<unk>`` first), e.g. for a JSON checkpoint."""
        return list(self._tokens)

    @classmethod
    def from_list(cls, tokens: Sequence[str]) -> "Vocabulary":
        """Inverse of :meth:`to_list`."""
        return cls(tokens)


@dataclass(frozen=True)
class Vocabularies:
    """The three vocabularies a :class:`~biomd_core.featurize.SystemGraph` uses."""

    element: Vocabulary
    atom_name: Vocabulary
    residue_name: Vocabulary

    @property
    def sizes(self) -> dict[str, int]:
        """Embedding-table sizes, ``{"element": ..., "atom_name": ..., "residue_name": ...}``."""
        return {"element": len(self.element), "atom_name": len(self.atom_name),
                "residue_name": len(self.residue_name)}

    def to_dict(self) -> dict[str, list[str]]:
        """Plain-data form for checkpoints (see :meth:`from_dict`)."""
        return {"element": self.element.to_list(), "atom_name": self.atom_name.to_list(),
                "residue_name": self.residue_name.to_list()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Sequence[str]]) -> "Vocabularies":
        """Inverse of :meth:`to_dict`; unknown or missing keys are errors."""
        expected = {"element", "atom_name", "residue_name"}
        if set(data) != expected:
            raise ValueError(f"vocabularies need exactly the keys {sorted(expected)}, "
                             f"got {sorted(data)}")
        return cls(**{k: Vocabulary.from_list(v) for k, v in data.items()})


# ---------------------------------------------------------------------------
# Default vocabularies. Append new tokens at the END only: indices of existing
# tokens are baked into trained embedding tables.
# ---------------------------------------------------------------------------

ELEMENTS = Vocabulary([
    # organic / biomolecular
    "H", "C", "N", "O", "S", "P", "Se", "B", "Si",
    # halogens
    "F", "Cl", "Br", "I",
    # common ions and metal centres
    "Li", "Na", "K", "Rb", "Cs", "Mg", "Ca", "Sr", "Ba",
    "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Cd", "Hg", "Al",
    "Pt", "Au", "Ag", "Mo", "W", "V", "Cr", "Ga", "As",
])

_PROTEIN_ATOM_NAMES = [
    # backbone and termini
    "N", "CA", "C", "O", "OXT", "H", "H1", "H2", "H3", "HA", "HA2", "HA3", "HN", "HO",
    # side-chain heavy atoms
    "CB", "CG", "CG1", "CG2", "CD", "CD1", "CD2", "CE", "CE1", "CE2", "CE3",
    "CZ", "CZ2", "CZ3", "CH2", "OG", "OG1", "OD1", "OD2", "OE1", "OE2", "OH",
    "ND1", "ND2", "NE", "NE1", "NE2", "NH1", "NH2", "NZ", "SD", "SG",
    # side-chain hydrogens (PDB v3 names plus the older 1/2 numbering)
    "HB", "HB1", "HB2", "HB3", "HG", "HG1", "HG2", "HG3",
    "HG11", "HG12", "HG13", "HG21", "HG22", "HG23",
    "HD1", "HD2", "HD3", "HD11", "HD12", "HD13", "HD21", "HD22", "HD23",
    "HE", "HE1", "HE2", "HE3", "HE21", "HE22",
    "HH", "HH11", "HH12", "HH21", "HH22", "HH2",
    "HZ", "HZ1", "HZ2", "HZ3",
    # ACE / NME caps (both naming conventions)
    "CH3", "HH31", "HH32", "HH33",
]
_NUCLEIC_ATOM_NAMES = [
    "P", "OP1", "OP2", "OP3", "O1P", "O2P", "O5'", "C5'", "C4'", "O4'", "C3'", "O3'",
    "C2'", "O2'", "C1'", "H5'", "H5''", "H4'", "H3'", "H2'", "H2''", "HO2'", "H1'",
    "HO5'", "HO3'", "H5T", "H3T",
    "N1", "N2", "N3", "N4", "N6", "N7", "N9", "C2", "C4", "C5", "C6", "C7", "C8",
    "O2", "O4", "O6", "H5", "H6", "H8", "H21", "H22", "H41", "H42", "H61", "H62",
    "H71", "H72", "H73",
]
_SOLVENT_ION_ATOM_NAMES = [
    "OW", "HW1", "HW2", "MW", "EPW",
    "NA", "CL", "K", "MG", "ZN", "LI", "RB", "CS", "BR", "IOD", "F",
    "Na+", "Cl-", "K+", "SOD", "CLA", "POT", "CAL",
]


def _unique(seq: Iterable[str]) -> list[str]:
    """Order-preserving de-duplication (protein and nucleic names overlap)."""
    return list(dict.fromkeys(seq))


ATOM_NAMES = Vocabulary(_unique(_PROTEIN_ATOM_NAMES + _NUCLEIC_ATOM_NAMES + _SOLVENT_ION_ATOM_NAMES))

RESIDUE_NAMES = Vocabulary([
    # 20 standard amino acids
    "ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE",
    "LEU", "LYS", "MET", "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL",
    # protonation / disulfide variants (AMBER and CHARMM spellings)
    "HID", "HIE", "HIP", "HSD", "HSE", "HSP", "CYX", "CYM", "ASH", "GLH", "LYN",
    # caps
    "ACE", "NME", "NH2", "NHE",
    # nucleotides
    "DA", "DC", "DG", "DT", "DU", "A", "C", "G", "U", "RA", "RC", "RG", "RU",
    # water
    "HOH", "WAT", "SOL", "TIP3", "TIP4", "TIP5", "SPC",
    # ions
    "NA", "CL", "K", "MG", "CA", "ZN", "LI", "RB", "CS", "BR", "IOD", "F",
    "Na+", "Cl-", "K+", "SOD", "CLA", "POT", "CAL",
])

#: The vocabularies used when a caller passes none.
DEFAULT_VOCABULARIES = Vocabularies(element=ELEMENTS, atom_name=ATOM_NAMES,
                                    residue_name=RESIDUE_NAMES)
