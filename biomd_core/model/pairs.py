"""Neighbour lists and pair geometry of the start frame.

Shapes: B batch, N atoms, K neighbours (K = N in dense mode), P topological
pairs.  Distances are nm.
"""

from __future__ import annotations

import torch

#: Hop count used for pairs more than three bonds apart (or unbonded).
FAR_HOPS = 4


def build_neighbors(
    pos_nm: torch.Tensor, atom_mask: torch.Tensor, n_neighbors: int, dense: bool, chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Neighbour list of each atom in the start frame.

    Parameters
    ----------
    pos_nm : ``[B, N, 3]`` nm
    atom_mask : ``[B, N]`` bool, False for padding
    n_neighbors : K in sparse mode (nearest atoms, self included)
    dense : if True every atom is a neighbour of every atom (K = N)
    chunk : query atoms per distance block (bounds memory at ``chunk·N``)

    Returns
    -------
    neighbor_idx : ``[B, N, K]`` int64
    key_mask : ``[B, N, K]`` bool, True where the neighbour is a real atom
    """
    b, n, _ = pos_nm.shape
    if dense:
        idx = torch.arange(n, device=pos_nm.device).view(1, 1, n).expand(b, n, n)
        return idx, atom_mask.unsqueeze(1).expand(b, n, n)
    k = min(n_neighbors, n)
    far = torch.full_like(pos_nm[..., 0], 1e6)
    masked = torch.where(atom_mask.unsqueeze(-1), pos_nm, far.unsqueeze(-1))
    parts: list[torch.Tensor] = []
    for start in range(0, n, chunk):
        d = torch.cdist(masked[:, start : start + chunk], masked)  # [B,M,N]
        parts.append(torch.topk(d, k, dim=-1, largest=False).indices)
    idx = torch.cat(parts, dim=1)
    key_mask = torch.gather(atom_mask, 1, idx.reshape(b, -1)).reshape(b, n, k)
    return idx, key_mask


def neighbor_distances(pos_nm: torch.Tensor, neighbor_idx: torch.Tensor) -> torch.Tensor:
    """Distances ``[B, N, K]`` nm from each atom to its listed neighbours."""
    b, n, k = neighbor_idx.shape
    nbr = torch.gather(pos_nm, 1, neighbor_idx.reshape(b, n * k, 1).expand(b, n * k, 3)).reshape(b, n, k, 3)
    return torch.linalg.vector_norm(nbr - pos_nm.unsqueeze(2), dim=-1)


def lookup_hops(neighbor_idx: torch.Tensor, topo_pairs: torch.Tensor, n_atoms: int, far_hops: int = 4) -> torch.Tensor:
    """Bond-graph distance of each neighbour pair, clipped to :data:`FAR_HOPS`.

    Parameters
    ----------
    neighbor_idx : ``[B, N, K]`` int64
    topo_pairs : ``[B, P, 3]`` int64 rows ``(i, j, hops)`` with hops in 1..3, both
        orders present; padding rows are ``-1``.
    n_atoms : N

    far_hops : value for pairs not listed (:data:`FAR_HOPS`; an argument because
        TorchScript cannot read module globals)

    Returns
    -------
    ``[B, N, K]`` int64: 0 for the atom itself, 1–3 for bonded paths, ``far_hops`` otherwise.
    """
    b, n, k = neighbor_idx.shape
    device = neighbor_idx.device
    batch = torch.arange(b, device=device).view(b, 1)
    valid = topo_pairs[..., 0] >= 0
    keys = (batch * n_atoms + topo_pairs[..., 0]) * n_atoms + topo_pairs[..., 1]
    keys = torch.where(valid, keys, torch.full_like(keys, -1)).reshape(-1)
    hops = topo_pairs[..., 2].reshape(-1)
    order = torch.argsort(keys)
    keys, hops = keys[order], hops[order]
    rows = torch.arange(n, device=device).view(1, n, 1)
    query = (batch.view(b, 1, 1) * n_atoms + rows) * n_atoms + neighbor_idx  # [B,N,K]
    out = torch.full_like(neighbor_idx, far_hops)
    if keys.numel() > 0:
        pos = torch.searchsorted(keys, query.reshape(-1)).clamp(max=keys.numel() - 1)
        found = keys[pos] == query.reshape(-1)
        out = torch.where(found, hops[pos], out.reshape(-1)).reshape(b, n, k)
    return torch.where(neighbor_idx == rows, torch.zeros_like(out), out)


def signed_volumes(pos_nm: torch.Tensor, chiral_neighbors: torch.Tensor) -> torch.Tensor:
    """Normalised signed volume spanned by three bonded neighbours of each atom.

    This pseudoscalar flips sign under reflection and is unchanged by rotation
    and translation, so it lets an otherwise distance-based (and thus
    mirror-blind) encoder tell enantiomers apart.

    Parameters
    ----------
    pos_nm : ``[B, N, 3]`` nm
    chiral_neighbors : ``[B, N, 3]`` int64, ``-1`` where an atom has fewer than
        three bonded neighbours

    Returns
    -------
    ``[B, N]`` in [-1, 1]; 0 where undefined.
    """
    b, n, _ = pos_nm.shape
    has = (chiral_neighbors >= 0).all(dim=-1)
    idx = chiral_neighbors.clamp(min=0).reshape(b, n * 3, 1).expand(b, n * 3, 3)
    vec = torch.gather(pos_nm, 1, idx).reshape(b, n, 3, 3) - pos_nm.unsqueeze(2)
    a, bb, c = vec.unbind(2)
    vol = (a * torch.linalg.cross(bb, c)).sum(-1)
    norm = (
        torch.linalg.vector_norm(a, dim=-1) * torch.linalg.vector_norm(bb, dim=-1) * torch.linalg.vector_norm(c, dim=-1)
    )
    return torch.where(has, vol / (norm + 1e-12), torch.zeros_like(vol))
