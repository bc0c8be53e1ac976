"""Every shipped example config loads strictly and builds its model."""

from __future__ import annotations

from pathlib import Path

import pytest

from biomd_core.training.run import build_model, load_run_config

CONFIGS = sorted((Path(__file__).parent.parent / "examples" / "configs").glob("*.yaml"))


def test_there_are_example_configs():
    assert len(CONFIGS) >= 3


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_example_config_loads_and_builds(path, tmp_path, tiny_model):
    config = load_run_config(path)
    assert config.data and all(spec.trajectories for spec in config.data)
    if config.init_from:
        # Fine-tuning configs point at a run's output: build from a stand-in checkpoint.
        from biomd_core.io import save_model

        stand_in = save_model(tiny_model, tmp_path / "model.safetensors")
        config = type(config)(**{**config.__dict__, "init_from": str(stand_in)})
    model = build_model(config)
    assert model.n_parameters() > 0
