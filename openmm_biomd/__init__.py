"""The OpenMM edge of BioMD: Simulation ↔ model.

This package imports OpenMM and :mod:`biomd_core`; the core never imports
OpenMM.  It holds the ``biomd`` command line; the generative propagator, the
physics gate and the openmmtools move arrive with issue #4.
"""

from biomd_core.version import __version__

__all__ = ["__version__"]
