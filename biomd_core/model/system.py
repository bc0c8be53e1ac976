"""Network inputs for one or more systems, padded into a batch.

A :class:`SystemBatch` holds the per-atom features of ``B`` systems padded to
``N`` atoms (``atom_mask`` marks real atoms), their bonds and the 1–3 bond-hop
pairs the encoder uses.  It is built from
:class:`~biomd_core.featurize.SystemGraph` objects (numpy) once per system.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch


def topological_pairs(n_atoms: int, bonds: np.ndarray, max_hops: int = 3) -> np.ndarray:
    """Atom pairs up to ``max_hops`` bonds apart.

    Parameters
    ----------
    bonds : ``[E, 2]`` int

    Returns
    -------
    ``[P, 3]`` int64 rows ``(i, j, hops)``, both orders, ``i != j``, shortest path length.
    Uses sparse matrix products, so cost grows with atoms × neighbours, not atoms².
    """
    import scipy.sparse as sp

    if len(bonds) == 0:
        return np.zeros((0, 3), dtype=np.int64)
    ones = np.ones(len(bonds), dtype=np.int32)
    adj = sp.coo_matrix((ones, (bonds[:, 0], bonds[:, 1])), shape=(n_atoms, n_atoms))
    adj = ((adj + adj.T) > 0).astype(np.int32).tocsr()
    reached = sp.identity(n_atoms, dtype=np.int32, format="csr")
    frontier = reached
    rows = []
    for hops in range(1, max_hops + 1):
        frontier = ((frontier @ adj) > 0).astype(np.int32)
        new = (frontier - frontier.multiply(reached)).tocoo()
        new_mask = new.data > 0
        rows.append(np.stack([new.row[new_mask], new.col[new_mask], np.full(new_mask.sum(), hops)], axis=1))
        reached = ((reached + frontier) > 0).astype(np.int32)
    return np.concatenate(rows).astype(np.int64)


@dataclass
class SystemBatch:
    """Padded per-atom inputs of ``B`` systems (``N`` = largest atom count).

    Attributes
    ----------
    element, atom_name, residue_name, role, residue_index : ``[B, N]`` int64
    chem : ``[B, N, F]`` float32
    chiral_neighbors : ``[B, N, 3]`` int64 (``-1`` undefined)
    topo_pairs : ``[B, P, 3]`` int64 (``-1`` padding)
    bonds : ``[B, E, 2]`` int64 (``-1`` padding)
    atom_mask : ``[B, N]`` bool
    ligand_mask : ``[B, N]`` bool
    """

    element: torch.Tensor
    atom_name: torch.Tensor
    residue_name: torch.Tensor
    role: torch.Tensor
    residue_index: torch.Tensor
    chem: torch.Tensor
    chiral_neighbors: torch.Tensor
    topo_pairs: torch.Tensor
    bonds: torch.Tensor
    atom_mask: torch.Tensor
    ligand_mask: torch.Tensor

    @property
    def batch_size(self) -> int:
        return self.element.shape[0]

    @property
    def n_atoms(self) -> int:
        return self.element.shape[1]

    def to(self, device: torch.device | str) -> "SystemBatch":
        return SystemBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def expand(self, batch: int) -> "SystemBatch":
        """Repeat a one-system batch ``batch`` times (replicas of one system)."""
        if self.batch_size == batch:
            return self
        if self.batch_size != 1:
            raise ValueError(f"cannot expand a batch of {self.batch_size} systems to {batch}")
        return SystemBatch(**{f.name: getattr(self, f.name).expand(batch, *getattr(self, f.name).shape[1:]) for f in fields(self)})

    def select(self, index: torch.Tensor | list[int]) -> "SystemBatch":
        """Rows ``index`` of the batch (e.g. one training mini-batch)."""
        index = torch.as_tensor(index, dtype=torch.long)
        return SystemBatch(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def encoder_inputs(self) -> tuple[torch.Tensor, ...]:
        """The feature tensors in the order :meth:`VelocityNet.encode` takes them after the start frame."""
        return (
            self.element, self.atom_name, self.residue_name, self.role, self.chem,
            self.residue_index, self.chiral_neighbors, self.topo_pairs, self.atom_mask,
        )


def _pad(arrays: list[np.ndarray], length: int, fill: float | int, dtype) -> torch.Tensor:
    out = np.full((len(arrays), length) + arrays[0].shape[1:], fill, dtype=dtype)
    for row, a in enumerate(arrays):
        out[row, : len(a)] = a
    return torch.from_numpy(out)


def batch_systems(graphs: list) -> SystemBatch:
    """Pad :class:`~biomd_core.featurize.SystemGraph` objects into one :class:`SystemBatch`."""
    if not graphs:
        raise ValueError("batch_systems needs at least one system")
    n = max(g.n_atoms for g in graphs)
    pairs = [topological_pairs(g.n_atoms, np.asarray(g.bonds)) for g in graphs]
    n_pairs = max(1, max(len(p) for p in pairs))
    n_bonds = max(1, max(len(g.bonds) for g in graphs))
    pad_pairs = [p if len(p) else np.zeros((0, 3), np.int64) for p in pairs]
    pad_bonds = [np.asarray(g.bonds, np.int64).reshape(-1, 2) for g in graphs]
    return SystemBatch(
        element=_pad([g.element for g in graphs], n, 0, np.int64),
        atom_name=_pad([g.atom_name for g in graphs], n, 0, np.int64),
        residue_name=_pad([g.residue_name for g in graphs], n, 0, np.int64),
        role=_pad([g.role for g in graphs], n, 0, np.int64),
        residue_index=_pad([g.residue_index for g in graphs], n, 0, np.int64),
        chem=_pad([g.chem.astype(np.float32) for g in graphs], n, 0.0, np.float32),
        chiral_neighbors=_pad([g.chiral_neighbors for g in graphs], n, -1, np.int64),
        topo_pairs=_pad(pad_pairs, n_pairs, -1, np.int64),
        bonds=_pad(pad_bonds, n_bonds, -1, np.int64),
        atom_mask=_pad([np.ones(g.n_atoms, bool) for g in graphs], n, False, bool),
        ligand_mask=_pad([np.asarray(g.ligand_mask, bool) for g in graphs], n, False, bool),
    )
