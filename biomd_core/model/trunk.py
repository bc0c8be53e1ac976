"""Trajectory transformer: blocks alternating spatial and temporal attention.

Each token is one atom in one frame, ``h [B, T, N, C]``.  Spatial attention
mixes the atoms of a frame (with pair bias from the encoder); temporal attention
mixes one atom's frames (with a bias learned from time differences).  Every
sub-layer is conditioned, through adaptive layer norm and a gate, on the
token's noise level τ and its frame's time offset.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import PairBiasedAtomAttention, TemporalAttention, masked_pair_bias
from .layers import AdaptiveLayerNorm, FourierEmbedding, Transition


class TrajectoryBlock(nn.Module):
    """One spatial → temporal → transition block, adaLN-conditioned and gated."""

    def __init__(self, c: int, c_pair: int, n_heads: int, mlp_ratio: int, atom_chunk: int) -> None:
        super().__init__()
        self.norm_spatial = AdaptiveLayerNorm(c, c)
        self.pair_bias = nn.Sequential(nn.LayerNorm(c_pair), nn.Linear(c_pair, n_heads, bias=False))
        self.spatial = PairBiasedAtomAttention(c, n_heads, atom_chunk)
        self.norm_temporal = AdaptiveLayerNorm(c, c)
        self.time_bias = FourierEmbedding(n_heads, n_freq=8)
        self.temporal = TemporalAttention(c, n_heads)
        self.norm_mlp = AdaptiveLayerNorm(c, c)
        self.mlp = Transition(c, mlp_ratio)
        # Residual gates start nearly closed (sigmoid(-2) ≈ 0.12) for stable early training.
        self.gates = nn.Linear(c, 3 * c)
        nn.init.zeros_(self.gates.weight)
        nn.init.constant_(self.gates.bias, -2.0)

    def spatial_bias(self, z: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """This block's masked spatial-attention bias ``[B,N,K,H]`` from ``z [B,N,K,Cz]``.

        It depends on the start frame only, so a sampler computes it once per
        window, not at every ODE step (:meth:`VelocityNet.pair_biases`).
        """
        return masked_pair_bias(self.pair_bias(z), key_mask)

    def forward(
        self,
        h: torch.Tensor,
        cond: torch.Tensor,
        bias: torch.Tensor,
        neighbor_idx: torch.Tensor,
        dense: bool,
        dt_features: torch.Tensor,
    ) -> torch.Tensor:
        """``h, cond [B,T,N,C]``; ``bias [B,N,K,H]`` (:meth:`spatial_bias`); ``dt_features [B,T,T]``
        → ``[B,T,N,C]``."""
        g_spatial, g_temporal, g_mlp = torch.sigmoid(self.gates(cond)).chunk(3, dim=-1)
        h = h + g_spatial * self.spatial(self.norm_spatial(h, cond), bias, neighbor_idx, dense)
        time_bias = self.time_bias(dt_features).permute(0, 3, 1, 2)  # [B,H,T,T]
        h = h + g_temporal * self.temporal(self.norm_temporal(h, cond), time_bias)
        h = h + g_mlp * self.mlp(self.norm_mlp(h, cond))
        return h
