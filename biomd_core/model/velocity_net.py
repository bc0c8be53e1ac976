"""The BioMD velocity network.

``VelocityNet`` maps a noisy trajectory window to a flow-matching velocity for
every entry.  It works in *network space*: coordinates (``abs``) or
displacements from the anchor frame (``rel``) divided by ``coord_scale_nm``, as
prepared by :mod:`biomd_core.flow`.  The start frame is given in nm, centred.

Inference is split so that samplers can encode the start frame once and reuse
it for every ODE step: :meth:`encode`, then :meth:`pair_biases` (the trunk's
attention biases, which depend on the start frame only), then
:meth:`denoise_biased` at every step.  :meth:`denoise` does the last two and
:meth:`forward` all three.  The whole module is TorchScript-compatible.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import NetworkConfig
from .encoder import StartFrameEncoder
from .layers import AdaptiveLayerNorm, FourierEmbedding, time_features
from .pairs import build_neighbors, lookup_hops, neighbor_distances, signed_volumes
from .trunk import TrajectoryBlock


@dataclass(frozen=True)
class VocabSizes:
    """Sizes of the embedding tables a network is built for."""

    elements: int
    atom_names: int
    residue_names: int
    roles: int
    chem_features: int


class VelocityNet(nn.Module):
    """Start-frame encoder + trajectory transformer → velocity ``[B, T, N, 3]``."""

    def __init__(self, config: NetworkConfig, vocab: VocabSizes, coord_scale_nm: float) -> None:
        super().__init__()
        c = config.c_single
        self.n_neighbors = config.n_neighbors
        self.dense_max_atoms = config.dense_max_atoms
        self.attention_mode = config.attention
        self.atom_chunk = config.atom_chunk
        self.max_time_ps = config.max_time_ps
        self.coord_scale_nm = coord_scale_nm
        self.encoder = StartFrameEncoder(
            c,
            config.c_pair,
            config.n_encoder_layers,
            config.n_heads,
            config.mlp_ratio,
            config.n_rbf,
            config.rbf_max_nm,
            config.atom_chunk,
            [vocab.elements, vocab.atom_names, vocab.residue_names],
            vocab.roles,
            vocab.chem_features,
        )
        self.coord_in = nn.Linear(3, c, bias=False)
        self.start_coord_in = nn.Linear(3, c, bias=False)
        self.tau_embed = FourierEmbedding(c)
        self.time_embed = FourierEmbedding(c)
        self.cond_from_single = nn.Linear(c, c, bias=False)
        self.blocks = nn.ModuleList(
            [
                TrajectoryBlock(c, config.c_pair, config.n_heads, config.mlp_ratio, config.atom_chunk)
                for _ in range(config.n_trunk_layers)
            ]
        )
        self.norm_out = AdaptiveLayerNorm(c, c)
        self.out = nn.Linear(c, 3)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def use_dense(self, n_atoms: int) -> bool:
        """Whether a system of ``n_atoms`` runs with dense attention."""
        if self.attention_mode == "dense":
            return True
        if self.attention_mode == "sparse":
            return False
        return n_atoms <= self.dense_max_atoms

    @torch.jit.export
    def encode_invariant(
        self,
        start_nm: torch.Tensor,
        element: torch.Tensor,
        atom_name: torch.Tensor,
        residue_name: torch.Tensor,
        role: torch.Tensor,
        chem: torch.Tensor,
        residue_index: torch.Tensor,
        chiral_neighbors: torch.Tensor,
        topo_pairs: torch.Tensor,
        atom_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """SE(3)-invariant encoding of the start frame (mirror images differ).

        Parameters
        ----------
        start_nm : ``[B, N, 3]`` nm
        element, atom_name, residue_name, role, residue_index : ``[B, N]`` int64
        chem : ``[B, N, F]`` float
        chiral_neighbors : ``[B, N, 3]`` int64 (``-1`` where undefined)
        topo_pairs : ``[B, P, 3]`` int64 rows ``(i, j, hops)``, ``-1`` padding
        atom_mask : ``[B, N]`` bool

        Returns
        -------
        s ``[B, N, C]``, z ``[B, N, K, Cz]``, neighbor_idx ``[B, N, K]``, key_mask ``[B, N, K]``
        """
        n = start_nm.shape[1]
        dense = self.use_dense(n)
        neighbor_idx, key_mask = build_neighbors(start_nm, atom_mask, self.n_neighbors, dense, self.atom_chunk)
        dist = neighbor_distances(start_nm, neighbor_idx)
        hops = lookup_hops(neighbor_idx, topo_pairs, n)
        chirality = signed_volumes(start_nm, chiral_neighbors)
        s, z = self.encoder(
            element, atom_name, residue_name, role, chem, chirality, residue_index, dist, hops, key_mask, neighbor_idx, dense
        )
        return s, z, neighbor_idx, key_mask

    @torch.jit.export
    def encode(
        self,
        start_nm: torch.Tensor,
        element: torch.Tensor,
        atom_name: torch.Tensor,
        residue_name: torch.Tensor,
        role: torch.Tensor,
        chem: torch.Tensor,
        residue_index: torch.Tensor,
        chiral_neighbors: torch.Tensor,
        topo_pairs: torch.Tensor,
        atom_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`encode_invariant` plus the start frame's (centred) coordinates in ``s``.

        The trunk is not rotation-equivariant (rotations are learned through
        augmentation), so it needs the start frame's orientation to orient its
        output.  Inputs and outputs as in :meth:`encode_invariant`.
        """
        s, z, neighbor_idx, key_mask = self.encode_invariant(
            start_nm, element, atom_name, residue_name, role, chem, residue_index, chiral_neighbors, topo_pairs, atom_mask
        )
        return s + self.start_coord_in(start_nm / self.coord_scale_nm), z, neighbor_idx, key_mask

    @torch.jit.export
    def pair_biases(self, z: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """Every trunk block's masked spatial-attention bias: ``z [B,N,K,Cz]`` → ``[L, B, N, K, H]``."""
        biases: list[torch.Tensor] = []
        for block in self.blocks:
            biases.append(block.spatial_bias(z, key_mask))
        return torch.stack(biases)

    @torch.jit.export
    def denoise(
        self,
        x: torch.Tensor,
        tau: torch.Tensor,
        t_ps: torch.Tensor,
        s: torch.Tensor,
        z: torch.Tensor,
        neighbor_idx: torch.Tensor,
        key_mask: torch.Tensor,
    ) -> torch.Tensor:
        """Velocity for a noisy window.

        Parameters
        ----------
        x : ``[B, T, N, 3]`` network-space coordinates at noise level ``tau``
        tau : ``[B, T, N]`` noise level per entry (1 = known)
        t_ps : ``[B, T]`` time of each frame relative to the anchor frame, ps
        s, z, neighbor_idx, key_mask : from :meth:`encode`

        Returns
        -------
        ``[B, T, N, 3]`` velocity in network space per unit τ
        """
        return self.denoise_biased(x, tau, t_ps, s, self.pair_biases(z, key_mask), neighbor_idx)

    @torch.jit.export
    def denoise_biased(
        self,
        x: torch.Tensor,
        tau: torch.Tensor,
        t_ps: torch.Tensor,
        s: torch.Tensor,
        biases: torch.Tensor,
        neighbor_idx: torch.Tensor,
    ) -> torch.Tensor:
        """:meth:`denoise` with the biases of :meth:`pair_biases` (``[L, B, N, K, H]``) given."""
        dense = self.use_dense(x.shape[2])
        tf = time_features(t_ps, self.max_time_ps)  # [B,T]
        cond = (
            self.tau_embed(tau)
            + self.time_embed(tf).unsqueeze(2)
            + self.cond_from_single(s).unsqueeze(1)
        )  # [B,T,N,C]
        h = s.unsqueeze(1) + self.coord_in(x)
        dt_features = tf.unsqueeze(2) - tf.unsqueeze(1)  # [B,T,T]
        for i, block in enumerate(self.blocks):
            h = block(h, cond, biases[i], neighbor_idx, dense, dt_features)
        return self.out(self.norm_out(h, cond))

    def forward(
        self,
        x: torch.Tensor,
        tau: torch.Tensor,
        t_ps: torch.Tensor,
        start_nm: torch.Tensor,
        element: torch.Tensor,
        atom_name: torch.Tensor,
        residue_name: torch.Tensor,
        role: torch.Tensor,
        chem: torch.Tensor,
        residue_index: torch.Tensor,
        chiral_neighbors: torch.Tensor,
        topo_pairs: torch.Tensor,
        atom_mask: torch.Tensor,
    ) -> torch.Tensor:
        """:meth:`encode` then :meth:`denoise`; shapes as there. Returns ``[B, T, N, 3]``."""
        s, z, idx, key_mask = self.encode(
            start_nm, element, atom_name, residue_name, role, chem, residue_index, chiral_neighbors, topo_pairs, atom_mask
        )
        return self.denoise(x, tau, t_ps, s, z, idx, key_mask)
