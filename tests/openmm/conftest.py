"""Fixtures shared by the OpenMM-side tests."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import yaml


@pytest.fixture(scope="module")
def host_guest_cv():
    """The bundled CB7–B2 complex, its guest and host-pocket atoms, and their centroid-distance CV.

    Returns ``(loaded, ligand [L], pocket [P], DistanceCV)``.
    """
    from openmm_biomd.data.metadynamics import select_atoms
    from openmm_biomd.data.systems import get_system
    from openmm_biomd.enhanced.seeding_common import DistanceCV

    loaded = get_system("host-guest").load()
    ligand = select_atoms(loaded.topology, "resname B2")
    pocket = np.setdiff1d(select_atoms(loaded.topology, "resname CUC and not element H"), ligand)
    return loaded, ligand, pocket, DistanceCV(ligand, pocket)


@pytest.fixture
def toy_unbinding(tmp_path, monkeypatch):
    """A toy unbinding recipe ``toyhg`` (host–guest) in a private repository ``tmp_path/repo``, all real.

    Metadynamics campaigns with hills strong enough to push the guest out within a few ps (3 ps kept after
    the exit for training), two 2-step training stages on a tiny model (Δt = 1 ps, k = 2, blocks of 2),
    one gated unbinding attempt from one held-out start.  ``openmm_biomd.recipes`` is pointed at the
    repository and knows the recipe by name.  Returns ``SimpleNamespace(repo, recipe, grid)``.
    """
    import openmm_biomd.recipes as recipes
    from openmm_biomd.enhanced.recipe import MetadynamicsPlan, UnbindingRecipe

    repo = tmp_path / "repo"
    configs = repo / "examples" / "configs"
    configs.mkdir(parents=True)
    grid = {"frame_interval_ps": 1.0, "coarse_stride": 2, "history_frames": 1, "block_frames": 2}
    common = {
        "data": [{"trajectories": ["../../runs/data/toyhg-diss-0/seed_*"],
                  "topology": "../../runs/data/toyhg-diss-0/topology.pdb", "frame_interval_ps": 1.0}],
        "validation_fraction": 0.0, "checkpoint_every": 2, "log_every": 1, "device": "cpu",
    }
    training = {"steps": 2, "batch_size": 2, "lr": 1e-3, "warmup_steps": 1, "seed": 0}
    (configs / "toyhg.yaml").write_text(yaml.safe_dump({"model": {"preset": "tiny", "time": grid},
                                                        "training": training, **common}))
    (configs / "toyhg-stage2.yaml").write_text(yaml.safe_dump({
        "init_from": "../../runs/train/toyhg/model.safetensors", "training": {**training, "seed": 1}, **common}))
    shove = dict(max_time="30ps", height_kj_mol=20.0, bias_factor=30.0, deposit_interval_ps=0.1)
    recipe = UnbindingRecipe(
        name="toyhg", system="host-guest",
        train_campaigns=(MetadynamicsPlan(seed=0, n_seeds=1, after_exit_ps=3.0, **shove),),
        heldout_campaign=MetadynamicsPlan(seed=5, n_seeds=1, **shove),
        train_config="examples/configs/toyhg.yaml", finetune_configs=("examples/configs/toyhg-stage2.yaml",),
        n_eval_starts=1, attempts_per_start=1, max_path_time_ps=4.0, notes=["toy"],
    )
    monkeypatch.setattr(recipes, "REPO", repo)
    monkeypatch.setattr(recipes, "_unbinding_recipes", lambda: {"toyhg": recipe})
    return SimpleNamespace(repo=repo, recipe=recipe, grid=grid)
