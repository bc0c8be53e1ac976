"""Auxiliary structure losses on the denoised estimate, in nm.

They are weighted by τ (an estimate from nearly pure noise says little about
structure) and count only unknown entries.
"""

from __future__ import annotations

import torch


def _entry_weight(tau: torch.Tensor, known: torch.Tensor, atom_mask: torch.Tensor) -> torch.Tensor:
    """``[B, T, N]`` weight τ on unknown real entries, 0 elsewhere."""
    return tau * (~known & atom_mask.unsqueeze(1)).to(tau.dtype)


def bond_length_loss(
    pred_nm: torch.Tensor, true_nm: torch.Tensor, bonds: torch.Tensor, tau: torch.Tensor, known: torch.Tensor,
    atom_mask: torch.Tensor,
) -> torch.Tensor:
    """Mean |length error| (nm) of bonds ``[B, E, 2]`` (``-1`` padded) in ``[B, T, N, 3]`` frames."""
    valid = (bonds[..., 0] >= 0).to(pred_nm.dtype)  # [B,E]
    i, j = bonds.clamp(min=0).unbind(-1)

    def lengths(x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        xi = torch.gather(x, 2, i.view(b, 1, -1, 1).expand(b, t, -1, 3))
        xj = torch.gather(x, 2, j.view(b, 1, -1, 1).expand(b, t, -1, 3))
        return torch.linalg.vector_norm(xi - xj, dim=-1)  # [B,T,E]

    w_entry = _entry_weight(tau, known, atom_mask)
    b, t = w_entry.shape[:2]
    w = torch.minimum(
        torch.gather(w_entry, 2, i.view(b, 1, -1).expand(b, t, -1)), torch.gather(w_entry, 2, j.view(b, 1, -1).expand(b, t, -1))
    ) * valid.unsqueeze(1)
    err = (lengths(pred_nm) - lengths(true_nm)).abs()
    return (err * w).sum() / w.sum().clamp(min=1e-6)


def clash_loss(
    pred_nm: torch.Tensor, pair_idx: torch.Tensor, pair_mask: torch.Tensor, clash_nm: float, tau: torch.Tensor,
    known: torch.Tensor, atom_mask: torch.Tensor,
) -> torch.Tensor:
    """Mean squared overlap ``relu(clash_nm − d)`` over non-bonded pairs.

    ``pair_idx [B, N, K]`` lists candidate partners of each atom (from the true
    frame's neighbour list) and ``pair_mask [B, N, K]`` keeps pairs more than three
    bonds apart.
    """
    b, t, n, _ = pred_nm.shape
    k = pair_idx.shape[-1]
    partners = torch.gather(pred_nm, 2, pair_idx.view(b, 1, n * k, 1).expand(b, t, n * k, 3)).view(b, t, n, k, 3)
    d = torch.linalg.vector_norm(partners - pred_nm.unsqueeze(3), dim=-1)  # [B,T,N,K]
    overlap = torch.relu(clash_nm - d) ** 2
    w = _entry_weight(tau, known, atom_mask).unsqueeze(-1) * pair_mask.unsqueeze(1).to(d.dtype)
    return (overlap * w).sum() / w.sum().clamp(min=1e-6)


def centroid_loss(
    pred_nm: torch.Tensor, true_nm: torch.Tensor, group_mask: torch.Tensor, tau: torch.Tensor, known: torch.Tensor
) -> torch.Tensor:
    """Squared distance (nm²) between predicted and true centroids of a group (the ligand).

    ``group_mask [B, N]`` selects the group's atoms; examples without one count 0.
    """
    g = group_mask.to(pred_nm.dtype)  # [B,N]
    count = g.sum(-1).clamp(min=1.0).view(-1, 1, 1)
    c_pred = (pred_nm * g.view(g.shape[0], 1, -1, 1)).sum(2) / count
    c_true = (true_nm * g.view(g.shape[0], 1, -1, 1)).sum(2) / count
    unknown = (~known).to(pred_nm.dtype) * g.unsqueeze(1)
    w = (tau * unknown).sum(-1) / count.view(-1, 1)  # [B,T] mean τ of unknown group atoms
    err = ((c_pred - c_true) ** 2).sum(-1)
    return (err * w).sum() / w.sum().clamp(min=1e-6)
