"""Ligand dissociation paths and enhanced sampling seeded from them (issue #5).

- :mod:`.cvs` — collective variables as OpenMM forces: ligand–pocket centroid
  distance (``CustomCentroidBondForce``) and path CVs (progress ``s``, distance
  ``z``) from ``RMSDForce`` inside ``CustomCVForce``; numpy twins for analysis.
- :mod:`.torch_cv` — CVs written in PyTorch, run inside OpenMM by openmm-torch's
  ``TorchForce`` or, without it, by ``openmm.PythonForce``.
- :mod:`.unbind` — ``biomd unbind``: generated dissociation paths, gated frame
  by frame, with a pocket-exit success criterion.
- :mod:`.umbrella` — umbrella windows seeded from a path; pymbar free-energy profile.
- :mod:`.walkers` — well-tempered metadynamics walkers sharing one bias directory.
- :mod:`.interactions` — per-residue receptor–ligand interaction energies along a path.

Everything is nm, ps, K, kJ/mol.
"""
