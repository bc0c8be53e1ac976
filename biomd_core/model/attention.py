"""Attention with pair bias over atoms (dense or neighbour list) and over frames.

Shapes use B batch, T frames, N atoms, K neighbours per atom, H heads, D head
width, C = H·D channels.  In dense mode K = N and neighbour k of atom i is atom
k; in sparse mode ``neighbor_idx[b, i, k]`` names it.  Sparse attention runs in
chunks of query atoms, so peak memory grows linearly with N.
"""

from __future__ import annotations

import torch
from torch import nn

#: Largest gathered key/value block (elements) in sparse attention: 2**25 floats = 128 MiB.
_GATHER_BUDGET = 2**25


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor,
           explicit_budget: int = 2**24) -> torch.Tensor:
    """``softmax(q·kᵀ/√D + bias)·v`` over the last two dimensions.

    Parameters
    ----------
    q, k, v : ``[..., L, D]`` (the same leading dimensions)
    bias : additive, broadcastable to ``[..., L, L]``
    explicit_budget : largest score tensor (elements; 2**24 floats = 64 MiB)
        formed explicitly on the CPU

    On a GPU this is PyTorch's fused ``scaled_dot_product_attention``.  On the
    CPU, while the scores fit ``explicit_budget``, the two matrix
    products are written out: with a bias broadcast over frames or atoms,
    SDPA's CPU kernel expands and checks the mask at every call and took
    2–3.5× longer (host–guest, 4 windows × 6 frames × 156 atoms: spatial
    17.6 → 5.1 ms, temporal 5.0 → 2.5 ms a call; same values to float
    rounding).  Larger problems keep SDPA, which does not form the scores.
    """
    lead = 1
    for size in q.shape[:-1]:
        lead *= size
    if q.is_cuda or lead * k.shape[-2] > explicit_budget:
        return nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
    scores = torch.matmul(q, k.transpose(-1, -2)) * (float(q.shape[-1]) ** -0.5) + bias
    return torch.matmul(torch.softmax(scores, dim=-1), v)


def gather_neighbors(values: torch.Tensor, neighbor_idx: torch.Tensor) -> torch.Tensor:
    """Pick per-atom neighbour rows.

    Parameters
    ----------
    values : ``[B, N, ...]``
    neighbor_idx : ``[B, M, K]`` int64 in ``[0, N)``

    Returns
    -------
    ``[B, M, K, ...]``
    """
    b, n = values.shape[0], values.shape[1]
    flat = values.reshape([b * n] + list(values.shape[2:]))
    offsets = (torch.arange(b, device=values.device) * n).view(b, 1, 1)
    picked = flat.index_select(0, (neighbor_idx + offsets).reshape(-1))
    return picked.reshape(list(neighbor_idx.shape) + list(values.shape[2:]))


def masked_pair_bias(pair_bias: torch.Tensor, key_mask: torch.Tensor, mask_value: float = -1e9) -> torch.Tensor:
    """``pair_bias [B,N,K,H]`` with the keys that ``key_mask [B,N,K]`` excludes set to ``mask_value``."""
    return pair_bias.masked_fill(~key_mask.unsqueeze(-1), mask_value)


class PairBiasedAtomAttention(nn.Module):
    """Multi-head attention among the atoms of each frame, biased by pair features.

    ``forward(h [B,T,N,C], bias [B,N,K,H], neighbor_idx [B,N,K], dense) → [B,T,N,C]``,
    ``bias`` from :func:`masked_pair_bias`.  The bias and the neighbour list are
    shared by all frames (they come from the start frame).
    """

    def __init__(self, c: int, n_heads: int, atom_chunk: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = c // n_heads
        self.atom_chunk = atom_chunk
        self.gather_budget = _GATHER_BUDGET
        self.qkv = nn.Linear(c, 3 * c, bias=False)
        self.gate = nn.Linear(c, c)
        self.out = nn.Linear(c, c)

    def forward(
        self,
        h: torch.Tensor,
        bias: torch.Tensor,
        neighbor_idx: torch.Tensor,
        dense: bool,
    ) -> torch.Tensor:
        b, t, n, c = h.shape
        q, k, v = self.qkv(h).view(b, t, n, 3, self.n_heads, self.head_dim).unbind(3)  # [B,T,N,H,D] each
        if dense:
            attn_bias = bias.permute(0, 3, 1, 2).unsqueeze(1)  # [B,1,H,N,N]
            o = attend(q.transpose(2, 3), k.transpose(2, 3), v.transpose(2, 3), attn_bias)  # [B,T,H,N,D]
            o = o.transpose(2, 3)  # [B,T,N,H,D]
        else:
            o = self._sparse(q, k, v, bias, neighbor_idx)
        o = o.reshape(b, t, n, c) * torch.sigmoid(self.gate(h))
        return self.out(o)

    def _sparse(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, neighbor_idx: torch.Tensor
    ) -> torch.Tensor:
        """Neighbour-list attention, a chunk of query atoms at a time.

        The chunk is at most ``atom_chunk`` atoms and small enough that the
        gathered keys ``[B, M, K, T, H, D]`` stay within a fixed budget, so peak
        memory grows linearly with atoms whatever the window length.
        """
        b, t, n, hh, d = q.shape
        k_count = neighbor_idx.shape[-1]
        chunk = max(1, min(self.atom_chunk, self.gather_budget // max(1, b * k_count * t * hh * d)))
        k_atoms = k.permute(0, 2, 1, 3, 4)  # [B,N,T,H,D]
        v_atoms = v.permute(0, 2, 1, 3, 4)
        scale = 1.0 / float(d) ** 0.5
        outs: list[torch.Tensor] = []
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            idx = neighbor_idx[:, start:stop]  # [B,M,K]
            kk = gather_neighbors(k_atoms, idx)  # [B,M,K,T,H,D]
            vv = gather_neighbors(v_atoms, idx)
            qq = q[:, :, start:stop].permute(0, 2, 1, 3, 4)  # [B,M,T,H,D]
            scores = torch.einsum("bmthd,bmkthd->bmthk", qq, kk) * scale
            scores = scores + bias[:, start:stop].permute(0, 1, 3, 2).unsqueeze(2)  # + [B,M,1,H,K]
            weights = torch.softmax(scores, dim=-1)
            outs.append(torch.einsum("bmthk,bmkthd->bmthd", weights, vv))
        return torch.cat(outs, dim=1).permute(0, 2, 1, 3, 4)  # [B,T,N,H,D]


class TemporalAttention(nn.Module):
    """Attention of each atom across the frames of its trajectory window.

    ``forward(h [B,T,N,C], time_bias [B,H,T,T]) → [B,T,N,C]``; ``time_bias`` is
    learned from time differences so the block knows how far apart frames are.
    """

    def __init__(self, c: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = c // n_heads
        self.qkv = nn.Linear(c, 3 * c, bias=False)
        self.gate = nn.Linear(c, c)
        self.out = nn.Linear(c, c)

    def forward(self, h: torch.Tensor, time_bias: torch.Tensor) -> torch.Tensor:
        b, t, n, c = h.shape
        qkv = self.qkv(h).view(b, t, n, 3, self.n_heads, self.head_dim).permute(3, 0, 2, 4, 1, 5)
        q, k, v = qkv.unbind(0)  # [B,N,H,T,D]
        o = attend(q, k, v, time_bias.unsqueeze(1))  # [B,N,H,T,D]
        o = o.permute(0, 3, 1, 2, 4).reshape(b, t, n, c)
        return self.out(o * torch.sigmoid(self.gate(h)))
