"""``biomd sample`` end to end with a (tiny, untrained) checkpoint: files, time axis, tasks."""

from __future__ import annotations

import json

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


def test_tps_needs_an_end_structure_and_keeps_it(tmp_path, checkpoint, capsys):
    out = tmp_path / "tps"
    assert main(["sample", "--model", checkpoint, "--system", "alanine-dipeptide", "--time", "10ps",
                 "--task", "tps", "--out", str(out)]) == 2
    assert "--end" in capsys.readouterr().err
    first = tmp_path / "first"
    main(["sample", "--model", checkpoint, "--system", "alanine-dipeptide", "--time", "10ps", "--out", str(first),
          "--ode-steps", "2"])
    end_pdb = tmp_path / "end.pdb"
    mdtraj.load(str(first / "trajectory.dcd"), top=str(first / "topology.pdb"))[-1].save_pdb(str(end_pdb))
    assert main(["sample", "--model", checkpoint, "--system", "alanine-dipeptide", "--time", "10ps", "--task", "tps",
                 "--end", str(end_pdb), "--out", str(out), "--ode-steps", "2"]) == 0
    path = mdtraj.load(str(out / "trajectory.dcd"), top=str(out / "topology.pdb"))
    np.testing.assert_allclose(path.xyz[-1], mdtraj.load(str(end_pdb)).xyz[0], atol=1e-3)


def test_a_duration_that_is_not_whole_frames_is_refused(tmp_path, checkpoint, capsys):
    assert main(["sample", "--model", checkpoint, "--system", "alanine-dipeptide", "--time", "2.5ps",
                 "--out", str(tmp_path / "x")]) == 2
    assert "whole number" in capsys.readouterr().err
