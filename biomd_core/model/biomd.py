"""The trajectory model a user holds: network + config + vocabularies.

:class:`BioMDModel` owns a :class:`VelocityNet` and everything needed to use
it correctly (the flow's coordinate space, the time grid it was trained on,
the vocabularies its embeddings index).  :meth:`BioMDModel.bind` attaches it
to one system and gives a :class:`BoundModel`, the object samplers use.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import nn

from ..config import ModelConfig
from ..flow.space import centroid, make_space
from .system import SystemBatch, batch_systems
from .velocity_net import VelocityNet, VocabSizes


class BioMDModel(nn.Module):
    """A BioMD model.

    Parameters
    ----------
    config : full model config (network, flow, time grid)
    vocabs : :class:`~biomd_core.featurize.Vocabularies` the embeddings index
    provenance : free-form record of the data and run that produced the weights
    """

    def __init__(self, config: ModelConfig, vocabs: Any, provenance: dict | None = None) -> None:
        super().__init__()
        from ..featurize import CHEM_FEATURES, ROLES

        self.config = config
        self.vocabs = vocabs
        self.provenance = dict(provenance or {})
        sizes = VocabSizes(
            elements=len(vocabs.element),
            atom_names=len(vocabs.atom_name),
            residue_names=len(vocabs.residue_name),
            roles=len(ROLES),
            chem_features=len(CHEM_FEATURES),
        )
        self.net = VelocityNet(config.network, sizes, config.flow.coord_scale_nm)

    @property
    def time(self):
        """The :class:`~biomd_core.config.TimeConfig` (Δt, stride k, history, block)."""
        return self.config.time

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def weights_hash(self) -> str:
        """sha256 of the weights (identifies a model in run records and YAML)."""
        h = hashlib.sha256()
        for name, tensor in sorted(self.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def featurize(self, topology: Any, **kwargs: Any):
        """:func:`~biomd_core.featurize.featurize` with this model's vocabularies."""
        from ..featurize import featurize

        return featurize(topology, vocabs=self.vocabs, **kwargs)

    def bind(self, graph_or_batch: Any) -> "BoundModel":
        """Attach to a system (a ``SystemGraph`` or a prepared ``SystemBatch``)."""
        batch = graph_or_batch if isinstance(graph_or_batch, SystemBatch) else batch_systems([graph_or_batch])
        device = next(self.parameters()).device
        return BoundModel(self, batch.to(device))


class BoundModel:
    """A model attached to one system: what samplers call (see ``TrajectoryModel``).

    ``space`` maps nm frames to network space; ``field(anchor)`` encodes the
    anchor frame once and returns the velocity field for windows anchored on it.
    """

    def __init__(self, model: BioMDModel, system: SystemBatch) -> None:
        self.model = model
        self.system = system
        flow = model.config.flow
        self.space = make_space(flow.parameterization, flow.coord_scale_nm)
        self._last_encoding: tuple | None = None  # (anchor, weight versions, encoding) of the last field

    @property
    def n_atoms(self) -> int:
        return self.system.n_atoms

    def field(self, anchor_nm: torch.Tensor):
        """Velocity field for windows anchored on ``anchor_nm [B, N, 3]`` nm."""
        net = self.model.net
        device = next(net.parameters()).device
        anchor = anchor_nm.to(device=device, dtype=torch.float32)
        if anchor.shape[1] != self.n_atoms:
            raise ValueError(f"frames have {anchor.shape[1]} atoms but the bound system has {self.n_atoms}")
        s, z, idx, key_mask, biases = self._encoding(net, anchor)

        def velocity(y: torch.Tensor, tau: torch.Tensor, t_ps: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                inputs = y.to(device), tau.to(device), t_ps.to(device)
                v = (net.denoise(*inputs, s, z, idx, key_mask) if biases is None
                     else net.denoise_biased(*inputs, s, biases, idx))
            return v.to(y.device, y.dtype)

        return velocity

    def _encoding(self, net, anchor: torch.Tensor) -> tuple:
        """``encode`` and ``pair_biases`` of ``anchor [B, N, 3]`` nm; the last one is kept, because a
        re-drawn piece (the gate refused the first draw) is anchored on the same frames again.  The
        weights' in-place version counters are part of the key, so training in between re-encodes."""
        weights = tuple(p._version for p in net.parameters())
        last = self._last_encoding
        if (last is not None and last[1] == weights and last[0].shape == anchor.shape
                and torch.equal(last[0], anchor)):
            return last[2]
        system = self.system.expand(anchor.shape[0])
        with torch.inference_mode():
            s, z, idx, key_mask = net.encode(anchor - centroid(anchor), *system.encoder_inputs())
            # Archives exported before pair_biases existed denoise from z at every step.
            biases = net.pair_biases(z, key_mask) if hasattr(net, "pair_biases") else None
        self._last_encoding = (anchor.clone(), weights, (s, z, idx, key_mask, biases))
        return self._last_encoding[2]
