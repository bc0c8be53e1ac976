"""``biomd reproduce-weights NAME --extend``: a recipe that gained a stage continues from the installed weights.

Real at toy scale: the recipe's MD is generated, the new stage trains from a copy of the installed
weights, the result is calibrated, sampled, evaluated and installed with a card that keeps the earlier
stages' facts.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import yaml

TIME_GRID = {"frame_interval_ps": 0.4, "coarse_stride": 5, "history_frames": 1, "block_frames": 3}


def _write_configs(configs):
    common = {
        "data": [{"trajectories": ["../../runs/data/toy/replica_*"], "topology": "../../runs/data/toy/topology.pdb"}],
        "validation_fraction": 0.5, "validate_every": 3, "checkpoint_every": 3, "log_every": 1, "device": "cpu",
    }
    training = {"steps": 3, "batch_size": 2, "lr": 1e-3, "warmup_steps": 1, "seed": 0}
    (configs / "toy.yaml").write_text(yaml.safe_dump({"model": {"preset": "tiny", "time": TIME_GRID},
                                                      "training": training, **common}))
    (configs / "toy-stage2.yaml").write_text(yaml.safe_dump({
        "init_from": "../../runs/train/toy/model.safetensors", "objective": {"bond_weight": 0.3},
        "training": {**training, "seed": 1}, **common,
    }))


def _install_tiny_model(path, time_grid: dict) -> str:
    """A freshly initialised tiny model on ``time_grid`` saved at ``path``; returns its weights hash."""
    import torch

    from biomd_core.config import ModelConfig, TimeConfig
    from biomd_core.featurize import DEFAULT_VOCABULARIES
    from biomd_core.io import save_model
    from biomd_core.model import BioMDModel
    from biomd_core.model.presets import get_preset

    torch.manual_seed(0)
    model = BioMDModel(ModelConfig(preset="tiny", network=get_preset("tiny"), time=TimeConfig(**time_grid)),
                       DEFAULT_VOCABULARIES)
    save_model(model, path)
    return model.weights_hash()


def _installed_stage_one(weights, plan):
    """Stand-in for weights a first recipe run installed: a tiny model on the toy time grid and its facts."""
    stage_one = _install_tiny_model(weights / "toy.safetensors", TIME_GRID)
    facts = {
        "name": "toy", "system": "alanine-dipeptide", "train_config": "examples/configs/toy.yaml", "hardware": "CPU",
        "train_data": {**plan.__dict__, "ns_total": 0.04}, "reference_data": {**plan.__dict__, "ns_total": 0.04},
        "training": {"steps": 3, "steps_per_stage": [3], "wall_s_last_session": 1.0, "samples_per_s": 1.0,
                     "wall_time_note": "Stage 1: 1 s."},
        "facts_history": "Stage 1 made by the first recipe run.",
    }
    (weights / "toy.card.json").write_text(json.dumps(facts))
    return stage_one


def test_extend_trains_only_the_new_stage_from_the_installed_weights(tmp_path, monkeypatch):
    from dataclasses import replace

    import openmm_biomd.recipes as recipes
    from biomd_core.io import load_model

    repo = tmp_path / "repo"
    weights, configs = repo / "biomd_core" / "weights", repo / "examples" / "configs"
    weights.mkdir(parents=True)
    configs.mkdir(parents=True)
    _write_configs(configs)
    plan = recipes.MDPlan(replicas=2, time="20ps", frame_interval="0.2ps", seed=1, equilibration="1ps")
    recipe = recipes.WeightsRecipe(
        name="toy", system="alanine-dipeptide", train_data=plan, reference_data=replace(plan, seed=2),
        train_config="examples/configs/toy.yaml", finetune_configs=("examples/configs/toy-stage2.yaml",),
        sample_time="4ps", sample_replicas=1, energy_frames=3, quality_targets=False,
    )
    monkeypatch.setattr(recipes, "REPO", repo)
    monkeypatch.setitem(recipes.RECIPES, "toy", recipe)
    stage_one = _installed_stage_one(weights, plan)

    facts = recipes.extend("toy", repo / "runs", install=True, progress=False)

    # stage 1 was not retrained: the installed weights were copied where a reproduction puts them
    assert load_model(repo / "runs" / "train" / "toy" / "model.safetensors").weights_hash() == stage_one
    assert not (repo / "runs" / "train" / "toy" / "config.json").exists()
    new = load_model(weights / "toy.safetensors")
    assert new.weights_hash() != stage_one
    assert new.provenance["fine_tuned_from"].endswith("runs/train/toy/model.safetensors")
    assert new.config.flow.bond_weight == 0.3 and "gate_reference" in new.provenance
    assert facts["training"]["steps_per_stage"] == [3, 3] and facts["training"]["steps"] == 6
    assert "Then stage 2: 3 steps" in facts["training"]["wall_time_note"]
    assert facts["facts_history"].startswith("Stage 1 made by the first recipe run. Stage 2 added on ")
    assert facts["train_config"] == "examples/configs/toy.yaml then examples/configs/toy-stage2.yaml"
    assert facts["sampling"]["simulated_ps"] == 4.0 and "bond_mae_A" in facts["quality"]
    assert json.loads((weights / "toy.card.json").read_text()) == json.loads(json.dumps(facts, default=str))
    assert "--extend" in (weights / "toy.md").read_text()

    with pytest.raises(ValueError, match="already have all 2 stages"):
        recipes.extend("toy", repo / "runs")
    # the installed card's facts cut short: re-evaluating says what to restore (it was a bare JSON error)
    card_facts = weights / "toy.card.json"
    card_facts.write_bytes(card_facts.read_bytes()[:60])
    with pytest.raises(RuntimeError, match=r"toy.card.json is damaged: it is not valid JSON .*git checkout -- "):
        recipes.reevaluate("toy", repo / "runs")


def test_extend_continues_an_unbinding_recipe_on_its_campaigns(toy_unbinding, monkeypatch):
    """Toy scale, all real: metadynamics campaigns (hills strong enough to push the guest out within a
    few ps, 3 ps kept after the exit), a stage trained from the installed weights, the new gate
    statistics and one gated unbinding attempt from a held-out start, all written into the card."""
    import openmm_biomd.recipes as recipes
    from biomd_core.io import load_model

    repo, grid = toy_unbinding.repo, toy_unbinding.grid
    weights = repo / "biomd_core" / "weights"
    weights.mkdir(parents=True)
    stage_one = _install_tiny_model(weights / "toyhg.safetensors", grid)
    (weights / "toyhg.card.json").write_text(json.dumps({
        "name": "toyhg", "system": "host-guest", "train_config": "examples/configs/toyhg.yaml", "hardware": "CPU",
        "training": {"steps": 2, "steps_per_stage": [2], "wall_s_last_session": 1.0, "samples_per_s": 1.0},
        "facts_history": "Stage 1 made by the first recipe run.",
    }))

    facts = recipes.extend("toyhg", repo / "runs", install=True, progress=False)

    # the campaign went on 3 frames past its exit and the new stage trained on it from the installed weights
    result = json.loads((repo / "runs/data/toyhg-diss-0/seed_000/result.json").read_text())
    assert result["dissociated"] and result["n_frames"] == result["exit_frame"] + 1 + 3
    assert load_model(repo / "runs/train/toyhg/model.safetensors").weights_hash() == stage_one
    new = load_model(weights / "toyhg.safetensors")
    assert new.weights_hash() != stage_one
    assert new.provenance["fine_tuned_from"].endswith("runs/train/toyhg/model.safetensors")
    key = facts["gate_reference"]["key"]
    assert new.provenance["gate_reference"][key]["n_frames"] == facts["gate_reference"]["n_frames"] > 0
    assert facts["training"]["steps_per_stage"] == [2, 2]
    assert facts["train_campaigns"][0]["after_exit_ps"] == 3.0 and facts["heldout_campaign"]["dissociated"] == 1
    assert facts["quality"]["attempts"] == 1 and facts["notes"] == ["toy"]
    assert facts["facts_history"].startswith("Stage 1 made by the first recipe run. Stage 2 added on ")
    card = (weights / "toyhg.md").read_text()
    assert "then goes on for 3 ps of unbiased MD" in card and "--extend" in card

    # re-evaluating keeps the stored gate statistics while the unbinding gate is the same ...
    installed = (weights / "toyhg.safetensors").read_bytes()
    same = recipes.reevaluate("toyhg", repo / "runs", install=False)
    assert same["gate_reference"] == facts["gate_reference"] and same["quality"]["attempts"] == 1
    assert "--reevaluate` (sampler ab2 6 steps, physics steering 1; gate relaxation 300 L-BFGS steps (a frame " \
        "passing every check after 100 is accepted there)" in same["facts_history"]
    assert "measured again" not in same["facts_history"]
    # ... and measures them again, into a copy of the weights, once the gate relaxes differently
    import openmm_biomd.enhanced.unbind as unbind_module

    monkeypatch.setattr(unbind_module, "UNBIND_GATE", replace(unbind_module.UNBIND_GATE, minimize_iterations=37))
    changed = recipes.reevaluate("toyhg", repo / "runs", install=False)
    assert changed["gate_reference"]["minimize_iterations"] == 37
    assert changed["facts_history"].endswith("gate relaxation 37 L-BFGS steps; the gate had changed, so its "
                                             "statistics were measured again).")
    assert changed["gate_reference"]["n_frames"] == facts["gate_reference"]["n_frames"]
    assert (weights / "toyhg.safetensors").read_bytes() == installed  # not installed: untouched
    copy = load_model(repo / "runs/eval/toyhg/model.safetensors")
    assert copy.weights_hash() == new.weights_hash()
    assert copy.provenance["gate_reference"][key]["minimize_iterations"] == 37
    # the attempts were made again with that gate, in their own directory
    attempts = sorted((repo / "runs/eval/toyhg").glob("unbind-*/summary.json"))
    assert len(attempts) == 2
    assert {json.loads(a.read_text())["gate"]["minimize_iterations"] for a in attempts} == {
        unbind_module._unbind_gate().minimize_iterations, 37}
