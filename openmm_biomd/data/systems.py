"""Registry of bundled molecular systems, built from openmmtools' shipped inputs.

Every system comes out as a :class:`LoadedSystem` — the ``(topology, system,
positions, description)`` quadruple that :mod:`openmm_biomd.data.inputs` also
returns for a user's own files — so data generation never branches on where a
system came from.  Add a system by adding one :class:`BundledSystem` to
:data:`BUNDLED_SYSTEMS` (a registry, not an if/else chain).

Implicit-solvent choice: ``app.OBC2`` is evaluated by OpenMM's native
``GBSAOBCForce``, whereas ``app.OBC1`` (the default of openmmtools'
``HostGuestImplicit`` and ``LysozymeImplicit``) becomes a ``CustomGBForce`` that
runs several times slower on the CPU platform, so the protein and host–guest
systems use OBC2.  ``AlanineDipeptideImplicit`` hard-codes OBC1; at 22 atoms the
custom force costs little, and keeping the class unchanged keeps the data
comparable with everyone else's use of that test system.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import numpy as np


class LoadedSystem(NamedTuple):
    """A system ready to simulate.

    Attributes
    ----------
    topology : openmm.app.Topology
        Full topology of the modelled system (every particle of ``system``).
    system : openmm.System
        Force field; periodic systems carry their box as the default box vectors.
    positions : np.ndarray
        ``[N, 3]`` float64, nm, C-contiguous.
    description : dict
        JSON-serialisable provenance: ``name``, ``kind`` (``bundled``, ``amber``,
        ``openmm-xml``, ``pdb-forcefield``, ``gromacs``), ``force_field`` (words),
        and ``inputs`` (the keyword arguments that rebuild it, so a run can be
        resumed from its metadata alone).
    """

    topology: Any
    system: Any
    positions: np.ndarray
    description: dict


@dataclass(frozen=True)
class BundledSystem:
    """One bundled system.

    Attributes
    ----------
    name : registry key, e.g. ``"host-guest"``
    description : one line for humans
    build : ``() -> (topology, system, positions)``; positions may be a Quantity
    force_field : force field and solvent model, in words (goes into metadata)
    ligand_residue : residue name of the ligand/guest, or None (no ligand)
    frame_interval_ps : recommended Δt between stored frames, ps
    pocket_selection : mdtraj selection of the pocket atoms for dissociation
        CVs, or None to take receptor heavy atoms near the ligand
    source : the openmmtools class the inputs come from
    """

    name: str
    description: str
    build: Callable[[], tuple]
    force_field: str
    ligand_residue: str | None = None
    frame_interval_ps: float = 1.0
    pocket_selection: str | None = None
    source: str = ""

    def load(self) -> LoadedSystem:
        """Build the system: :class:`LoadedSystem` with positions ``[N, 3]`` float64 nm."""
        topology, system, positions = self.build()
        return LoadedSystem(
            topology,
            system,
            positions_nm(positions),
            {
                "name": self.name,
                "kind": "bundled",
                "force_field": self.force_field,
                "source": self.source,
                "ligand_residue": self.ligand_residue,
                "inputs": {"bundled": self.name},
            },
        )


def positions_nm(positions: Any) -> np.ndarray:
    """Positions as a C-contiguous float64 ``[N, 3]`` array in nm (OpenMM crashes on other arrays)."""
    from openmm import unit

    if unit.is_quantity(positions):
        positions = positions.value_in_unit(unit.nanometer)
    array = np.ascontiguousarray(np.asarray(positions, dtype=np.float64))
    if array.ndim != 2 or array.shape[1] != 3:
        raise ValueError(f"positions must have shape [N, 3], got {array.shape}")
    return array


@contextlib.contextmanager
def _quiet_openmmtools():
    """Silence openmmtools while it imports and builds a test system.

    Its (lazy) pymbar import prints banners (JAX advice, a timeseries caveat)
    (through logging, to stderr) that would clutter every log; exceptions still propagate.
    """
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _from_testsystem(class_name: str, **kwargs: Any) -> Callable[[], tuple]:
    """A builder for an openmmtools test system (imported lazily: openmmtools is slow to import)."""

    def build() -> tuple:
        with _quiet_openmmtools():
            from openmmtools import testsystems

            ts = getattr(testsystems, class_name)(**kwargs)
        return ts.topology, ts.system, ts.positions

    return build


def _obc2():
    from openmm import app

    return app.OBC2


def _host_guest() -> tuple:
    """CB7–B2 in OBC2 implicit solvent (native GBSAOBCForce: fastest on the CPU platform)."""
    with _quiet_openmmtools():
        from openmmtools import testsystems

        # HostGuestImplicitOBC2 exists in openmmtools >= 0.15; else the generic class with OBC2.
        cls = getattr(testsystems, "HostGuestImplicitOBC2", None)
        ts = cls() if cls is not None else testsystems.HostGuestImplicit(implicitSolvent=_obc2())
    return ts.topology, ts.system, ts.positions


def _lysozyme() -> tuple:
    with _quiet_openmmtools():
        from openmmtools import testsystems

        ts = testsystems.LysozymeImplicit(implicitSolvent=_obc2())
    return ts.topology, ts.system, ts.positions


BUNDLED_SYSTEMS: dict[str, BundledSystem] = {
    s.name: s
    for s in (
        BundledSystem(
            name="alanine-dipeptide",
            description="alanine dipeptide (22 atoms) in OBC1 implicit solvent",
            build=_from_testsystem("AlanineDipeptideImplicit"),
            force_field="AMBER ff96, OBC1 GBSA implicit solvent, HBonds constraints (prmtop)",
            ligand_residue=None,
            frame_interval_ps=1.0,
            source="openmmtools.testsystems.AlanineDipeptideImplicit",
        ),
        BundledSystem(
            name="host-guest",
            description="cucurbit[7]uril (CUC) with guest B2 (156 atoms) in OBC2 implicit solvent",
            build=_host_guest,
            force_field="GAFF + AM1-BCC (host CB7, guest B2), OBC2 GBSA implicit solvent, HBonds constraints (prmtop)",
            ligand_residue="B2",
            frame_interval_ps=1.0,
            # The guest sits inside the host's cavity: the whole host is the pocket.
            pocket_selection="resname CUC and not element H",
            source="openmmtools.testsystems.HostGuestImplicitOBC2",
        ),
        BundledSystem(
            name="t4l-pxylene",
            description="T4 lysozyme L99A with p-xylene (TMP, 2621 atoms) in OBC2 implicit solvent",
            build=_lysozyme,
            force_field="AMBER ff96 protein + GAFF/AM1-BCC p-xylene, OBC2 GBSA implicit solvent, HBonds constraints",
            ligand_residue="TMP",
            frame_interval_ps=10.0,
            source="openmmtools.testsystems.LysozymeImplicit(implicitSolvent=OBC2)",
        ),
    )
}


def get_system(name: str) -> BundledSystem:
    """The bundled system called ``name``; a clear error lists the known names."""
    try:
        return BUNDLED_SYSTEMS[name]
    except KeyError:
        raise KeyError(f"unknown bundled system {name!r}; known systems: {', '.join(sorted(BUNDLED_SYSTEMS))}") from None


def as_loaded_system(source: Any) -> LoadedSystem:
    """Normalise what a user passes as a system.

    Parameters
    ----------
    source : str | BundledSystem | LoadedSystem | tuple
        A bundled system's name, a :class:`BundledSystem`, a :class:`LoadedSystem`
        (e.g. from :func:`~openmm_biomd.data.inputs.load_inputs`), or a bare
        ``(topology, system, positions)`` triple.

    Returns
    -------
    LoadedSystem
        positions ``[N, 3]`` float64 nm.
    """
    if isinstance(source, str):
        return get_system(source).load()
    if isinstance(source, BundledSystem):
        return source.load()
    if isinstance(source, LoadedSystem):
        return source._replace(positions=positions_nm(source.positions))
    if isinstance(source, tuple) and len(source) == 3:
        topology, system, positions = source
        return LoadedSystem(topology, system, positions_nm(positions), {"name": "custom", "kind": "python", "inputs": {}})
    raise TypeError(
        "a system must be a bundled system's name, a LoadedSystem (see openmm_biomd.data.load_inputs) "
        f"or a (topology, system, positions) triple, not {type(source).__name__}"
    )
