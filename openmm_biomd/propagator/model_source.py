"""Where a propagator's model comes from: a shipped name, a checkpoint, or a TorchScript archive.

A TorchScript archive written by ``biomd export`` (``velocity_net.pt``) holds
the network and, as extra files, the config, vocabularies, weights hash and
provenance, so a deployment needs nothing but that file.  It is wrapped in
:class:`ScriptedModel`, which offers the parts of
:class:`~biomd_core.model.BioMDModel` the propagator uses (``config``,
``time``, ``vocabs``, ``provenance``, ``featurize``, ``bind``,
``weights_hash``) around the compiled network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from biomd_core.config import ModelConfig, from_dict
from biomd_core.export import ExportArchiveError, _torchscript_is_intended, read_extra_files
from biomd_core.featurize import Vocabularies
from biomd_core.io import load_model
from biomd_core.model.biomd import BioMDModel, BoundModel
from biomd_core.model.system import SystemBatch, batch_systems


class ScriptedModel:
    """A model backed by an exported TorchScript network (see the module docstring)."""

    def __init__(self, path: str | Path, device: torch.device | str = "cpu") -> None:
        extra = read_extra_files(path)
        self.config: ModelConfig = from_dict(ModelConfig, extra["biomd_config.json"])
        self.vocabs = Vocabularies.from_dict(extra["vocabularies.json"])
        meta = extra["metadata.json"]
        self.provenance = dict(meta.get("provenance", {}))
        self._hash = meta["weights_sha256"]
        with _torchscript_is_intended():
            self.net = torch.jit.load(str(path), map_location=device).eval()
        if not all(hasattr(self.net, method) for method in ("encode", "denoise")):
            # sampler_step.pt carries the same metadata, but is one ODE step for libtorch, not the network
            raise ExportArchiveError(f"{path} is not an exported velocity network (no encode/denoise methods): "
                                     "pass the velocity_net.pt that `biomd export` wrote beside it")
        self.checkpoint_path = str(path)

    @property
    def time(self):
        return self.config.time

    def weights_hash(self) -> str:
        return self._hash

    def featurize(self, topology: Any, **kwargs: Any):
        from biomd_core.featurize import featurize

        return featurize(topology, vocabs=self.vocabs, **kwargs)

    def bind(self, graph_or_batch: Any) -> BoundModel:
        batch = graph_or_batch if isinstance(graph_or_batch, SystemBatch) else batch_systems([graph_or_batch])
        return BoundModel(self, batch.to(next(self.net.parameters()).device))

    def to(self, device) -> "ScriptedModel":
        self.net = self.net.to(device)
        return self


def resolve_model(model: Any, device: torch.device | str = "cpu"):
    """A model object from a :class:`BioMDModel`, a shipped name, a ``.safetensors`` or an exported ``.pt``."""
    if isinstance(model, (BioMDModel, ScriptedModel)):
        return model.to(device)
    path = Path(str(model))
    if path.suffix == ".pt":
        if not path.is_file():
            raise FileNotFoundError(f"TorchScript model {path} does not exist (write one with `biomd export`)")
        return ScriptedModel(path, device)
    return load_model(model, device=device)


def model_label(model: Any) -> str:
    """How a model is named in records: its shipped name, else its checkpoint path."""
    from biomd_core.io.checkpoint import WEIGHTS_DIR

    path = Path(str(getattr(model, "checkpoint_path", "") or ""))
    if not path.name:
        return "<in-memory model>"
    if path.parent.resolve() == Path(WEIGHTS_DIR).resolve() and path.suffix == ".safetensors":
        return path.stem
    return str(path)
