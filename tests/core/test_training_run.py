"""``biomd train``: datasets from trajectory files, resume after a kill, DDP, fine-tuning."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import mdtraj
import numpy as np
import pytest
import torch
import yaml

from biomd_core.config import ConfigError
from biomd_core.data.synthetic import HarmonicParticles
from biomd_core.data.trajectories import DataSpec, bound_segments, load_dataset, resample_stride
from biomd_core.io import load_model
from biomd_core.training.run import load_run_config

DATA_INTERVAL_PS = 0.5


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    """Four exact harmonic-particle trajectories as DCD files + a PDB topology."""
    root = tmp_path_factory.mktemp("data")
    process = HarmonicParticles.square(4)
    top = process.topology()
    for i, frames in enumerate(process.trajectories(4, 240, DATA_INTERVAL_PS, seed=3)):
        traj = mdtraj.Trajectory(frames, top, time=np.arange(len(frames)) * DATA_INTERVAL_PS)
        traj.save_dcd(str(root / f"traj_{i}.dcd"))
        if i == 0:
            traj[0].save_pdb(str(root / "top.pdb"))
    return root


def write_config(path, dataset_dir, steps=40, batch_size=4, aux=True, **extra):
    flow = {"parameterization": "abs"} if aux else {
        "parameterization": "abs", "bond_weight": 0.0, "clash_weight": 0.0, "centroid_weight": 0.0
    }
    config = {
        "model": {"preset": "tiny", "flow": flow,
                  "time": {"frame_interval_ps": 1.0, "coarse_stride": 4, "history_frames": 1, "block_frames": 3}},
        "training": {"steps": steps, "batch_size": batch_size, "lr": 1e-3, "warmup_steps": 2, "seed": 7},
        "data": [{"trajectories": [str(dataset_dir / "traj_*.dcd")], "topology": str(dataset_dir / "top.pdb"),
                  "frame_interval_ps": DATA_INTERVAL_PS}],
        "validation_fraction": 0.25,
        "log_every": 1, "validate_every": 10, "checkpoint_every": 5, "device": "cpu",
        **extra,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def biomd(*args, env_extra=None, launcher=()):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", **(env_extra or {})}
    return [*launcher, *(() if launcher else (sys.executable, "-m")), "openmm_biomd.cli", *args], env


def run_biomd(*args, launcher=()):
    cmd, env = biomd(*args, launcher=launcher)
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def weights(path):
    model = load_model(path)
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_device_cuda_without_a_gpu_says_so_and_leaves_no_run_folder(tmp_path, dataset_dir, monkeypatch, capsys):
    # a CPU-only PyTorch had failed inside torch._C with an AttributeError (PyTorch is told it sees no GPU, so this
    # runs on any machine)
    from openmm_biomd.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "run"
    status = main(["train", "--config", str(write_config(tmp_path / "c.yaml", dataset_dir, device="cuda")),
                   "--out", str(out)])
    stderr = capsys.readouterr().err
    assert status != 0 and "Traceback" not in stderr
    assert "device: cuda, but PyTorch sees no CUDA GPU on this machine" in stderr
    assert not out.exists()


def test_dataset_splits_by_trajectory_and_resamples(dataset_dir):
    spec = DataSpec(trajectories=(str(dataset_dir / "traj_*.dcd"),), topology=str(dataset_dir / "top.pdb"),
                    frame_interval_ps=DATA_INTERVAL_PS)
    data = load_dataset([spec], model_interval_ps=1.0, validation_fraction=0.25, seed=0)
    assert len(data.train.frames) == 3 and len(data.validation.frames) == 1
    # Every frame is at the model's Δt (every 2nd stored frame) and whole trajectories stay together.
    originals = [mdtraj.load(str(dataset_dir / f"traj_{i}.dcd"), top=str(dataset_dir / "top.pdb")).xyz for i in range(4)]
    used = [np.array_equal(t, o[::2]) for t in data.train.frames + data.validation.frames for o in originals]
    assert sum(used) == 4
    assert data.provenance["systems"][0]["train_frames"] == 3 * 120


def test_all_stride_phases_keep_each_source_on_one_side_of_the_split(dataset_dir):
    spec = DataSpec(trajectories=(str(dataset_dir / "traj_*.dcd"),), topology=str(dataset_dir / "top.pdb"),
                    frame_interval_ps=DATA_INTERVAL_PS, all_stride_phases=True)
    data = load_dataset([spec], model_interval_ps=1.0, validation_fraction=0.25, seed=0)
    assert len(data.train.frames) == 6 and len(data.validation.frames) == 2  # 2 phases per source
    originals = [mdtraj.load(str(dataset_dir / f"traj_{i}.dcd"), top=str(dataset_dir / "top.pdb")).xyz for i in range(4)]

    def source(frames):
        return next(i for i, o in enumerate(originals) for p in (0, 1) if np.array_equal(frames, o[p::2]))

    train, val = {source(f) for f in data.train.frames}, {source(f) for f in data.validation.frames}
    assert len(train) == 3 and len(val) == 1 and not train & val


def test_frame_interval_must_divide():
    assert resample_stride(0.5, 2.0) == 4
    with pytest.raises(ValueError, match="whole multiple"):
        resample_stride(0.3, 1.0)
    with pytest.raises(ValueError, match="whole multiple"):
        resample_stride(2.0, 1.0)


def test_bound_segments_drop_unbound_frames():
    frames = np.zeros((10, 3, 3))
    frames[:, 2, 0] = [0.1, 0.1, 0.2, 2.0, 2.0, 0.1, 0.1, 0.1, 3.0, 0.1]  # ligand atom 2 wanders off and back
    segs = bound_segments(frames, np.array([2]), np.array([0, 1]), cutoff_nm=0.6)
    assert [(s.start, s.stop) for s in segs] == [(0, 3), (5, 8), (9, 10)]


def test_run_config_is_strict(tmp_path, dataset_dir):
    path = write_config(tmp_path / "c.yaml", dataset_dir)
    cfg = yaml.safe_load(path.read_text())
    cfg["training"]["stepz"] = 3
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="stepz"):
        load_run_config(path)
    cfg["training"].pop("stepz")
    # run-level values that held out every trajectory, or divided by zero in the training loop
    for key, value, message in (("validation_fraction", 1.5, r"validation_fraction must be in \[0, 1\), got 1.5"),
                                ("validation_fraction", "half", "'validation_fraction' must be a number"),
                                ("log_every", 0, "log_every must be at least 1"),
                                ("checkpoint_every", -5, "checkpoint_every must be at least 1"),
                                ("device", "gpu", "device must be one of auto, cpu, cuda, got 'gpu'")):
        path.write_text(yaml.safe_dump({**cfg, key: value}))
        with pytest.raises(ConfigError, match=message):
            load_run_config(path)
    path.write_text(yaml.safe_dump(cfg).replace("training:", "training: [", 1))  # a YAML syntax error
    with pytest.raises(ConfigError, match=r"c.yaml is not valid YAML: "):
        load_run_config(path)
    cfg["init_from"] = "model.safetensors"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="init_from"):
        load_run_config(path)


def test_init_from_is_a_path_beside_the_config_or_a_shipped_name(tmp_path, dataset_dir):
    path = write_config(tmp_path / "c.yaml", dataset_dir)
    cfg = yaml.safe_load(path.read_text())
    cfg.pop("model", None)
    cfg["init_from"] = "alanine-dipeptide"
    path.write_text(yaml.safe_dump(cfg))
    assert load_run_config(path).init_from == "alanine-dipeptide"  # nothing of that name beside the config
    (tmp_path / "alanine-dipeptide").write_bytes(b"")
    assert load_run_config(path).init_from == str(tmp_path / "alanine-dipeptide")


def test_kill_and_resume_loses_and_repeats_nothing(tmp_path, dataset_dir):
    config = write_config(tmp_path / "c.yaml", dataset_dir)
    run_biomd("train", "--config", str(config), "--out", str(tmp_path / "straight"), "--quiet")

    cmd, env = biomd("train", "--config", str(config), "--out", str(tmp_path / "killed"), "--quiet")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    latest = tmp_path / "killed" / "checkpoints" / "latest.json"
    deadline = time.time() + 300
    while not latest.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "model.safetensors").exists(), "the run finished before it could be killed"
    killed_at = json.loads(latest.read_text())["step"]
    assert 0 < killed_at < 40
    with (tmp_path / "killed" / "metrics.jsonl").open("a") as log:
        log.write('{"step": 39, "loss": 0.1')  # a record cut short: a kill while it was being appended

    run_biomd("train", "--config", str(config), "--out", str(tmp_path / "killed"), "--quiet")
    steps = [json.loads(line)["step"] for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(40)), "every step logged exactly once"
    a, b = weights(tmp_path / "straight" / "model.safetensors"), weights(tmp_path / "killed" / "model.safetensors")
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a), "resumed run must equal the uninterrupted one"

    # "resuming" the finished run changes nothing: same weights file, same summary (its wall time included)
    finished = {name: (tmp_path / "killed" / name).read_bytes() for name in ("model.safetensors", "summary.json")}
    run_biomd("train", "--config", str(config), "--out", str(tmp_path / "killed"), "--quiet")
    assert {name: (tmp_path / "killed" / name).read_bytes() for name in finished} == finished


def test_a_damaged_step_checkpoint_says_how_to_resume_from_the_one_before(tmp_path, dataset_dir):
    """Its weights cut short used to say "Re-download it"; an edited latest.json was a TypeError traceback."""
    from biomd_core.io import CheckpointError
    from biomd_core.training.run import run_training

    config, out = load_run_config(write_config(tmp_path / "c.yaml", dataset_dir, steps=10)), tmp_path / "run"
    run_training(config, out, progress=False)
    finished = load_model(out / "model.safetensors").weights_hash()
    newest = out / "checkpoints" / "step_0000010" / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[:1000])
    with pytest.raises(CheckpointError) as info:
        run_training(config, out, progress=False)
    message = str(info.value)
    assert "step_0000010 is a damaged training checkpoint" in message and "Re-download" not in message
    assert 'write {"dir": "step_0000005"} (or another of them) into' in message
    latest = out / "checkpoints" / "latest.json"
    latest.write_text("[1, 2]")
    with pytest.raises(CheckpointError, match=r"latest.json is damaged .*to restart the training from scratch"):
        run_training(config, out, progress=False)
    # lost: the newest whole step checkpoint is taken (a restart from step 0 had pruned, by name, its own new
    # checkpoints in favour of these), here the damaged one, named as above
    latest.unlink()
    with pytest.raises(CheckpointError, match=r"step_0000010 is a damaged training checkpoint"):
        run_training(config, out, progress=False)
    # a step checkpoint without its last file is a kill during the first save: a fresh start, as before
    from biomd_core.training.checkpointing import latest_checkpoint

    (tmp_path / "first" / "step_0000005").mkdir(parents=True)
    (tmp_path / "first" / "step_0000005" / "model.safetensors").write_bytes(b"half")
    assert latest_checkpoint(tmp_path / "first") is None
    (tmp_path / "first" / "step_0000005" / "rng.json").write_text("{}")  # killed once it was whole: resumed from it
    assert latest_checkpoint(tmp_path / "first") == tmp_path / "first" / "step_0000005"
    latest.write_text(json.dumps({"dir": "step_0000005"}))  # the advice, followed: the same weights again
    assert run_training(config, out, progress=False)["steps"] == 10
    assert load_model(out / "model.safetensors").weights_hash() == finished


def test_different_config_in_existing_run_dir_is_refused(tmp_path, dataset_dir):
    config = write_config(tmp_path / "c.yaml", dataset_dir, steps=2)
    run_biomd("train", "--config", str(config), "--out", str(tmp_path / "run"), "--quiet")
    other = write_config(tmp_path / "d.yaml", dataset_dir, steps=3)
    cmd, env = biomd("train", "--config", str(other), "--out", str(tmp_path / "run"), "--quiet")
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert result.returncode == 2 and "different config (training.steps (there: 2, now: 3))" in result.stderr


def test_a_finished_run_missing_its_config_or_weights(tmp_path, dataset_dir):
    """config.json deleted (as its damage message advises): the checkpoint's record of its training settings is
    compared instead (a run under other settings had extended or resumed it without a word); the final weights
    deleted: written again from the last checkpoint, the same (they had stayed missing, exit 0)."""
    from biomd_core.training.run import run_training

    config, out = load_run_config(write_config(tmp_path / "c.yaml", dataset_dir, steps=4)), tmp_path / "run"
    run_training(config, out, progress=False)
    finished = load_model(out / "model.safetensors").weights_hash()
    (out / "config.json").unlink()
    longer = load_run_config(write_config(tmp_path / "d.yaml", dataset_dir, steps=6))
    with pytest.raises(ConfigError, match=r"config\.json is missing, and the checkpoint step_0000004 was trained "
                                          r"with other settings \(steps \(there: 4, now: 6\)\)"):
        run_training(longer, out, progress=False)
    assert run_training(config, out, progress=False)["steps"] == 4 and (out / "config.json").exists()
    (out / "model.safetensors").unlink()
    assert run_training(config, out, progress=False)["steps"] == 4
    assert load_model(out / "model.safetensors").weights_hash() == finished


def test_a_config_refused_for_its_data_leaves_nothing_to_block_the_corrected_rerun(tmp_path, dataset_dir):
    """config.json used to be written before the data were read: the corrected config was then refused as
    "a different config" in the same --out."""
    from biomd_core.training.run import run_training

    out = tmp_path / "run"
    wrong = write_config(tmp_path / "wrong.yaml", tmp_path / "nowhere", steps=2)
    with pytest.raises(Exception, match="nowhere"):
        run_training(load_run_config(wrong), out, progress=False)
    assert not out.exists()
    out.mkdir()
    (out / "notes.txt").write_text("mine")  # a folder that was there before is left as it was
    with pytest.raises(Exception, match="nowhere"):
        run_training(load_run_config(wrong), out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    summary = run_training(load_run_config(write_config(tmp_path / "c.yaml", dataset_dir, steps=2)), out,
                           progress=False)
    assert summary["steps"] == 2 and (out / "model.safetensors").exists()


def test_ddp_two_processes_match_one(tmp_path, dataset_dir):
    # Auxiliary losses are ratios over the batch, so they do not split exactly across ranks; without
    # them two ranks of batch 2 must take the same steps as one process of batch 4.
    config = write_config(tmp_path / "c.yaml", dataset_dir, steps=6, aux=False)
    run_biomd("train", "--config", str(config), "--out", str(tmp_path / "one"), "--quiet")
    torchrun = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m")
    run_biomd("train", "--config", str(config), "--out", str(tmp_path / "two"), "--quiet", launcher=torchrun)
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["world_size"] == 2
    a, b = weights(tmp_path / "one" / "model.safetensors"), weights(tmp_path / "two" / "model.safetensors")
    init = weights_at_init(tmp_path, dataset_dir)
    moved = sum(float(((a[k] - init[k]) ** 2).sum()) for k in a) ** 0.5
    diff = sum(float(((a[k] - b[k]) ** 2).sum()) for k in a) ** 0.5
    assert moved > 1e-3 and diff < 1e-4 * max(1.0, moved) + 1e-5, (moved, diff)


def weights_at_init(tmp_path, dataset_dir):
    from biomd_core.training.run import build_model

    return {k: v.clone() for k, v in build_model(load_run_config(write_config(tmp_path / "i.yaml", dataset_dir))).state_dict().items()}


def test_fine_tuning_starts_from_a_checkpoint(tmp_path, dataset_dir):
    config = write_config(tmp_path / "c.yaml", dataset_dir, steps=4)
    run_biomd("train", "--config", str(config), "--out", str(tmp_path / "base"), "--quiet")
    cfg = yaml.safe_load(config.read_text())
    cfg.pop("model")
    cfg["init_from"] = str(tmp_path / "base" / "model.safetensors")
    cfg["training"]["steps"] = 3
    cfg["objective"] = {"bond_weight": 0.5}
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump(cfg))
    run_biomd("train", "--config", str(tmp_path / "ft.yaml"), "--out", str(tmp_path / "ft"), "--quiet")
    base, tuned = load_model(tmp_path / "base" / "model.safetensors"), load_model(tmp_path / "ft" / "model.safetensors")
    assert tuned.config.flow.bond_weight == 0.5 != base.config.flow.bond_weight
    assert tuned.config == replace(base.config, flow=replace(base.config.flow, bond_weight=0.5))
    assert tuned.provenance["fine_tuned_from"].endswith("model.safetensors")
    assert tuned.provenance["objective_changed"] == {"bond_weight": 0.5}
    assert tuned.weights_hash() != base.weights_hash()
    # the run's config.json shows no model section (the model is the checkpoint's), and the run resumes
    assert "model" not in json.loads((tmp_path / "ft" / "config.json").read_text())
    run_biomd("train", "--config", str(tmp_path / "ft.yaml"), "--out", str(tmp_path / "ft"), "--quiet")


def test_objective_changes_only_loss_settings_and_only_when_fine_tuning(tmp_path, dataset_dir):
    path = write_config(tmp_path / "c.yaml", dataset_dir)
    cfg = yaml.safe_load(path.read_text())
    cfg["objective"] = {"bond_weight": 0.5}
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="model.flow"):
        load_run_config(path)
    cfg.pop("model")
    cfg["init_from"] = "alanine-dipeptide"
    cfg["objective"] = {"coord_scale_nm": 0.5}
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="coord_scale_nm cannot change"):
        load_run_config(path)
    cfg["objective"] = {"clash_weight": 0.2}
    path.write_text(yaml.safe_dump(cfg))
    assert load_run_config(path).objective == {"clash_weight": 0.2}


def test_generate_data_layout_is_read_as_whole_trajectories(tmp_path, dataset_dir):
    """A directory of chunk files is one trajectory; its interval comes from metadata.json."""
    top = str(dataset_dir / "top.pdb")
    full = mdtraj.load(str(dataset_dir / "traj_0.dcd"), top=top)
    replica = tmp_path / "run" / "replica_000"
    replica.mkdir(parents=True)
    for i, (a, b) in enumerate([(0, 70), (70, 150), (150, 240)]):
        full[a:b].save_dcd(str(replica / f"chunk_{i:05d}.dcd"))
    (tmp_path / "run" / "metadata.json").write_text(json.dumps({"frame_interval_ps": DATA_INTERVAL_PS}))
    spec = DataSpec(trajectories=(str(tmp_path / "run" / "replica_*"),), topology=top)
    data = load_dataset([spec], model_interval_ps=1.5, validation_fraction=0.0)
    assert len(data.train.frames) == 1
    np.testing.assert_array_equal(data.train.frames[0], full.xyz[::3])
    with pytest.raises(ValueError, match="frame_interval_ps is not set"):
        load_dataset([DataSpec(trajectories=(str(dataset_dir / "traj_0.dcd"),), topology=top)], 1.0)
    # an interval the data contradict (it had set every window's time axis), a negative or NaN one (they had
    # fallen back to the metadata's) are refused
    with pytest.raises(ValueError, match=r"records frames 0.5 ps apart \(its generate-data metadata.json\): give 0.5"):
        load_dataset([DataSpec(trajectories=spec.trajectories, topology=top, frame_interval_ps=0.25)], 1.5)
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="frame_interval_ps must be >= 0 and finite"):
            DataSpec(trajectories=spec.trajectories, topology=top, frame_interval_ps=bad)
    # a DCD written by OpenMM says its spacing in its header: read from there when nothing else says it
    from biomd_core.data.trajectories import recorded_frame_interval_ps
    from openmm_biomd.trajectory_io import write_dcd

    write_dcd(tmp_path / "timed.dcd", full.topology.to_openmm(), full.xyz[:3], 2.0)
    spacing, source = recorded_frame_interval_ps(tmp_path / "timed.dcd")
    assert spacing == pytest.approx(2.0, rel=1e-6) and source == "header"
    # a header may be stale (a strided copy keeps it): one that contradicts a given interval only warns
    from biomd_core.data.trajectories import data_frame_interval_ps

    with pytest.warns(UserWarning, match="records frames 2 ps apart in its DCD header; 1 ps is used"):
        assert data_frame_interval_ps(DataSpec(frame_interval_ps=1.0), tmp_path / "timed.dcd") == 1.0
    (tmp_path / "metadata.json").write_text("{}")  # another tool's metadata.json says nothing: the header speaks
    assert recorded_frame_interval_ps(tmp_path / "timed.dcd")[1] == "header"
    # an XTC's frame times say it too (frame_interval_ps had been required); mdtraj's placeholder 0, 1, 2 does not
    timed = full[:40]
    timed.time = 100.0 + 2.0 * np.arange(40)
    (tmp_path / "xtc").mkdir()
    timed.save_xtc(str(tmp_path / "xtc" / "timed.xtc"))
    assert recorded_frame_interval_ps(tmp_path / "xtc" / "timed.xtc") == (pytest.approx(2.0, rel=1e-6), "frame times")
    from_xtc = load_dataset([DataSpec(trajectories=(str(tmp_path / "xtc" / "timed.xtc"),), topology=top)],
                            model_interval_ps=4.0, validation_fraction=0.0)
    np.testing.assert_allclose(from_xtc.train.frames[0], timed.xyz[::2], atol=2e-3)  # (XTC: 0.001 nm precision)
    with pytest.warns(UserWarning, match="records frames 2 ps apart in its frame times; 1 ps is used"):
        assert data_frame_interval_ps(DataSpec(frame_interval_ps=1.0), tmp_path / "xtc" / "timed.xtc") == 1.0
    full[:3].save_xtc(str(tmp_path / "xtc" / "placeholder.xtc"))
    assert recorded_frame_interval_ps(tmp_path / "xtc" / "placeholder.xtc") == (None, "")
    # another system's topology, or trajectories of another system in the entry, are named with their files
    half = mdtraj.load(top)
    half.atom_slice(range(half.n_atoms // 2)).save_pdb(str(tmp_path / "half.pdb"))
    with pytest.raises(ValueError, match=r"cannot read .*chunk_00000.dcd with topology .*half.pdb"):
        load_dataset([DataSpec(trajectories=spec.trajectories, topology=str(tmp_path / "half.pdb"))],
                     model_interval_ps=1.5, validation_fraction=0.0)
    # a chunk cut short (a copy, a full disk) is refused: mdtraj read its whole frames, a silent gap in time
    middle = replica / "chunk_00001.dcd"
    middle.write_bytes(middle.read_bytes()[:-1000])
    with pytest.raises(ValueError, match=r"chunk_00001.dcd is damaged: its header counts 80 frames .* whole ones and "
                                         "part of another"):
        load_dataset([spec], model_interval_ps=1.5, validation_fraction=0.0)


def test_mixed_precision_path_trains_in_bfloat16_and_keeps_float32_weights(tmp_path, dataset_dir):
    """``amp`` (bf16 autocast, on CUDA by default) exercised on the CPU with ``amp_on_cpu``: the loss is
    computed in bfloat16 (so it differs from the float32 loss of the same first step, by little), the run
    still learns, and the saved weights stay float32."""
    from biomd_core.training.run import build_model, run_training

    def first_step_loss(amp_on_cpu: bool) -> float:
        from biomd_core.model.system import batch_systems
        from biomd_core.training import Trainer

        config = load_run_config(write_config(tmp_path / f"c{amp_on_cpu}.yaml", dataset_dir, amp_on_cpu=amp_on_cpu))
        data = load_dataset(list(config.data), 1.0, config.validation_fraction, config.training.seed)
        trainer = Trainer(build_model(config), batch_systems(data.graphs), data.train, config.training,
                          amp=config.amp, amp_on_cpu=config.amp_on_cpu)
        return trainer.train_step()["loss"]

    full, mixed = first_step_loss(False), first_step_loss(True)
    assert full != mixed and abs(mixed - full) < 0.05 * abs(full), (full, mixed)

    config = write_config(tmp_path / "amp.yaml", dataset_dir, steps=30, amp_on_cpu=True)
    summary = run_training(load_run_config(config), tmp_path / "amp", progress=False)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "amp" / "metrics.jsonl").read_text().splitlines()]
    assert np.isfinite(losses).all() and np.mean(losses[-10:]) < np.mean(losses[:10]), losses
    assert summary["steps"] == 30
    assert all(v.dtype == torch.float32 for v in weights(tmp_path / "amp" / "model.safetensors").values())
