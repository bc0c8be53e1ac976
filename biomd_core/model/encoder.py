"""SE(3)-invariant graph-transformer encoder of the start frame.

It sees the start frame only through invariants: distances (radial basis), the
bond graph (hop counts), residue offsets, atom identities and — so that mirror
images differ — the signed volume at atoms with three or more bonded
neighbours.  Output: single ``s [B, N, C]`` and pair ``z [B, N, K, Cz]``
representations that condition every trajectory block.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import PairBiasedAtomAttention, gather_neighbors, masked_pair_bias
from .layers import RadialBasis, Transition
from .pairs import FAR_HOPS

#: Residue offsets beyond ±this share one embedding.
MAX_RESIDUE_OFFSET = 32


class AtomEmbedding(nn.Module):
    """Per-atom identity features → ``[B, N, C]``."""

    def __init__(self, c: int, n_elements: int, n_atom_names: int, n_residue_names: int, n_roles: int, n_chem: int):
        super().__init__()
        self.element = nn.Embedding(n_elements, c)
        self.atom_name = nn.Embedding(n_atom_names, c)
        self.residue_name = nn.Embedding(n_residue_names, c)
        self.role = nn.Embedding(n_roles, c)
        self.chem = nn.Linear(n_chem, c, bias=False)
        self.chirality = nn.Linear(2, c, bias=False)

    def forward(
        self,
        element: torch.Tensor,
        atom_name: torch.Tensor,
        residue_name: torch.Tensor,
        role: torch.Tensor,
        chem: torch.Tensor,
        chirality: torch.Tensor,
    ) -> torch.Tensor:
        chiral_feats = torch.stack([chirality, chirality.abs()], dim=-1)
        return (
            self.element(element)
            + self.atom_name(atom_name)
            + self.residue_name(residue_name)
            + self.role(role)
            + self.chem(chem)
            + self.chirality(chiral_feats)
        )


class EncoderLayer(nn.Module):
    """Pair-biased atom attention + transition, then a pair update from singles."""

    def __init__(self, c: int, c_pair: int, n_heads: int, mlp_ratio: int, atom_chunk: int) -> None:
        super().__init__()
        self.norm_attn = nn.LayerNorm(c)
        self.pair_bias = nn.Sequential(nn.LayerNorm(c_pair), nn.Linear(c_pair, n_heads, bias=False))
        self.attn = PairBiasedAtomAttention(c, n_heads, atom_chunk)
        self.norm_mlp = nn.LayerNorm(c)
        self.mlp = Transition(c, mlp_ratio)
        self.norm_pair = nn.LayerNorm(c)
        self.pair_left = nn.Linear(c, c_pair, bias=False)
        self.pair_right = nn.Linear(c, c_pair, bias=False)
        self.pair_mlp = Transition(c_pair, mlp_ratio)

    def forward(
        self, s: torch.Tensor, z: torch.Tensor, key_mask: torch.Tensor, neighbor_idx: torch.Tensor, dense: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        bias = masked_pair_bias(self.pair_bias(z), key_mask)  # [B,N,K,H]
        s = s + self.attn(self.norm_attn(s).unsqueeze(1), bias, neighbor_idx, dense).squeeze(1)
        s = s + self.mlp(self.norm_mlp(s))
        sn = self.norm_pair(s)
        right = gather_neighbors(self.pair_right(sn), neighbor_idx)  # [B,N,K,Cz]
        z = z + self.pair_left(sn).unsqueeze(2) * right
        z = z + self.pair_mlp(z)
        return s, z


class StartFrameEncoder(nn.Module):
    """Encode one frame and its topology into single and pair representations."""

    def __init__(
        self,
        c: int,
        c_pair: int,
        n_layers: int,
        n_heads: int,
        mlp_ratio: int,
        n_rbf: int,
        rbf_max_nm: float,
        atom_chunk: int,
        vocab_sizes: list[int],
        n_roles: int,
        n_chem: int,
    ) -> None:
        super().__init__()
        self.max_residue_offset = MAX_RESIDUE_OFFSET
        self.atoms = AtomEmbedding(c, vocab_sizes[0], vocab_sizes[1], vocab_sizes[2], n_roles, n_chem)
        self.rbf = RadialBasis(n_rbf, rbf_max_nm)
        self.pair_dist = nn.Linear(n_rbf, c_pair, bias=False)
        self.pair_hops = nn.Embedding(FAR_HOPS + 1, c_pair)
        self.pair_residue = nn.Embedding(2 * MAX_RESIDUE_OFFSET + 1, c_pair)
        self.pair_from_left = nn.Linear(c, c_pair, bias=False)
        self.pair_from_right = nn.Linear(c, c_pair, bias=False)
        self.layers = nn.ModuleList([EncoderLayer(c, c_pair, n_heads, mlp_ratio, atom_chunk) for _ in range(n_layers)])
        self.norm_s = nn.LayerNorm(c)
        self.norm_z = nn.LayerNorm(c_pair)

    def forward(
        self,
        element: torch.Tensor,
        atom_name: torch.Tensor,
        residue_name: torch.Tensor,
        role: torch.Tensor,
        chem: torch.Tensor,
        chirality: torch.Tensor,
        residue_index: torch.Tensor,
        dist_nm: torch.Tensor,
        hops: torch.Tensor,
        key_mask: torch.Tensor,
        neighbor_idx: torch.Tensor,
        dense: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All per-atom inputs are ``[B, N]`` (``chem`` ``[B, N, F]``); pair inputs ``[B, N, K]``.

        Returns ``s [B, N, C]`` and ``z [B, N, K, Cz]``.
        """
        s = self.atoms(element, atom_name, residue_name, role, chem, chirality)
        res_j = torch.gather(residue_index, 1, neighbor_idx.reshape(neighbor_idx.shape[0], -1)).view(neighbor_idx.shape)
        offset = (res_j - residue_index.unsqueeze(-1)).clamp(-self.max_residue_offset, self.max_residue_offset)
        z = (
            self.pair_dist(self.rbf(dist_nm))
            + self.pair_hops(hops)
            + self.pair_residue(offset + self.max_residue_offset)
            + self.pair_from_left(s).unsqueeze(2)
            + gather_neighbors(self.pair_from_right(s), neighbor_idx)
        )
        for layer in self.layers:
            s, z = layer(s, z, key_mask, neighbor_idx, dense)
        return self.norm_s(s), self.norm_z(z)
