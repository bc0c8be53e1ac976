"""``biomd reproduce-weights NAME``: MD side by side, training on one machine, evaluation on another.

Real at toy scale: each MD plan runs in its own process, a tiny model trains, the run stops after the
training; a second root that received only the weights, the reference MD and the training record then
calibrates, samples, evaluates and writes the card without the training MD.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest
import yaml

TIME_GRID = {"frame_interval_ps": 0.4, "coarse_stride": 5, "history_frames": 1, "block_frames": 3}


def test_train_side_by_side_then_evaluate_elsewhere(tmp_path, monkeypatch):
    import openmm_biomd.recipes as recipes
    from biomd_core.io import load_model

    repo = tmp_path / "repo"
    configs = repo / "examples" / "configs"
    configs.mkdir(parents=True)
    (configs / "toy.yaml").write_text(yaml.safe_dump({
        "model": {"preset": "tiny", "time": TIME_GRID},
        "training": {"steps": 3, "batch_size": 2, "lr": 1e-3, "warmup_steps": 1, "seed": 0},
        "data": [{"trajectories": ["../../runs/data/toy/replica_*", "../../runs/data/toy-seed3/replica_*"],
                  "topology": "../../runs/data/toy/topology.pdb"}],
        "validation_fraction": 0.5, "validate_every": 3, "checkpoint_every": 3, "log_every": 1, "device": "cpu",
    }))
    plan = recipes.MDPlan(replicas=1, time="20ps", frame_interval="0.4ps", seed=1, equilibration="1ps")
    recipe = recipes.WeightsRecipe(
        name="toy", system="alanine-dipeptide", train_data=plan, extra_train_data=(replace(plan, seed=3),),
        reference_data=replace(plan, seed=2), train_config="examples/configs/toy.yaml",
        sample_time="4ps", sample_replicas=1, energy_frames=3, quality_targets=False,
    )
    monkeypatch.setattr(recipes, "REPO", repo)
    first, second = repo / "runs", tmp_path / "another-machine" / "runs"  # the config reads repo/runs/data

    trained = recipes.reproduce_recipe(recipe, first, progress=False, parallel_md=True, stop_after_training=True)

    assert trained["md_in_parallel"] and set(trained["md_ns_per_day"]) == {"toy", "toy-seed3", "toy-reference"}
    assert all(rate > 0 for rate in trained["md_ns_per_day"].values())
    assert trained["train_data"]["ns_total"] == trained["extra_train_data"][0]["ns_total"] == 0.02
    assert trained["training"]["steps"] == 3 and "quality" not in trained
    assert trained["model_path"] == "train/toy/model.safetensors"  # relative: the record travels with its root
    for run in ("toy", "toy-seed3", "toy-reference"):
        assert json.loads((first / "data" / run / "metadata.json").read_text())["status"] == "complete"
    weights = load_model(first / "train" / "toy" / "model.safetensors").weights_hash()

    # what travels: the weights, the reference MD and the training record, not the training MD
    for part in ("train/toy", "data/toy-reference", "eval/toy/training-facts.json"):
        copy = shutil.copytree if (first / part).is_dir() else shutil.copyfile
        (second / part).parent.mkdir(parents=True, exist_ok=True)
        copy(first / part, second / part)
    facts = recipes.reproduce_recipe(recipe, second, progress=False)

    assert not (second / "data" / "toy").exists() and not (second / "data" / "toy-seed3").exists()
    model = load_model(second / "train" / "toy" / "model.safetensors")
    assert model.weights_hash() == weights and "gate_reference" in model.provenance
    assert facts["training"] == trained["training"] and facts["hardware"] == trained["hardware"]
    assert facts["sampling"]["simulated_ps"] == 4.0 and "bond_mae_A" in facts["quality"]
    assert facts["evaluation_hardware"] and "model_path" not in facts
    card = (second / "eval" / "toy" / "MODEL_CARD.md").read_text()
    assert "runs side by side" in card and "MD speed on the training hardware" in card

    # a record of another recipe is not reused: a changed plan trains again
    assert recipes._trained(replace(recipe, train_data=replace(plan, seed=9)), second) is None
    assert recipes._trained(recipe, second) is not None
    # a record cut short (a full disk, a bad copy) is only finished work to redo: a warning, then each step resumes
    record = second / "eval" / "toy" / "training-facts.json"
    record.write_bytes(record.read_bytes()[:50])
    with pytest.warns(UserWarning, match=r"training-facts.json is damaged: it is not valid JSON .* written again"):
        assert recipes._trained(recipe, second) is None
    record.write_text("[1, 2]")
    assert recipes._trained(recipe, second) is None


def test_unbinding_recipe_runs_campaigns_side_by_side_and_stops_after_training(toy_unbinding):
    """``biomd reproduce-weights host-guest --parallel-md --stop-after-training`` on a toy recipe: the campaigns
    run in processes of their own, the run ends after the training, and the next run in the same root goes on
    from the finished campaigns and stages (nothing written before is touched) to the evaluation and the card.
    Both flags had been ignored for unbinding recipes."""
    import openmm_biomd.recipes as recipes

    root = toy_unbinding.repo / "runs"
    with pytest.raises(ValueError, match="--install needs the evaluated weights"):
        recipes.reproduce("toyhg", root, install=True, progress=False, stop_after_training=True)
    assert not root.exists()  # refused before any work

    trained = recipes.reproduce("toyhg", root, progress=False, parallel_md=True, stop_after_training=True)

    assert trained["md_in_parallel_last_session"] and trained["training"]["steps_per_stage"] == [2, 2]
    assert "quality" not in trained and "card" not in trained
    assert trained["model_path"] == str(root / "train" / "toyhg-stage2" / "model.safetensors")
    for campaign in ("toyhg-diss-0", "toyhg-heldout"):
        assert json.loads((root / "data" / campaign / "seed_000" / "result.json").read_text())["dissociated"]
    assert not (root / "eval" / "toyhg").exists()
    written = {path: path.read_bytes() for part in ("data", "train") for path in (root / part).rglob("*")
               if path.is_file() and path.name != "model.safetensors"}  # the last stage's gets gate statistics

    facts = recipes.reproduce("toyhg", root, progress=False)

    assert facts["quality"]["attempts"] == 1 and not facts["md_in_parallel_last_session"]
    assert facts["training"]["steps_per_stage"] == [2, 2]
    assert (root / "eval" / "toyhg" / "MODEL_CARD.md").is_file()
    assert {path: path.read_bytes() for path in written} == written
