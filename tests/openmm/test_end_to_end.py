"""The whole pipeline at toy scale: generate MD → train → sample → evaluate (all real, all CPU)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import yaml

from openmm_biomd.cli import main


@pytest.fixture(scope="module")
def reference_md(tmp_path_factory):
    from openmm_biomd.data import generate_md

    out = tmp_path_factory.mktemp("md")
    generate_md("alanine-dipeptide", out, time_ps=20.0, frame_interval_ps=0.2, replicas=2, seed=1,
                equilibration_ps=1.0, platform="CPU", threads=1, chunk_frames=50)
    return out


def test_generate_train_sample_evaluate(tmp_path, reference_md, capsys):
    config = {
        "model": {"preset": "tiny", "time": {"frame_interval_ps": 0.4, "coarse_stride": 5, "history_frames": 1,
                                             "block_frames": 3}},
        "training": {"steps": 12, "batch_size": 4, "lr": 1e-3, "warmup_steps": 2, "seed": 0},
        "data": [{"trajectories": [str(reference_md / "replica_*")], "topology": str(reference_md / "topology.pdb")}],
        "validation_fraction": 0.5, "validate_every": 6, "checkpoint_every": 6, "log_every": 1, "device": "cpu",
    }
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", "--config", str(tmp_path / "train.yaml"), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("val_loss" in m for m in metrics)

    model = str(tmp_path / "run" / "model.safetensors")
    assert main(["sample", "--model", model, "--system", "alanine-dipeptide", "--time", "8ps",
                 "--out", str(tmp_path / "gen"), "--replicas", "2", "--ode-steps", "4"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--generated", str(tmp_path / "gen"), "--reference", str(reference_md),
                 "--out", str(tmp_path / "eval"), "--energy-frames", "5", "--minimise-iterations", "5"]) == 0
    result = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    for key in ("ramachandran_jsd", "ramachandran_jsd_md_floor", "tica_jsd", "bond_mae_A", "bond_max_dev_A",
                "angle_mae_deg", "protein_rmsf_pearson_r", "energy_reference_mean_kj_mol"):
        assert key in result, key
    assert 0.0 <= result["ramachandran_jsd"] <= 0.7
    assert result["generated_frames"] == 2 * 20  # 8 ps of 0.4 ps frames per replica, not their start frames
    assert result["energy_minimise_iterations"] == 5 and result["request"]["generated"] == str(tmp_path / "gen")
    # an evaluation of other settings into the same folder is refused, naming them, and changes nothing
    written = {p.name: p.read_bytes() for p in (tmp_path / "eval").iterdir()}
    capsys.readouterr()
    assert main(["evaluate", "--generated", str(tmp_path / "gen"), "--reference", str(reference_md),
                 "--out", str(tmp_path / "eval"), "--energy-frames", "3", "--minimise-iterations", "5"]) == 2
    assert "energy_frames (there: 5, now: 3)" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (tmp_path / "eval").iterdir()} == written
    # 0 minimisation steps is OpenMM's "until converged": refused, not recorded as 0
    assert main(["evaluate", "--generated", str(tmp_path / "gen"), "--reference", str(reference_md),
                 "--out", str(tmp_path / "eval0"), "--minimise-iterations", "0"]) == 2
    assert "--minimise-iterations must be at least 1" in capsys.readouterr().err
    # an empty topology.pdb beside the samples is named (it had been mdtraj's bare IndexError)
    import shutil

    shutil.copytree(tmp_path / "gen", tmp_path / "gen-empty")
    (tmp_path / "gen-empty" / "topology.pdb").write_text("")
    assert main(["evaluate", "--generated", str(tmp_path / "gen-empty"), "--reference", str(reference_md),
                 "--out", str(tmp_path / "eval-empty")]) == 2
    assert "gen-empty/topology.pdb cannot be read as a topology" in capsys.readouterr().err
    # inputs with a replica (or a chunk) gone are named: they had been scored on what was left, without a word
    shutil.copytree(tmp_path / "gen", tmp_path / "gen-short")
    (tmp_path / "gen-short" / "replica_001.dcd").unlink()
    assert main(["evaluate", "--generated", str(tmp_path / "gen-short"), "--reference", str(reference_md),
                 "--out", str(tmp_path / "eval-short")]) == 2
    assert "replica_001.dcd is damaged: it is missing, but summary.json records 2 replicas" in capsys.readouterr().err
    shutil.copytree(reference_md, tmp_path / "md-short")
    (tmp_path / "md-short" / "replica_001" / "chunk_00001.dcd").unlink()
    assert main(["evaluate", "--generated", str(tmp_path / "gen"), "--reference", str(tmp_path / "md-short"),
                 "--out", str(tmp_path / "eval-short")]) == 2
    assert "chunk_00001.dcd is damaged: it is missing, but progress.json counts 2 chunks" in capsys.readouterr().err
    shutil.rmtree(tmp_path / "md-short" / "replica_001")
    assert main(["evaluate", "--generated", str(tmp_path / "gen"), "--reference", str(tmp_path / "md-short"),
                 "--out", str(tmp_path / "eval-short")]) == 2
    assert "replica_001 is damaged: it is missing, but metadata.json records 100 frames" in capsys.readouterr().err
    assert not (tmp_path / "eval-short").exists()
    # and training reads no replica with a chunk gone from its middle as one trajectory jumping in time
    from biomd_core.data.trajectories import DataSpec, load_dataset

    shutil.copytree(reference_md / "replica_000", tmp_path / "md-gap" / "replica_000")
    shutil.copy(reference_md / "metadata.json", tmp_path / "md-gap")
    replica = tmp_path / "md-gap" / "replica_000"
    (replica / "chunk_00001.dcd").rename(replica / "chunk_00002.dcd")  # a third chunk, after a gap of 50 frames
    shutil.copy(reference_md / "replica_000" / "chunk_00000.dcd", replica / "chunk_00001.dcd")
    with pytest.raises(ValueError, match=r"chunk_00001\.dcd does not continue .*chunk_00000\.dcd: it begins at step "
                                         r"100, where the next frame after chunk_00000\.dcd is at step 5100"):
        load_dataset([DataSpec(trajectories=(str(replica),), topology=str(reference_md / "topology.pdb"))], 0.4)
    for later in ("chunk_00001.dcd", "chunk_00002.dcd"):  # only the first chunk left: shorter than its record
        (replica / later).unlink()  # (it had trained as it was)
    with pytest.raises(ValueError, match=r"replica_000 holds 50 frames, where its run's metadata.json records 100: "
                                         r"a chunk is missing"):
        load_dataset([DataSpec(trajectories=(str(replica),), topology=str(reference_md / "topology.pdb"))], 0.4)
    assert (tmp_path / "eval" / "report.md").exists() and (tmp_path / "eval" / "ramachandran.png").exists()
    assert (tmp_path / "eval" / "energy.png").exists() and (tmp_path / "eval" / "rmsf.png").exists()

    # the weights recipe's measurements (what a model card reports), on the same toy model
    from openmm_biomd.recipes import MDPlan, WeightsRecipe, evaluate_weights

    plan = MDPlan(replicas=2, time="20ps", frame_interval="0.2ps", seed=1)
    recipe = WeightsRecipe(name="toy", system="alanine-dipeptide", train_data=plan, reference_data=plan,
                           train_config="unused.yaml", sample_time="8ps", sample_replicas=2)
    measured = evaluate_weights(recipe, tmp_path / "run" / "model.safetensors", reference_md, tmp_path / "recipe")
    assert measured["sampling"]["constraints"] == "auto" and measured["sampling"]["simulated_ps_all_replicas"] == 16.0
    assert (tmp_path / "recipe" / "samples-raw" / "trajectory.dcd").exists()
    # the projection holds the 12 X–H bonds at their constrained lengths: the raw output's error is larger
    assert measured["quality"]["bond_mae_A"] < measured["raw_geometry"]["bond_mae_A"]

    # ... and the model card rendered from them: a recipe without #3's targets reports without them
    from biomd_core.training.run import load_run_config
    from openmm_biomd.recipes import model_card

    facts = {"name": "toy", "system": "alanine-dipeptide", "train_config": "train.yaml", "hardware": "CPU",
             "train_data": {**plan.__dict__, "ns_total": 0.04}, "reference_data": {**plan.__dict__, "ns_total": 0.04},
             "training": {"steps": 12, "wall_s_last_session": 1.0, "samples_per_s": 1.0},
             "gate_reference": {"minimize_iterations": 20, "n_frames": 5, "mean": 0.0, "std": 1.0, "maximum": 1.0},
             **measured}
    card = model_card(facts, load_run_config(tmp_path / "train.yaml"), replace(recipe, quality_targets=False))
    assert "no quality targets are set" in card and "≤ 0.10" not in card
    assert "2 replicas × 8 ps\n= 16 ps" in card and "master seed 1: 40 ps" in card
    assert f"| bond-length MAE (Å) | {measured['quality']['bond_mae_A']:.3f} | — |" in card
    assert "Status: **" in model_card(facts, load_run_config(tmp_path / "train.yaml"), recipe)  # targets missed


def test_tica_is_skipped_with_a_reason_when_the_reference_has_fewer_frames_than_features():
    import numpy as np

    from openmm_biomd.evaluate import _tica_jsd

    rng = np.random.default_rng(0)
    short = _tica_jsd(rng.normal(size=(15, 648)), rng.normal(size=(20, 648)), lag=10)  # 15 ps of T4L torsions
    assert short["tica_jsd"] is None and "15 frames" in short["tica_skipped"]
    walk = np.cumsum(rng.normal(size=(400, 4)), axis=0)  # slow features: TICA is defined
    assert _tica_jsd(walk, walk, lag=10) == {"tica_jsd": 0.0}
