"""Fixtures shared by the OpenMM-side tests."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def host_guest_cv():
    """The bundled CB7–B2 complex, its guest and host-pocket atoms, and their centroid-distance CV.

    Returns ``(loaded, ligand [L], pocket [P], DistanceCV)``.
    """
    from openmm_biomd.data.metadynamics import select_atoms
    from openmm_biomd.data.systems import get_system
    from openmm_biomd.enhanced.seeding_common import DistanceCV

    loaded = get_system("host-guest").load()
    ligand = select_atoms(loaded.topology, "resname B2")
    pocket = np.setdiff1d(select_atoms(loaded.topology, "resname CUC and not element H"), ligand)
    return loaded, ligand, pocket, DistanceCV(ligand, pocket)
