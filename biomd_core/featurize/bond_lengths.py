"""Whether frames fit a topology's bonds, and its bonds its residues, without a force field (for inputs that
come with no System).

A covalent bond is at most ~0.2 nm long (an S–S or C–I bond), so a bonded pair farther apart than
:data:`MAX_BOND_NM` means the coordinates belong to another topology, to this one with its atoms in
another order, or to a frame torn apart.  (With an OpenMM System, ``openmm_biomd.data.frame_checks``
compares each bond with its force-field length instead.)
"""

from __future__ import annotations

import numpy as np

#: Longest plausible covalent bond, nm.
MAX_BOND_NM = 0.3


def check_bonds_fit(frames_nm: np.ndarray, bonds: np.ndarray, what: str, max_nm: float = MAX_BOND_NM) -> None:
    """Raise ``ValueError`` naming the first frame of ``frames_nm`` ``[T, N, 3]`` nm in which a bond of
    ``bonds`` ``[E, 2]`` (atom indices of the frames) is longer than ``max_nm``; ``what`` names the frames."""
    frames = np.asarray(frames_nm, dtype=np.float64)
    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    if frames.ndim != 3 or len(bonds) == 0:
        return
    lengths = np.linalg.norm(frames[:, bonds[:, 0]] - frames[:, bonds[:, 1]], axis=-1)  # [T, E]
    stretched = np.argwhere(lengths > max_nm)
    if len(stretched):
        frame, bond = (int(v) for v in stretched[0])
        a, b = (int(v) for v in bonds[bond])
        raise ValueError(
            f"frame {frame} of the {what} does not fit its topology: atoms {a} and {b} (0-based among the modelled "
            f"atoms), bonded, are {lengths[frame, bond]:.3f} nm apart (> {max_nm:g} nm). The coordinates belong to "
            "another topology, or to this one with the atoms in another order: give the topology they were "
            "written with")


def check_residues_whole(graph, topology, what: str) -> None:
    """Raise ``ValueError`` when the bonds of ``graph`` (a :class:`~biomd_core.featurize.graph.SystemGraph` of
    the mdtraj ``topology``) leave a residue in pieces: a residue named for other atoms than it holds (an ALA
    written as GLY) gets its bonds from the wrong template, and its CB had been trained on as an atom bonded to
    nothing.  Only residues whose every atom is modelled, and that have bonds at all, are judged (a selection
    may cut a residue; a coarse-grained PDB without CONECT records has no bonds to judge); massless particles
    (a water's virtual site) are left out."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    residue = np.asarray(graph.residue_index)
    bonds = np.asarray(graph.bonds, dtype=np.int64).reshape(-1, 2)
    inside = bonds[residue[bonds[:, 0]] == residue[bonds[:, 1]]]
    n = len(residue)
    adjacency = coo_matrix((np.ones(len(inside)), (inside[:, 0], inside[:, 1])), shape=(n, n))
    _, piece = connected_components(adjacency, directed=False)
    bonded = np.zeros(n, dtype=bool)
    bonded[inside.ravel()] = True
    real = np.asarray(graph.masses) > 0
    atom_indices = np.asarray(graph.atom_indices)
    for r in np.unique(residue):
        atoms = np.flatnonzero((residue == r) & real)
        if len(atoms) < 2 or not bonded[atoms].any():
            continue
        source = topology.atom(int(atom_indices[atoms[0]])).residue
        if (residue == r).sum() < source.n_atoms:  # the selection cut this residue
            continue
        pieces = np.unique(piece[atoms])
        if len(pieces) > 1:
            apart = atoms[piece[atoms] != piece[atoms[0]]]
            names = ", ".join(str(graph.atom_name_labels[a]) for a in apart[:4])
            raise ValueError(
                f"residue {source.name} {source.resSeq} (chain {source.chain.index}) of the {what} falls into "
                f"{len(pieces)} pieces by its topology's bonds ({names} bonded to none of "
                f"{graph.atom_name_labels[atoms[0]]}'s piece): its residue name does not match its atoms, or bonds "
                "are missing. Give the topology the trajectories were written with")
