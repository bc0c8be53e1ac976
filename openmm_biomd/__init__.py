"""The OpenMM edge of BioMD: Simulation ↔ model.

This package imports OpenMM and :mod:`biomd_core`; the core never imports
OpenMM.  It holds the ``biomd`` command line, the training-data generators
(:mod:`.data`), the generative propagator with its physics gate and openmmtools
move (:mod:`.propagator`), and ligand unbinding with enhanced-sampling seeding
(:mod:`.enhanced`).
"""

from biomd_core.version import __version__

__all__ = ["__version__"]
