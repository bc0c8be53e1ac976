"""``biomd run`` (the main job), its resume after a kill, the alternation helper and the example scripts.

Real OpenMM and the shipped alanine-dipeptide weights, with short times.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import mdtraj
import numpy as np
import pytest

from openmm_biomd.cli import main
from openmm_biomd.data.md import read_dcd_header

REPO = Path(__file__).resolve().parents[2]
SUMMARY_KEYS = ("system", "model", "platform", "simulated_ps", "wall_s", "hybrid_ns_per_day", "md_ns_per_day",
                "speedup", "frame_interval_ps", "n_frames", "jumps_attempted", "jumps_accepted", "fallback_md_ps")


def _biomd(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from openmm_biomd.cli import main; sys.exit(main())", *args]


def _check_trajectory(out: Path, n_frames: int, interval_ps: float) -> None:
    interval_steps = int(round(interval_ps / 0.002))
    header = read_dcd_header(out / "trajectory.dcd")  # the DCD's time axis: first step, stride, timestep
    assert header["n_frames"] == n_frames
    assert header["first_step"] == header["interval_steps"] == interval_steps
    assert header["timestep_ps"] == pytest.approx(0.002, rel=1e-4)
    traj = mdtraj.load(str(out / "trajectory.dcd"), top=str(out / "topology.pdb"))
    assert len(traj) == n_frames and np.isfinite(traj.xyz).all()
    rows = [ln for ln in (out / "energies.csv").read_text().splitlines() if ln and not ln.startswith("#")]
    steps = [int(r.split(",")[0]) for r in rows]
    assert steps == [interval_steps * (i + 1) for i in range(n_frames)]


def test_biomd_run_writes_everything(tmp_path, capsys, file_contents):
    out = tmp_path / "run"
    assert main(["run", "--time", "200ps", "--out", str(out), "--md-benchmark", "1", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    for key in SUMMARY_KEYS:
        assert summary[key] is not None, key
    assert summary["simulated_ps"] == 200.0 and summary["frame_interval_ps"] == 5.0
    assert summary["n_frames"] == 40
    # the written frames' MD runs on one single-thread Context per core (at most 8)
    assert summary["frame_md_steps"] > 0 and summary["frame_md_workers"] == min(os.cpu_count() or 1, 8)
    assert summary["generated_ps"] + summary["fallback_md_ps"] + summary["handback_md_ps"] \
        + summary["remainder_md_ps"] == pytest.approx(200.0)
    assert summary["speedup"] == pytest.approx(summary["hybrid_ns_per_day"] / summary["md_ns_per_day"])
    # the denominator is plain MD timed in 2 ps slices after each of the hybrid cycles (200 ps: one 400 ps jump,
    # cut to 200), not the one-off timing before the run
    assert summary["md_timing_method"].startswith("interleaved: 2 ps")
    progress = json.loads((out / "progress.json").read_text())
    assert progress["md_interleaved"]["steps"] == 1000
    assert summary["md_ns_per_day"] == pytest.approx(progress["md_interleaved"]["ns_per_day"])
    _check_trajectory(out, 40, 5.0)
    for name in ("report.md", "energy.png", "gate.png", "ramachandran.png", "topology.pdb", "jumps.jsonl"):
        assert (out / name).stat().st_size > 0, name
    assert "speed-up" in (out / "report.md").read_text()
    assert len((out / "jumps.jsonl").read_text().splitlines()) == summary["jumps_attempted"]

    # the finished run's folder is kept from other commands and from a run under other settings
    written = file_contents(out)
    capsys.readouterr()
    assert main(["sample", "--model", "alanine-dipeptide", "--system", "alanine-dipeptide", "--time", "10ps",
                 "--out", str(out)]) == 2
    assert re.search(r"`biomd sample` would overwrite .*trajectory.dcd.* holds the output of `biomd run`",
                     capsys.readouterr().err)
    # a resume whose energies.csv or jumps.jsonl lost rows is refused naming the file (a missing CSV had been
    # found after the whole run, and a lost row or record carried on); here, of a finished run, nothing changes
    same = ["run", "--time", "200ps", "--out", str(out), "--md-benchmark", "1", "--quiet"]
    csv = (out / "energies.csv").read_text().splitlines(keepends=True)
    for name, damaged, message in (
            ("energies.csv", "".join(csv[:3] + csv[4:]), "energies.csv is damaged: it holds 39 rows for the 40 frames"),
            ("energies.csv", None, "energies.csv is missing, though the run has written 40 frames"),
            ("jumps.jsonl", written[out / "jumps.jsonl"][:-10].decode(), "jumps.jsonl is damaged: it holds")):
        (out / name).unlink()
        if damaged is not None:
            (out / name).write_text(damaged)
        assert main(same) == 2
        err = capsys.readouterr().err
        assert message in err and "start again in a new output directory" in err, err
        (out / name).write_bytes(written[out / name])
        assert file_contents(out) == written
    (out / "checkpoint.zip").unlink()  # even without its checkpoint (the trajectory used to be deleted)
    del written[out / "checkpoint.zip"]
    assert main(["run", "--time", "100ps", "--out", str(out), "--md-benchmark", "1", "--quiet", "--seed", "4"]) == 2
    err = capsys.readouterr().err
    assert "holds a run with other settings: seed (there: 0, now: 4); time (there: '200ps', now: '100ps')" in err
    assert file_contents(out) == written
    assert main(same) == 2  # nor with the same settings: a fresh start had deleted the trajectory
    err = capsys.readouterr().err
    assert "checkpoint.zip is missing, but" in err and "records 100000 steps run" in err, err
    assert file_contents(out) == written


def test_biomd_run_refuses_a_folder_of_files_it_did_not_write(tmp_path, capsys, file_contents):
    """A sample's folder, or the user's own trajectory: refused before any setting up, and left as it was."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "trajectory.dcd").write_bytes(b"the user's frames")
    (out / "notes.txt").write_text("mine")
    assert main(["run", "--time", "100ps", "--out", str(out), "--md-benchmark", "1", "--quiet"]) == 2
    assert "`biomd run` would overwrite trajectory.dcd in" in capsys.readouterr().err
    assert file_contents(out) == {out / "trajectory.dcd": b"the user's frames", out / "notes.txt": b"mine"}


def test_biomd_run_resumes_after_a_kill(tmp_path):
    """Killed mid-run and started again: no frame lost or written twice (with the sampler steered and a
    shorter hand-back thermalisation, so those options go through a whole run and its resume too)."""
    out = tmp_path / "run"
    args = _biomd("run", "--time", "400ps", "--jump", "100", "--out", str(out), "--md-benchmark", "1", "--quiet",
                  "--steering", "0.5", "--thermalize-steps", "50")
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    progress = out / "progress.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if progress.exists() and json.loads(progress.read_text())["step"] >= 50000:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be killed; " + proc.stderr.read().decode()[-500:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(progress.read_text())["step"]
    assert 0 < killed_at < 200000
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    # stdout is the JSON digest alone (mdtraj's DCD plugin had greeted each file read back on it, ahead of it)
    assert json.loads(done.stdout)["n_frames"] == 80 and "dcdplugin" not in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_frames"] == 80 and summary["steering"] == 0.5 and summary["thermalize_steps"] == 50
    _check_trajectory(out, 80, 5.0)


def test_biomd_run_refuses_other_settings_in_the_same_directory(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "progress.json").write_text(json.dumps({"step": 10, "wall_s": 1.0, "md": None, "settings": {"x": 1}}))
    (out / "checkpoint.zip").write_bytes(b"not a zip")
    assert main(["run", "--time", "100ps", "--out", str(out), "--md-benchmark", "1", "--quiet"]) == 2
    assert "other settings" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value, message", [
    ("--time", "0ps", "--time must be positive, got '0ps'"),  # was OpenMM's "Could not open file"
    ("--report-interval", "0", "--report-interval must be positive and finite (ps), got 0"),  # was the default
    ("--report-interval", "-5", "--report-interval must be positive"),
    ("--jump", "-10", "--jump must be positive"),
    # each was an OverflowError or ZeroDivisionError traceback, NaN a failure deep in the sampler (steering) or
    # 0 (interleave) that bound the folder to NaN, 5.001 ps frames written every 5 ps and reported as 5.001
    ("--jump", "inf", "--jump must be positive and finite (ps), got inf"),
    ("--md-benchmark", "inf", "--md-benchmark must be positive and finite"),
    ("--steering", "nan", "--steering must be >= 0 and finite, got nan"),
    ("--md-interleave", "nan", "--md-interleave must be >= 0 and finite, got nan"),
    ("--report-interval", "5.001", "the --report-interval 5.001 ps is not a whole number of 2 fs integrator steps"),
    ("--report-interval", "0.001", "is not a whole number of 2 fs integrator steps"),
    ("--time", "1fs", "the --time 0.001 ps is not a whole number of 2 fs integrator steps"),
    ("--reference", str(REPO / "no-such-run"), "no-such-run has no metadata.json"),  # was found after the run
    ("--seed", "-1", "argument --seed: a seed is a whole number >= 0, not -1"),  # was numpy's "expected
    # non-negative integer"
    ("--ode-steps", "0", "--ode-steps must be at least 1"),
    ("--thermalize-steps", "-1", "--thermalize-steps must be at least 0"),
])
def test_biomd_run_names_the_flag_of_a_value_out_of_range(tmp_path, capsys, flag, value, message):
    out = tmp_path / "run"
    status = main(["run", "--time", "10ps", "--out", str(out), "--quiet", flag, value])
    assert status == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_alternate_accounts_for_every_picosecond(alanine_propagator):
    from openmm_biomd.propagator.schedule import alternate, phase_lengths_ps

    propagator = alanine_propagator
    start = propagator.simulation.currentStep
    report = alternate(propagator, 130.0, ml_ps=100.0, md_ps=10.0)
    assert propagator.simulation.currentStep - start == 65000
    parts = (report.generated_ps + report.handback_md_ps + report.fallback_md_ps + report.ml_phase_md_ps
             + report.md_phase_ps)
    assert parts == pytest.approx(report.total_ps) == pytest.approx(130.0)
    assert report.md_phase_ps == pytest.approx(10.0)  # 100 ML, 10 MD, then 20 ML
    assert report.phases == 2
    assert phase_lengths_ps(None, 50.0, 0.9) == pytest.approx((450.0, 50.0))
    with pytest.raises(ValueError, match="exactly two"):
        phase_lengths_ps(100.0, 10.0, 0.5)


@pytest.fixture(scope="module")
def alanine_propagator():
    import openmm
    import openmm.app as app
    import openmm.unit as unit

    from openmm_biomd.data.systems import get_system
    from openmm_biomd.propagator import GenerativePropagator, HandBackConfig

    loaded = get_system("alanine-dipeptide").load()
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 0.002 * unit.picoseconds)
    simulation = app.Simulation(loaded.topology, loaded.system, integrator,
                                openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
    simulation.context.setPositions(np.asarray(loaded.positions))
    simulation.minimizeEnergy(maxIterations=200)
    return GenerativePropagator(simulation, "alanine-dipeptide", jump_ps=100,
                                handback=HandBackConfig(thermalize_steps=100, minimize_iterations=50))


@pytest.mark.parametrize("script, args, expect", [
    ("replace_step.py", ["--time-ps", "100"], "jumps accepted 1/1"),
    ("alternate_ml_md.py", ["--time-ps", "120", "--ml-ps", "100", "--md-ps", "10"], '"md_phase_ps": 10.0'),
])
def test_example_scripts_run(tmp_path, script, args, expect):
    done = subprocess.run([sys.executable, str(REPO / "examples" / script), *args, "--out", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert expect in done.stdout
    assert (tmp_path / "trajectory.dcd").stat().st_size > 0
