"""Ligand dissociation paths and enhanced sampling seeded from them (issue #5).

- :mod:`.cvs` — collective variables as OpenMM forces: ligand–pocket centroid
  distance (``CustomCentroidBondForce``) and path CVs (progress ``s``, distance
  ``z``) from ``RMSDForce`` inside ``CustomCVForce``; numpy twins for analysis.
- :mod:`.torch_cv` — CVs written in PyTorch, run inside OpenMM by openmm-torch's
  ``TorchForce`` or, without it, by ``openmm.PythonForce`` (:mod:`.torch_cv_probe`
  evaluates them in a given environment, for the tests of the TorchForce path).
- :mod:`.unbind` — ``biomd unbind``: generated dissociation paths, gated frame
  by frame, with a pocket-exit success criterion; :mod:`.path_metrics` compares
  paths (RMSD at equal progress); :mod:`.recipe` makes the shipped unbinding weights.
- :mod:`.seeding_common` — CV specifications (distance, path) and inputs shared by:
- :mod:`.umbrella` — umbrella windows seeded from a path; pymbar free-energy profile;
- :mod:`.umbrella_exchange` — the same windows side by side with Hamiltonian replica exchange;
- :mod:`.steered` — constant-velocity steered MD (a physical path, for comparison);
- :mod:`.walkers` — well-tempered metadynamics walkers sharing one bias directory.
- :mod:`.interactions` — per-residue receptor–ligand interaction energies along a path.

Everything is nm, ps, K, kJ/mol.
"""
