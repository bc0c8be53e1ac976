"""``biomd sample`` end to end with a (tiny, untrained) checkpoint: files, time axis, tasks."""

from __future__ import annotations

import json
import re

import mdtraj
import numpy as np
import pytest

from openmm_biomd.cli import main
from openmm_biomd.data.md import read_dcd_header


@pytest.fixture
def checkpoint(tmp_path, tiny_model):
    from biomd_core.io import save_model

    return str(save_model(tiny_model, tmp_path / "m.safetensors"))


def test_forecast_writes_topology_trajectory_and_summary(tmp_path, checkpoint, capsys):
    out = tmp_path / "out"
    assert main(["sample", "--model", checkpoint, "--system", "alanine-dipeptide", "--time", "20ps",
                 "--out", str(out), "--replicas", "2", "--ode-steps", "3"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    for key in ("model", "simulated_ps", "wall_s", "frame_interval_ps", "n_frames"):
        assert key in summary
    assert summary["simulated_ps"] == 20.0 and summary["n_frames"] == 21
    traj = mdtraj.load(str(out / "trajectory.dcd"), top=str(out / "topology.pdb"))
    assert traj.n_frames == 21 and traj.n_atoms == 22
    assert (out / "replica_001.dcd").exists()
    header = read_dcd_header(out / "trajectory.dcd")
    assert header["n_frames"] == 21
    assert abs(header["timestep_ps"] * header["interval_steps"] - summary["frame_interval_ps"]) < 1e-3
    start = mdtraj.load(str(out / "topology.pdb"))
    np.testing.assert_allclose(traj.xyz[0], start.xyz[0], atol=1e-3)
    import torch

    assert summary["device"] == ("cuda:0" if torch.cuda.is_available() else "cpu")  # --device auto
    # a sample under other settings into the same folder is refused, naming them, and changes nothing (it had
    # replaced the trajectories an evaluation beside them describes); the same settings sample it again
    written = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert main(["sample", "--model", checkpoint, "--system", "alanine-dipeptide", "--time", "10ps",
                 "--out", str(out), "--ode-steps", "2"]) == 2
    err = capsys.readouterr().err
    assert "holds a sample with other settings" in err and "time (there: '20ps', now: '10ps')" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == written
    assert main(["sample", "--model", checkpoint, "--system", "alanine-dipeptide", "--time", "20ps",
                 "--out", str(out), "--replicas", "2", "--ode-steps", "3"]) == 0
    assert (out / "replica_001.dcd").exists()
    # its summary deleted or garbage: a sample of one replica had deleted replica_001.dcd and overwritten the rest
    kept_summary = (out / "summary.json").read_bytes()
    for damage in (None, b"garbage"):
        (out / "summary.json").unlink(missing_ok=True)
        if damage is not None:
            (out / "summary.json").write_bytes(damage)
        written = {p.name: p.read_bytes() for p in out.iterdir()}
        assert main(["sample", "--model", checkpoint, "--system", "alanine-dipeptide", "--time", "20ps",
                     "--out", str(out), "--replicas", "1", "--ode-steps", "3"]) == 2
        err = capsys.readouterr().err
        assert re.search(r"summary\.json is (missing|damaged: it is not valid JSON .*), but .* \(replica_001\.dcd, trajectory\.dcd\)", err)
        assert {p.name: p.read_bytes() for p in out.iterdir()} == written
    (out / "summary.json").write_bytes(kept_summary)
    # killed while its trajectories were written (the settings are on disk first): not scored, sampled again
    from openmm_biomd.evaluate import load_generated

    (out / "summary.json").write_text(json.dumps({**json.loads(kept_summary), "status": "writing"}))
    with pytest.raises(ValueError, match="was stopped while its trajectories were written: run the same biomd sample"):
        load_generated(out)
    assert main(["sample", "--model", checkpoint, "--system", "alanine-dipeptide", "--time", "20ps",
                 "--out", str(out), "--replicas", "2", "--ode-steps", "3"]) == 0
    assert json.loads((out / "summary.json").read_text())["status"] == "complete" and len(load_generated(out)) == 2
    # the model is judged by its weights: the same file spelt another way samples again; weights retrained
    # into the same file are refused (they had replaced the sample without a word), and nothing changes
    import shutil

    from biomd_core.io import load_model, save_model

    shutil.copyfile(checkpoint, tmp_path / "copy.safetensors")
    assert main(["sample", "--model", str(tmp_path / "copy.safetensors"), "--system", "alanine-dipeptide",
                 "--time", "20ps", "--out", str(out), "--replicas", "2", "--ode-steps", "3"]) == 0
    retrained = load_model(checkpoint)
    with torch.no_grad():
        next(retrained.parameters()).add_(0.01)
    save_model(retrained, checkpoint)
    written = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert main(["sample", "--model", checkpoint, "--system", "alanine-dipeptide", "--time", "20ps",
                 "--out", str(out), "--replicas", "2", "--ode-steps", "3"]) == 2
    assert "holds a sample of other model weights" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == written

    # NaN frames: a start structure's is refused as the input's fault (the model was blamed), a generated
    # trajectory's by evaluate naming the file (numpy's "SVD did not converge" before)
    traj[0].save_pdb(str(tmp_path / "nan.pdb"))
    lines = (tmp_path / "nan.pdb").read_text().splitlines(keepends=True)
    fifth = [i for i, line in enumerate(lines) if line.startswith(("ATOM", "HETATM"))][4]
    lines[fifth] = lines[fifth][:30] + "     nan" + lines[fifth][38:]  # mdtraj will not write one
    (tmp_path / "nan.pdb").write_text("".join(lines))
    broken = traj[:3]
    broken.xyz[1, 4] = np.nan
    capsys.readouterr()
    assert main(["sample", "--model", checkpoint, "--structure", str(tmp_path / "nan.pdb"), "--time", "10ps",
                 "--out", str(tmp_path / "from-nan")]) == 2
    assert "frame 0 of the start structure " in capsys.readouterr().err and not (tmp_path / "from-nan").exists()
    broken.save_dcd(str(out / "trajectory.dcd"))
    assert main(["evaluate", "--generated", str(out), "--reference", str(tmp_path), "--out", str(tmp_path / "e")]) == 2
    assert re.search(r"frame 1 of the generated trajectory .*trajectory.dcd holds coordinates that are not finite",
                     capsys.readouterr().err)


def test_a_model_on_a_system_it_does_not_know_is_refused(tmp_path, capsys):
    """The shipped alanine-dipeptide weights on the host–guest complex: refused before anything is written, as
    ``biomd run`` refuses it (they wrote shrunken nonsense frames and exited 0); zero replicas are refused too."""
    out = tmp_path / "x"
    assert main(["sample", "--model", "alanine-dipeptide", "--system", "host-guest", "--time", "10ps",
                 "--out", str(out)]) == 2
    assert re.search(r"the model's vocabularies do not know \d+ of the 156 modelled atoms .*--allow-transfer",
                     capsys.readouterr().err)
    assert main(["sample", "--model", "alanine-dipeptide", "--system", "alanine-dipeptide", "--time", "10ps",
                 "--replicas", "0", "--out", str(out)]) == 2
    assert "--replicas must be at least 1" in capsys.readouterr().err
    assert main(["sample", "--model", "alanine-dipeptide", "--system", "alanine-dipeptide", "--time", "10ps",
                 "--ode-steps", "0", "--out", str(out)]) == 2
    assert "--ode-steps must be at least 1, got 0" in capsys.readouterr().err  # was the solver's "n_steps"
    assert not out.exists()


def test_the_network_device_is_chosen_and_checked(tmp_path, checkpoint):
    """``--device``: the same seed gives the same frames wherever the network runs (noise stays on the CPU)."""
    import torch

    from openmm_biomd.sample import SampleRequest, run_sample, sampling_device

    assert sampling_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="auto, cpu or cuda"):
        sampling_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="PyTorch sees no CUDA GPU"):
            sampling_device("cuda")
    devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu", "auto"]
    runs = [run_sample(SampleRequest(model=checkpoint, system="alanine-dipeptide", time="10ps", seed=3, ode_steps=3,
                                     device=d), tmp_path / d) for d in devices]
    frames = [mdtraj.load(str(tmp_path / d / "trajectory.dcd"), top=str(tmp_path / d / "topology.pdb")).xyz
              for d in devices]
    np.testing.assert_allclose(frames[0], frames[1], atol=1e-3)
    assert runs[0]["device"] == "cpu"


def test_tps_needs_an_end_structure_and_keeps_it(tmp_path, checkpoint, capsys):
    out = tmp_path / "tps"
    assert main(["sample", "--model", checkpoint, "--system", "alanine-dipeptide", "--time", "10ps",
                 "--task", "tps", "--out", str(out)]) == 2
    assert "--end" in capsys.readouterr().err
    first = tmp_path / "first"
    main(["sample", "--model", checkpoint, "--system", "alanine-dipeptide", "--time", "10ps", "--out", str(first),
          "--ode-steps", "2"])
    end_pdb = tmp_path / "end.pdb"  # a real structure (the untrained model's frames have broken bonds)
    end = mdtraj.load(str(first / "topology.pdb"))
    end.xyz = end.xyz + np.float32(0.05)  # the start moved as a whole
    end.save_pdb(str(end_pdb))
    assert main(["sample", "--model", checkpoint, "--system", "alanine-dipeptide", "--time", "10ps", "--task", "tps",
                 "--end", str(end_pdb), "--out", str(out), "--ode-steps", "2"]) == 0
    path = mdtraj.load(str(out / "trajectory.dcd"), top=str(out / "topology.pdb"))
    np.testing.assert_allclose(path.xyz[-1], mdtraj.load(str(end_pdb)).xyz[0], atol=1e-3)
    # evaluate scores the generated frames alone: a tps path's given start and end had counted as generated
    from openmm_biomd.evaluate import load_generated

    (scored,) = load_generated(out)
    np.testing.assert_array_equal(scored.xyz, path.xyz[1:-1])
    (forecast,) = load_generated(first)
    assert forecast.n_frames == mdtraj.load(str(first / "trajectory.dcd"), top=str(first / "topology.pdb")).n_frames - 1


def test_a_duration_that_is_not_whole_frames_is_refused(tmp_path, checkpoint, capsys):
    assert main(["sample", "--model", checkpoint, "--system", "alanine-dipeptide", "--time", "2.5ps",
                 "--out", str(tmp_path / "x")]) == 2
    assert "whole number" in capsys.readouterr().err
    assert main(["sample", "--model", checkpoint, "--system", "alanine-dipeptide", "--time", "1e400ps",
                 "--out", str(tmp_path / "x")]) == 2  # (had been an OverflowError traceback)
    assert "not a finite duration" in capsys.readouterr().err
    assert main(["sample", "--model", checkpoint, "--system", "alanine-dipeptide", "--time", "10ps",
                 "--ode-steps", str(10**20), "--out", str(tmp_path / "x")]) == 2
    assert "--ode-steps) must lie in [1, 10000]" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_inputs_the_task_does_not_use_and_unreadable_structures_are_refused(tmp_path, checkpoint, capsys):
    """A forgotten --task had run a forecast ignoring --end; an empty PDB was mdtraj's IndexError; a structure
    with two atoms on one spot was sampled from."""
    from openmm_biomd.data.systems import get_system

    base = ["sample", "--model", checkpoint, "--time", "10ps", "--out", str(tmp_path / "x")]
    pdb = get_system_pdb(tmp_path, get_system("alanine-dipeptide").load())
    assert main([*base, "--system", "alanine-dipeptide", "--end", str(pdb)]) == 2
    assert "the forecast task does not use --end" in capsys.readouterr().err
    assert main([*base, "--system", "alanine-dipeptide", "--task", "tps", "--end", str(pdb), "--known", "all"]) == 2
    assert "the tps task does not use --known (the inpaint task)" in capsys.readouterr().err
    (tmp_path / "empty.pdb").write_text("")
    assert main([*base, "--structure", str(tmp_path / "empty.pdb")]) == 2
    assert "empty.pdb is an empty file" in capsys.readouterr().err
    (tmp_path / "garbage.pdb").write_text("garbage\n")
    assert main([*base, "--structure", str(tmp_path / "garbage.pdb")]) == 2
    assert "start structure (--structure)" in capsys.readouterr().err
    traj = mdtraj.load(str(pdb))
    traj.xyz[0, 10] = traj.xyz[0, 8]
    traj.save_pdb(str(tmp_path / "overlap.pdb"))
    assert main([*base, "--structure", str(tmp_path / "overlap.pdb")]) == 2
    assert "puts atoms 8 and 10 (0-based) 0.000 nm apart" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_generated_frames_satisfy_the_systems_constraints_unless_asked_not_to(tmp_path, checkpoint, capsys):
    import torch

    from openmm_biomd.data.systems import get_system
    from openmm_biomd.propagator.solute_system import rigid_bonds

    rigid = rigid_bonds(get_system("alanine-dipeptide").load().system, np.arange(22))
    frames = {}
    for mode in ("auto", "none"):
        out = tmp_path / mode
        assert main(["sample", "--model", checkpoint, "--system", "alanine-dipeptide", "--time", "20ps",
                     "--out", str(out), "--ode-steps", "3", "--constraints", mode]) == 0
        summary = json.loads((out / "summary.json").read_text())
        assert summary["constraints"] == mode and summary["constrained_bonds"] == (12 if mode == "auto" else 0)
        frames[mode] = torch.from_numpy(mdtraj.load(str(out / "trajectory.dcd"), top=str(out / "topology.pdb")).xyz)
    assert rigid.max_relative_error(frames["none"]) > 0.01  # an untrained network's X–H bonds are off
    assert rigid.max_relative_error(frames["auto"]) < 1e-4  # float32 DCD
    # a structure file has no System: its own bonds to hydrogen are held at their lengths in it
    out = tmp_path / "structure"
    assert main(["sample", "--model", checkpoint, "--structure", str(tmp_path / "auto" / "topology.pdb"),
                 "--time", "10ps", "--out", str(out), "--ode-steps", "2"]) == 0
    assert json.loads((out / "summary.json").read_text())["constrained_bonds"] == 12


def test_the_projection_agrees_with_openmms_own_constraint_solver():
    import openmm
    import torch
    from openmm import unit

    from openmm_biomd.data.systems import get_system
    from openmm_biomd.propagator.solute_system import rigid_bonds

    loaded = get_system("alanine-dipeptide").load()
    rigid = rigid_bonds(loaded.system, np.arange(loaded.system.getNumParticles()))
    assert rigid.n_constraints == loaded.system.getNumConstraints() == 12
    noisy = np.asarray(loaded.positions) + np.random.default_rng(1).normal(0.0, 0.01, (22, 3))
    context = openmm.Context(loaded.system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(noisy)
    context.applyConstraints(1e-10)
    theirs = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    ours = rigid.project(torch.from_numpy(noisy)[None])[0].numpy()
    assert np.abs(theirs - noisy).max() > 0.01  # the atoms did have to move
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    # only the modelled atoms' constraints are taken: a subset drops the ones that leave it
    assert rigid_bonds(loaded.system, np.arange(5)).n_constraints == sum(
        1 for k in range(12) if max(loaded.system.getConstraintParameters(k)[:2]) < 5)


def test_inputs_whose_bonds_do_not_fit_their_topology_are_refused(tmp_path, checkpoint, capsys):
    """A structure whose coordinates belong to other atoms (here the atoms' coordinates in reverse order) ran and
    kept its broken bonds; an inpainting reference of another system had its first atoms taken as the known
    ones; a generated trajectory cut short, or read with another topology, was scored on what was left."""
    first = tmp_path / "first"
    assert main(["sample", "--model", checkpoint, "--system", "alanine-dipeptide", "--time", "10ps",
                 "--out", str(first), "--ode-steps", "2"]) == 0
    start = mdtraj.load(str(first / "topology.pdb"))
    reversed_ = start[0]
    reversed_.xyz = start.xyz[:, ::-1].copy()
    reversed_.save_pdb(str(tmp_path / "reversed.pdb"))
    message = r"frame 0 of the {} .*reversed.pdb does not fit its topology: atoms \d+ and \d+ .* bonded, are"
    capsys.readouterr()
    assert main(["sample", "--model", checkpoint, "--structure", str(tmp_path / "reversed.pdb"), "--time", "10ps",
                 "--out", str(tmp_path / "a")]) == 2
    assert re.search(message.format("start structure"), capsys.readouterr().err)
    assert main(["sample", "--model", checkpoint, "--system", "alanine-dipeptide", "--task", "tps", "--end",
                 str(tmp_path / "reversed.pdb"), "--time", "10ps", "--out", str(tmp_path / "b")]) == 2
    assert re.search(message.format("end structure"), capsys.readouterr().err)
    # a reference of another system (host-guest, 156 atoms)
    from openmm_biomd.data.systems import get_system
    from openmm_biomd.trajectory_io import write_dcd

    host_guest = get_system("host-guest").load()
    write_dcd(tmp_path / "hg.dcd", host_guest.topology, np.asarray(host_guest.positions)[None], 5.0)
    mdtraj.Trajectory(np.asarray(host_guest.positions, np.float32)[None],
                      mdtraj.Topology.from_openmm(host_guest.topology)).save_pdb(str(tmp_path / "hg.pdb"))
    assert main(["sample", "--model", checkpoint, "--system", "alanine-dipeptide", "--task", "inpaint",
                 "--reference", str(tmp_path / "hg.dcd"), "--reference-topology", str(tmp_path / "hg.pdb"),
                 "--known", "all", "--time", "10ps", "--out", str(tmp_path / "c")]) == 2
    assert "hg.dcd has 156 atoms, the start structure 22: give a reference of this system" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in "abc")
    # evaluate: a generated trajectory cut short is named (it was scored on the frames left)
    dcd = first / "trajectory.dcd"
    dcd.write_bytes(dcd.read_bytes()[:-100])
    assert main(["evaluate", "--generated", str(first), "--reference", str(tmp_path), "--out", str(tmp_path / "e")]) == 2
    assert re.search(r"trajectory.dcd is damaged: its header counts \d+ frames .* sample again into a new folder",
                     capsys.readouterr().err)
    dcd.write_bytes(b"not a trajectory" * 100)  # (mdtraj's bare "Could not open file")
    assert main(["evaluate", "--generated", str(first), "--reference", str(tmp_path), "--out", str(tmp_path / "e")]) == 2
    assert re.search(r"trajectory.dcd is damaged: it cannot be read with topology.pdb", capsys.readouterr().err)


def test_inpainting_follows_the_reference_for_the_time_asked(tmp_path, checkpoint, capsys):
    """``--task inpaint``: the known atoms follow the reference frame by frame for ``--time`` from the reference's
    first frame (the reference's length had decided, its frames were taken to be Δt apart whatever their spacing,
    a --time between whole coarse intervals was cut short, and frame 0 was the start structure's)."""
    from biomd_core.io import load_model
    from openmm_biomd.data.systems import get_system
    from openmm_biomd.trajectory_io import write_dcd

    time_grid = load_model(checkpoint).time
    dt, n = time_grid.frame_interval_ps, 2 * time_grid.coarse_stride  # two coarse intervals of the model
    loaded = get_system("alanine-dipeptide").load()
    start = np.asarray(loaded.positions)
    moving = np.stack([start + 0.002 * (k + 1) for k in range(n + 3)])  # [n + 3, 22, 3]: the molecule drifting
    write_dcd(tmp_path / "ref.dcd", loaded.topology, moving, dt)
    out = tmp_path / "inpainted"
    argv = ["sample", "--model", checkpoint, "--system", "alanine-dipeptide", "--task", "inpaint", "--reference",
            str(tmp_path / "ref.dcd"), "--reference-topology", str(get_system_pdb(tmp_path, loaded)),
            "--known", "resname ACE", "--ode-steps", "2"]
    assert main([*argv, "--time", f"{n * dt:g}ps", "--out", str(out)]) == 0
    traj = mdtraj.load(str(out / "trajectory.dcd"), top=str(out / "topology.pdb"))
    known = traj.topology.select("resname ACE")
    assert traj.n_frames == n + 1  # (not the reference's n + 3)
    np.testing.assert_allclose(traj.xyz[1:, known], moving[1:n + 1, known], atol=2e-3)
    np.testing.assert_allclose(traj.xyz[0], moving[0], atol=1e-5)  # every atom of the reference's first frame
    capsys.readouterr()
    k = time_grid.coarse_stride
    assert main([*argv, "--time", f"{(n + k) * dt:g}ps", "--out", str(tmp_path / "long")]) == 2
    assert f"needs {n + k + 1} reference frames" in capsys.readouterr().err
    assert main([*argv, "--time", f"{(n - 1) * dt:g}ps", "--out", str(tmp_path / "between")]) == 2
    assert "inpainting must span whole coarse intervals" in capsys.readouterr().err
    # an XTC says its spacing in its frame times, as a DCD does in its header
    mdtraj.Trajectory(moving.astype(np.float32), traj.topology, time=np.arange(n + 3) * 2 * dt).save_xtc(
        str(tmp_path / "ref.xtc"))
    xtc_argv = [*argv[:argv.index("--reference") + 1], str(tmp_path / "ref.xtc"), *argv[argv.index("--reference") + 2:]]
    assert main([*xtc_argv, "--time", f"{n * dt:g}ps", "--out", str(tmp_path / "xtc")]) == 2
    assert f"frames are {2 * dt:g} ps apart, the model's {dt:g} ps" in capsys.readouterr().err
    # ... by their spread from first to last, as float32 times far into a run jitter frame to frame
    late = 5e4 + np.arange(n + 3) * dt
    mdtraj.Trajectory(moving.astype(np.float32), traj.topology, time=late).save_xtc(str(tmp_path / "ref.xtc"))
    assert main([*xtc_argv, "--time", f"{n * dt:g}ps", "--out", str(tmp_path / "xtc-late")]) == 0
    # mdtraj's placeholder times 0, 1, 2, ... say nothing; a missing --reference-topology is named as such
    mdtraj.Trajectory(moving.astype(np.float32), traj.topology).save_xtc(str(tmp_path / "ref.xtc"))
    assert main([*xtc_argv, "--time", f"{n * dt:g}ps", "--out", str(tmp_path / "xtc-unsaid")]) == 0
    no_top = [*xtc_argv[:xtc_argv.index("--reference-topology") + 1], str(tmp_path / "missing.pdb"),
              *xtc_argv[xtc_argv.index("--reference-topology") + 2:]]
    capsys.readouterr()
    assert main([*no_top, "--time", f"{n * dt:g}ps", "--out", str(tmp_path / "no-top")]) == 2
    assert "the topology (--reference-topology) of the reference trajectory" in capsys.readouterr().err
    write_dcd(tmp_path / "ref.dcd", loaded.topology, moving, 2 * dt)
    assert main([*argv, "--time", f"{n * dt:g}ps", "--out", str(tmp_path / "spaced")]) == 2
    assert f"frames are {2 * dt:g} ps apart, the model's {dt:g} ps" in capsys.readouterr().err
    # a reference written by mdtraj says nothing of its spacing (a placeholder step): taken as Δt apart
    mdtraj.Trajectory(moving.astype(np.float32), traj.topology).save_dcd(str(tmp_path / "ref.dcd"))
    assert main([*argv, "--time", f"{n * dt:g}ps", "--out", str(tmp_path / "unsaid")]) == 0


def get_system_pdb(folder, loaded):
    """``loaded``'s topology and positions as ``folder/system.pdb``."""
    path = folder / "system.pdb"
    mdtraj.Trajectory(np.asarray(loaded.positions, np.float32)[None],
                      mdtraj.Topology.from_openmm(loaded.topology)).save_pdb(str(path))
    return path
