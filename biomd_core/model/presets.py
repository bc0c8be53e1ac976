"""Named model sizes.

``tiny`` runs the test suite on a CPU, ``small`` is a one-GPU model, ``paper``
matches the published model's size (≈341 M parameters).
"""

from __future__ import annotations

from ..config import NetworkConfig

PRESETS: dict[str, NetworkConfig] = {
    "tiny": NetworkConfig(
        c_single=64, c_pair=16, n_encoder_layers=2, n_trunk_layers=3, n_heads=4, mlp_ratio=2, n_neighbors=32
    ),
    "small": NetworkConfig(
        c_single=384, c_pair=64, n_encoder_layers=3, n_trunk_layers=5, n_heads=8, mlp_ratio=2, n_neighbors=48
    ),
    "paper": NetworkConfig(
        c_single=1024, c_pair=128, n_encoder_layers=6, n_trunk_layers=10, n_heads=16, mlp_ratio=2, n_neighbors=64
    ),
}


def get_preset(name: str) -> NetworkConfig:
    """The network config of a named preset (error lists the known names)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown model preset {name!r}; known presets: {sorted(PRESETS)}") from None


def preset_parameter_count(name: str) -> int:
    """Parameters of a preset built with the default vocabularies, on the meta device (no memory)."""
    import torch

    from ..config import ModelConfig
    from ..featurize import DEFAULT_VOCABULARIES
    from .biomd import BioMDModel

    with torch.device("meta"):
        model = BioMDModel(ModelConfig(preset=name, network=get_preset(name)), DEFAULT_VOCABULARIES)
    return model.n_parameters()
