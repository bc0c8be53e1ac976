"""Featurisation: topology -> :class:`SystemGraph` (per-atom features, bonds, modelled atoms).

>>> from biomd_core.featurize import featurize
>>> graph = featurize(simulation.topology)            # doctest: +SKIP
>>> graph = featurize("complex.pdb", selection="heavy", ligand_sdf="ligand.sdf")  # doctest: +SKIP

Never imports OpenMM: OpenMM topologies are converted by mdtraj. RDKit is
imported only when ligand atoms are present.
"""

from .graph import SELECTIONS, SystemGraph, featurize
from .ligand import CHEM_FEATURES, N_CHEM_FEATURES
from .roles import ROLE_INDEX, ROLES, residue_role
from .vocab import (
    ATOM_NAMES,
    DEFAULT_VOCABULARIES,
    ELEMENTS,
    RESIDUE_NAMES,
    UNK,
    Vocabularies,
    Vocabulary,
)

__all__ = [
    "SystemGraph", "featurize", "SELECTIONS",
    "CHEM_FEATURES", "N_CHEM_FEATURES",
    "ROLES", "ROLE_INDEX", "residue_role",
    "Vocabulary", "Vocabularies", "UNK", "ELEMENTS", "ATOM_NAMES", "RESIDUE_NAMES", "DEFAULT_VOCABULARIES",
]
