"""The generative propagator for real: OpenMM, the shipped ``alanine-dipeptide`` model, stock reporters.

Every test drives a real ``openmm.app.Simulation`` through
:class:`~openmm_biomd.propagator.GenerativePropagator` with the shipped model
(Δt = 5 ps, k = 20: one coarse interval is 100 ps = 50,000 steps of 2 fs).
Fault injection replaces the loaded network's ``denoise`` output (NaN, 1e6);
nothing of OpenMM is mocked.  Settings are small (one or two jumps, tens of
hand-back steps) so the whole module runs in about a minute on two CPU cores.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import zipfile
from dataclasses import asdict
from pathlib import Path

import mdtraj
import numpy as np
import openmm
import openmm.unit as unit
import pytest
import torch
from openmm import app

from openmm_biomd.data.md import read_dcd_header
from openmm_biomd.data.systems import LoadedSystem, get_system
from openmm_biomd.propagator import (
    GenerativePropagator,
    HandBackConfig,
    PropagatorCheckpointError,
    PropagatorCheckpointReporter,
    TopologyMismatchError,
)
from openmm_biomd.trajectory_io import subset_topology, truncate_dcd, write_dcd

DT_PS = 0.002
TEMPERATURE_K = 300.0
PLATFORMS = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
COUNTERS = ("generated_steps", "relax_md_steps", "fallback_md_steps", "remainder_md_steps")
#: Short hand-back for the 22-atom system (a few hundredths of a second per jump).
FAST_HANDBACK = dict(minimize_iterations=50, thermalize_steps=20)


# -- fixtures and helpers ---------------------------------------------------------------
@pytest.fixture(scope="module")
def model():
    """The shipped model, loaded once (0.45 M parameters, Δt = 5 ps, k = 20)."""
    from biomd_core.io import load_model

    return load_model("alanine-dipeptide")


@pytest.fixture(scope="module")
def alanine_system():
    """The bundled alanine dipeptide (OBC1 implicit solvent, HBonds constraints)."""
    return get_system("alanine-dipeptide").load()


def make_simulation(loaded, platform: str = "CPU", seed: int = 1) -> app.Simulation:
    """A Simulation of a private copy of ``loaded.system``: Langevin, 2 fs, 300 K, seeded."""
    system = openmm.XmlSerializer.clone(loaded.system)
    integrator = openmm.LangevinMiddleIntegrator(TEMPERATURE_K * unit.kelvin, 1 / unit.picosecond,
                                                 DT_PS * unit.picosecond)
    integrator.setRandomNumberSeed(seed)
    properties = {"Threads": "1"} if platform == "CPU" else {}
    simulation = app.Simulation(loaded.topology, system, integrator, openmm.Platform.getPlatformByName(platform),
                                properties)
    simulation.context.setPositions(np.ascontiguousarray(loaded.positions, dtype=np.float64))
    simulation.context.setVelocitiesToTemperature(TEMPERATURE_K * unit.kelvin, seed)
    return simulation


class Recorder:
    """A reporter (dict-form ``describeNextReport``) that keeps everything it is shown."""

    def __init__(self, interval: int) -> None:
        self.interval = interval
        self.steps: list[int] = []
        self.state_steps: list[int] = []
        self.times: list[float] = []
        self.positions: list[np.ndarray] = []
        self.energies: list[float] = []
        self.boxes: list[np.ndarray] = []

    def describeNextReport(self, simulation) -> dict:
        return {"steps": self.interval - simulation.currentStep % self.interval, "periodic": False,
                "include": ["positions", "energy"]}

    def report(self, simulation, state) -> None:
        self.steps.append(int(simulation.currentStep))
        self.state_steps.append(int(state.getStepCount()))
        self.times.append(state.getTime().value_in_unit(unit.picosecond))
        self.positions.append(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer).copy())
        self.energies.append(state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
        self.boxes.append(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer).copy())


def counted_steps(summary: dict) -> int:
    return sum(summary[name] for name in COUNTERS)


def expected_steps(interval: int, first_after: int, last: int) -> list[int]:
    """Report steps of a reporter of ``interval`` in ``(first_after, last]``."""
    return [s for s in range(interval, last + 1, interval) if s > first_after]


def positions_nm(simulation) -> np.ndarray:
    state = simulation.context.getState(getPositions=True)
    return state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)


def constraint_deviations(system: openmm.System, positions: np.ndarray, box: np.ndarray | None = None) -> np.ndarray:
    """Relative deviation |r - d| / d of every constraint (minimum image when ``box`` is given)."""
    rows = [system.getConstraintParameters(c) for c in range(system.getNumConstraints())]
    i = np.array([r[0] for r in rows])
    j = np.array([r[1] for r in rows])
    d = np.array([r[2].value_in_unit(unit.nanometer) for r in rows])
    vec = positions[i] - positions[j]
    if box is not None:
        lengths = np.diag(box)
        vec -= lengths * np.round(vec / lengths)
    return np.abs(np.linalg.norm(vec, axis=1) - d) / d


def bond_lengths(topology, positions: np.ndarray) -> np.ndarray:
    pairs = np.array([(b[0].index, b[1].index) for b in topology.bonds()])
    return np.linalg.norm(positions[pairs[:, 0]] - positions[pairs[:, 1]], axis=-1)


def assert_sane_alanine(topology, positions: np.ndarray) -> None:
    """Finite, every bond between 0.09 and 0.17 nm (C–H ≈ 0.109, C–C ≈ 0.153), molecule < 1.5 nm across."""
    assert np.isfinite(positions).all()
    lengths = bond_lengths(topology, positions)
    assert lengths.min() > 0.09 and lengths.max() < 0.17, (lengths.min(), lengths.max())
    assert np.ptp(positions, axis=0).max() < 1.5


def state_data_rows(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path) as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    step_col = next(i for i, name in enumerate(header) if "Step" in name)
    time_col = next(i for i, name in enumerate(header) if "Time" in name)
    return (np.array([int(r[step_col]) for r in body]), np.array([float(r[time_col]) for r in body]))


@contextlib.contextmanager
def poisoned(model, kind: str):
    """Replace the loaded network's velocity output by NaN or by 1e6 (fault injection), then restore it.

    ``denoise_biased`` is what every velocity evaluation ends in (``denoise`` calls it too)."""
    original = model.net.denoise_biased

    def denoise_biased(*args, **kwargs):
        v = original(*args, **kwargs)
        return torch.full_like(v, float("nan")) if kind == "nan" else torch.full_like(v, 1.0e6)

    model.net.denoise_biased = denoise_biased  # an instance attribute shadows the method
    try:
        yield
    finally:
        del model.net.denoise_biased


# -- 1. steps, time and reporters -----------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Casting xyz dtype")  # mdtraj XTCReporter casts float64 positions
@pytest.mark.parametrize("platform", PLATFORMS)
def test_step_advances_exactly_and_reporters_see_every_step(platform, model, alanine_system, tmp_path):
    """``step(n)`` = 2 jumps + remainder: step and clock exact, every reporter at its own steps."""
    assert {"Reference", "CPU"} <= set(PLATFORMS)
    sim = make_simulation(alanine_system, platform)
    interval = 500        # 1 ps: five reports per 5 ps model frame, so most reports are sub-grid frames
    odd_interval = 1250   # 2.5 ps, for mdtraj's XTC reporter (old tuple describeNextReport)
    grid_interval = 2500  # one model frame, for mdtraj's DCD reporter
    files = {name: tmp_path / name for name in ("omm.dcd", "state.csv", "md.xtc", "md.dcd")}
    recorder = Recorder(interval)
    sim.reporters += [
        app.DCDReporter(str(files["omm.dcd"]), interval),
        app.StateDataReporter(str(files["state.csv"]), interval, step=True, time=True, potentialEnergy=True,
                              temperature=True),
        mdtraj.reporters.XTCReporter(str(files["md.xtc"]), odd_interval),
        mdtraj.reporters.DCDReporter(str(files["md.dcd"]), grid_interval),
        recorder,
    ]
    start = 100
    sim.step(start)  # plain MD first: the propagator must count from wherever the simulation is
    relax = 50
    prop = GenerativePropagator(sim, model, jump_ps=100, seed=3,
                                handback=HandBackConfig(relax_steps=relax, **FAST_HANDBACK))
    assert prop.jump_steps == 50_000
    n = 2 * (prop.jump_steps + relax) + 777
    prop.step(n)
    end = start + n

    assert sim.currentStep == end and sim.context.getStepCount() == end
    assert sim.context.getTime().value_in_unit(unit.picosecond) == pytest.approx(end * DT_PS, abs=1e-9)
    summary = prop.summary()
    assert counted_steps(summary) == n
    assert summary["jumps_attempted"] >= 2
    assert summary["jumps_accepted"] + summary["jumps_fallback"] == summary["jumps_attempted"]
    assert summary["generated_steps"] > 0

    steps = expected_steps(interval, start, end)
    assert len(steps) == end // interval
    # the custom reporter: currentStep, State step and State time agree, positions and energies finite
    assert recorder.steps == steps and recorder.state_steps == steps
    np.testing.assert_allclose(recorder.times, np.array(steps) * DT_PS, rtol=0, atol=1e-9)
    assert np.isfinite(recorder.energies).all()
    for frame in recorder.positions:
        assert_sane_alanine(sim.topology, frame)

    # OpenMM's StateDataReporter: one row per report, steps exact, times = steps·dt, no duplicate, no gap
    csv_steps, csv_times = state_data_rows(files["state.csv"])
    np.testing.assert_array_equal(csv_steps, steps)
    np.testing.assert_allclose(csv_times, csv_steps * DT_PS, rtol=0, atol=1e-9)

    # OpenMM's DCDReporter: header time axis (first step, interval, dt) and one frame per report
    header = read_dcd_header(files["omm.dcd"])
    assert header["n_frames"] == len(steps)
    assert header["first_step"] == interval and header["interval_steps"] == interval
    assert header["timestep_ps"] == pytest.approx(DT_PS, rel=1e-5)
    top = mdtraj.Topology.from_openmm(sim.topology)
    dcd = mdtraj.load_dcd(str(files["omm.dcd"]), top=top)
    assert dcd.n_frames == len(steps) and np.isfinite(dcd.xyz).all()
    # each DCD frame is the frame of its own step (float32 Å in the file)
    np.testing.assert_allclose(dcd.xyz, np.array(recorder.positions), atol=1e-4)

    # mdtraj's XTCReporter (tuple describeNextReport): its own steps and times, every 2.5 ps
    xtc_steps = expected_steps(odd_interval, start, end)
    with mdtraj.formats.XTCTrajectoryFile(str(files["md.xtc"])) as fh:
        xyz, times, xtc_step, _ = fh.read()
    np.testing.assert_array_equal(xtc_step, xtc_steps)
    np.testing.assert_allclose(times, np.array(xtc_steps) * DT_PS, rtol=1e-6, atol=1e-4)
    assert np.isfinite(xyz).all()
    # mdtraj's DCDReporter: one frame per model frame
    md_dcd = mdtraj.load_dcd(str(files["md.dcd"]), top=top)
    assert md_dcd.n_frames == len(expected_steps(grid_interval, start, end))
    recorded = dict(zip(recorder.steps, recorder.positions))
    np.testing.assert_allclose(md_dcd.xyz, [recorded[s] for s in expected_steps(grid_interval, start, end)],
                               atol=1e-4)


# -- 2. checkpoints ------------------------------------------------------------------------
def _context_snapshot(sim) -> dict:
    state = sim.context.getState(getPositions=True, getVelocities=True)
    return {"step": sim.currentStep, "time": state.getTime().value_in_unit(unit.picosecond),
            "positions": state.getPositions(asNumpy=True).value_in_unit(unit.nanometer),
            "velocities": state.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond)}


@pytest.mark.parametrize("frame_md_steps", [0, 25])
def test_checkpoint_round_trip_continues_like_the_uninterrupted_run(frame_md_steps, model, alanine_system, tmp_path):
    """save/load restores step, time, positions, velocities, RNG, history and statistics.

    The continuation from the loaded checkpoint is bit-identical to the uninterrupted run, also when every
    reported frame gets its own short MD (seeded by its step, so it needs no state of its own).  The jump
    log is cut back to the checkpoint's records: a run killed after logging more would count them twice.
    """
    relax = 50
    handback = HandBackConfig(relax_steps=relax, frame_md_steps=frame_md_steps, **FAST_HANDBACK)
    chk, log = tmp_path / "run.chk", tmp_path / "jumps.jsonl"

    sim_a = make_simulation(alanine_system)
    rec_a = Recorder(500)
    sim_a.reporters.append(rec_a)
    prop_a = GenerativePropagator(sim_a, model, jump_ps=5, seed=7, handback=handback, log_file=log)
    cycle = prop_a.jump_steps + relax
    prop_a.step(2 * cycle)
    prop_a.save_checkpoint(chk)
    logged_at_checkpoint = log.read_text()
    saved = _context_snapshot(sim_a)
    saved_rng = prop_a._rng.get_state().clone()
    saved_history = prop_a._history.copy()
    saved_statistics = asdict(prop_a.statistics)
    n_before = len(rec_a.steps)
    prop_a.step(2 * cycle + 333)
    after_a = rec_a.positions[n_before:]

    # a different simulation state and propagator stream: loading must replace all of it
    sim_b = make_simulation(alanine_system, seed=2)
    sim_b.step(30)
    rec_b = Recorder(500)
    sim_b.reporters.append(rec_b)
    prop_b = GenerativePropagator(sim_b, model, jump_ps=5, seed=99, handback=handback, log_file=log)
    assert log.read_text() != logged_at_checkpoint  # prop_a logged its later jumps: the "killed" run's leftovers
    state = prop_b.load_checkpoint(chk)
    assert log.read_text() == logged_at_checkpoint
    assert state["step"] == saved["step"] == 2 * cycle
    assert prop_b.seed == 7  # the run's seed: it seeds reported frames' velocities (and their frame MD)
    restored = _context_snapshot(sim_b)
    assert restored["step"] == saved["step"] and restored["time"] == saved["time"]
    np.testing.assert_array_equal(restored["positions"], saved["positions"])
    np.testing.assert_array_equal(restored["velocities"], saved["velocities"])
    assert torch.equal(prop_b._rng.get_state(), saved_rng)
    np.testing.assert_array_equal(prop_b._history, saved_history)
    assert asdict(prop_b.statistics) == saved_statistics
    assert counted_steps(prop_b.summary()) == 2 * cycle

    prop_b.step(2 * cycle + 333)
    assert rec_b.steps == rec_a.steps[n_before:]
    # Same platform (CPU, one thread), same torch build: the continuation is bit-identical.
    np.testing.assert_array_equal(np.array(rec_b.positions), np.array(after_a))
    np.testing.assert_array_equal(rec_b.energies, rec_a.energies[n_before:])
    assert counted_steps(prop_b.summary()) == sim_b.currentStep == 4 * cycle + 333
    np.testing.assert_array_equal(positions_nm(sim_b), positions_nm(sim_a))

    def timeless(record: dict) -> dict:
        return {key: value for key, value in record.items() if key != "wall_s"}

    # the log holds each jump once, as the uninterrupted run logged them
    assert [timeless(json.loads(line)) for line in log.read_text().splitlines()] == \
        [timeless(json.loads(json.dumps(record))) for record in prop_a.records]


def test_checkpoints_land_on_cycle_boundaries_and_count_plain_md(model, alanine_system, tmp_path):
    """A checkpoint due inside a cycle's relax MD waits for the cycle's end; one inside plain MD counts its steps."""
    chk = tmp_path / "run.chk"
    sim = make_simulation(alanine_system)
    relax = 1000
    prop = GenerativePropagator(sim, model, jump_ps=5, seed=5,
                                handback=HandBackConfig(relax_steps=relax, **FAST_HANDBACK))
    sim.reporters.append(PropagatorCheckpointReporter(prop, chk, 3000))

    def stored() -> dict:
        return json.loads(zipfile.ZipFile(chk).read("propagator.json"))

    prop.step(prop.jump_steps + relax)  # jump to 2500, relax MD to 3500: the checkpoint is due at 3000
    assert stored()["step"] == 3500  # written at the cycle's end, not in the middle of its relax MD
    assert counted_steps(stored()["statistics"]) == 3500

    prop.step(3000)  # 3000 steps < one cycle: plain remainder MD, the checkpoint is due at 6000
    assert stored()["step"] == 6000
    assert counted_steps(stored()["statistics"]) == 6000  # includes the 2500 remainder steps done so far

    sim_b = make_simulation(alanine_system, seed=2)
    prop_b = GenerativePropagator(sim_b, model, jump_ps=5, seed=5,
                                  handback=HandBackConfig(relax_steps=relax, **FAST_HANDBACK))
    prop_b.load_checkpoint(chk)
    prop_b.step(500)
    assert sim_b.currentStep == sim.currentStep == 6500
    assert counted_steps(prop_b.summary()) == counted_steps(prop.summary()) == 6500
    np.testing.assert_array_equal(positions_nm(sim_b), positions_nm(sim))


KILLED_RUN_SCRIPT = '''
"""A propagator run with a checkpoint reporter and a DCD; ``python this.py DIR`` kills itself after a checkpoint."""
import os
import signal
import sys
from pathlib import Path

INTERVAL = 2500           # reports and checkpoints every model frame (5 ps)
TOTAL = 2 * 50_000 + 600  # two 100 ps jumps and 600 steps of plain MD


def build(workdir, append, model="alanine-dipeptide"):
    import openmm
    import openmm.unit as unit
    import torch
    from openmm import app

    from openmm_biomd.data.systems import get_system
    from openmm_biomd.propagator import GenerativePropagator, HandBackConfig, PropagatorCheckpointReporter

    torch.set_num_threads(1)
    workdir = Path(workdir)
    loaded = get_system("alanine-dipeptide").load()
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 2 * unit.femtosecond)
    integrator.setRandomNumberSeed(11)
    sim = app.Simulation(loaded.topology, loaded.system, integrator, openmm.Platform.getPlatformByName("CPU"),
                         {"Threads": "1"})
    sim.context.setPositions(loaded.positions)
    sim.context.setVelocitiesToTemperature(300 * unit.kelvin, 11)
    prop = GenerativePropagator(sim, model, jump_ps=100, seed=11,
                                handback=HandBackConfig(relax_steps=0, thermalize_steps=20, minimize_iterations=50))
    sim.reporters.append(app.DCDReporter(str(workdir / "traj.dcd"), INTERVAL, append=append))
    sim.reporters.append(PropagatorCheckpointReporter(prop, workdir / "run.chk", INTERVAL))
    return sim, prop


class KillAfterCheckpoint:
    """SIGKILL this process at the first report after a checkpoint exists (after the DCD got that frame)."""

    def __init__(self, path):
        self.path = Path(path)

    def describeNextReport(self, simulation):
        return {"steps": INTERVAL - simulation.currentStep % INTERVAL, "periodic": None, "include": []}

    def report(self, simulation, state):
        if self.path.exists():
            os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    sim, prop = build(sys.argv[1], append=False)
    sim.reporters.append(KillAfterCheckpoint(Path(sys.argv[1]) / "run.chk"))
    prop.step(TOTAL)
    sys.exit("the run was not killed")
'''


def test_resume_after_sigkill_loses_and_duplicates_no_frame(model, tmp_path):
    """A run SIGKILLed after a checkpoint and resumed equals an uninterrupted run, frame for frame.

    Resuming = truncate the DCD to the checkpoint's frame count, load the checkpoint, append.
    """
    script = tmp_path / "run_propagator.py"
    script.write_text(KILLED_RUN_SCRIPT)
    killed = tmp_path / "killed"
    killed.mkdir()
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.run([sys.executable, str(script), str(killed)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]

    spec = importlib.util.spec_from_file_location("run_propagator", script)
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    chk_step = json.loads(zipfile.ZipFile(killed / "run.chk").read("propagator.json"))["step"]
    assert chk_step == 50_000  # deferred to the end of the first jump's cycle
    written = read_dcd_header(killed / "traj.dcd")["n_frames"]
    keep = chk_step // run.INTERVAL
    assert written > keep  # the killed run wrote frames after its checkpoint: appending blindly would duplicate them

    truncate_dcd(killed / "traj.dcd", keep)
    sim, prop = run.build(killed, append=True, model=model)
    prop.load_checkpoint(killed / "run.chk")
    assert sim.currentStep == chk_step
    prop.step(run.TOTAL - sim.currentStep)
    assert sim.currentStep == run.TOTAL and counted_steps(prop.summary()) == run.TOTAL
    del sim.reporters[:]  # close the DCD

    reference = tmp_path / "reference"
    reference.mkdir()
    sim_ref, prop_ref = run.build(reference, append=False, model=model)
    prop_ref.step(run.TOTAL)
    del sim_ref.reporters[:]

    n_frames = run.TOTAL // run.INTERVAL
    for path in (killed / "traj.dcd", reference / "traj.dcd"):
        header = read_dcd_header(path)
        assert header["n_frames"] == n_frames
        assert header["first_step"] == header["interval_steps"] == run.INTERVAL
    top = mdtraj.Topology.from_openmm(sim.topology)
    resumed = mdtraj.load_dcd(str(killed / "traj.dcd"), top=top)
    uninterrupted = mdtraj.load_dcd(str(reference / "traj.dcd"), top=top)
    assert resumed.n_frames == uninterrupted.n_frames == n_frames
    assert np.isfinite(resumed.xyz).all()
    # no lost or duplicated frame: frame by frame the same as the run that was never killed
    np.testing.assert_array_equal(resumed.xyz, uninterrupted.xyz)


def test_damaged_checkpoints_are_refused_and_leave_the_simulation_alone(model, alanine_system, tmp_path):
    sim = make_simulation(alanine_system)
    prop = GenerativePropagator(sim, model, jump_ps=5, handback=HandBackConfig(**FAST_HANDBACK))
    good = tmp_path / "good.chk"
    prop.save_checkpoint(good)
    sim.step(20)
    before = positions_nm(sim)

    data = good.read_bytes()
    truncated = tmp_path / "truncated.chk"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.chk"
    garbage.write_bytes(os.urandom(2048))

    def rezipped(name: str, edit_state) -> Path:
        """A valid zip of the good checkpoint with its propagator state edited."""
        with zipfile.ZipFile(good) as zin, zipfile.ZipFile(tmp_path / name, "w") as zout:
            state = json.loads(zin.read("propagator.json"))
            edit_state(state)
            zout.writestr("openmm.chk", zin.read("openmm.chk"))
            zout.writestr("propagator.json", json.dumps(state))
        return tmp_path / name

    damaged = rezipped("damaged.chk", lambda state: state.update(rng=state["rng"][:16]))  # random stream cut short
    # a counter edited into a string passed the load and failed in the summary's arithmetic
    edited = rezipped("edited.chk", lambda state: state["statistics"].update(jumps_attempted="3"))
    cases = [(truncated, "not a readable propagator checkpoint"), (garbage, "not a readable propagator checkpoint"),
             (tmp_path / "missing.chk", "not a readable propagator checkpoint"),
             (damaged, "damaged propagator checkpoint"),
             (edited, r"damaged propagator checkpoint: TypeError\(\"statistics.jumps_attempted is '3', not a whole")]
    for path, message in cases:
        with pytest.raises(PropagatorCheckpointError, match=message) as info:
            prop.load_checkpoint(path)
        assert str(path) in str(info.value)
        assert sim.currentStep == 20  # nothing was restored
        np.testing.assert_array_equal(positions_nm(sim), before)

    prop.load_checkpoint(good)
    assert sim.currentStep == 0


def test_checkpoint_of_another_model_is_refused(model, alanine_system, tmp_path):
    sim = make_simulation(alanine_system)
    prop = GenerativePropagator(sim, model, jump_ps=5, handback=HandBackConfig(**FAST_HANDBACK))
    chk = tmp_path / "run.chk"
    prop.save_checkpoint(chk)

    other = copy.deepcopy(model)
    with torch.no_grad():
        next(other.parameters()).add_(1e-3)
    assert other.weights_hash() != model.weights_hash()
    sim_other = make_simulation(alanine_system)
    prop_other = GenerativePropagator(sim_other, other, jump_ps=5, handback=HandBackConfig(**FAST_HANDBACK))
    sim_other.step(10)
    with pytest.raises(PropagatorCheckpointError, match="resume with the same model"):
        prop_other.load_checkpoint(chk)
    assert sim_other.currentStep == 10


def test_truncate_dcd_cuts_frames_and_header_for_appending(alanine_system, tmp_path):
    rng = np.random.default_rng(0)
    frames = alanine_system.positions[None] + rng.normal(0, 0.01, (10, 22, 3))
    boxed = mdtraj.Topology.from_openmm(alanine_system.topology).to_openmm()
    boxed.setPeriodicBoxVectors(np.eye(3) * 3.0 * unit.nanometer)  # with unit-cell records between frames
    for name, topology in (("plain.dcd", alanine_system.topology), ("boxed.dcd", boxed)):
        path = tmp_path / name
        write_dcd(path, topology, frames, 5.0)
        truncate_dcd(path, 4)
        assert read_dcd_header(path)["n_frames"] == 4
        np.testing.assert_allclose(mdtraj.load_dcd(str(path), top=mdtraj.Topology.from_openmm(topology)).xyz,
                                   frames[:4], atol=1e-5)
        with open(path, "r+b") as fh:  # OpenMM appends after the cut
            dcd = app.DCDFile(fh, topology, DT_PS * unit.picosecond, append=True)
            dcd.writeModel(frames[9] * unit.nanometer)
        traj = mdtraj.load_dcd(str(path), top=mdtraj.Topology.from_openmm(topology))
        np.testing.assert_allclose(traj.xyz, frames[[0, 1, 2, 3, 9]], atol=1e-5)
        with pytest.raises(ValueError, match="fewer than"):
            truncate_dcd(path, 6)
        truncate_dcd(path, 0)
        assert read_dcd_header(path)["n_frames"] == 0


# -- 3. constraints and energies after the hand-back ---------------------------------------------
def test_handback_satisfies_constraints_with_finite_energy(model, alanine_system):
    sim = make_simulation(alanine_system)
    recorder = Recorder(1250)  # generated frames inside the jump, on and off the model grid
    sim.reporters.append(recorder)
    # no MD after the hand-back: the state checked is the hand-back's own
    prop = GenerativePropagator(sim, model, jump_ps=100, seed=2,
                                handback=HandBackConfig(relax_steps=0, thermalize_steps=0, minimize_iterations=50))
    record = prop.jump()
    assert record["outcome"] in ("accepted", "shortened")
    assert sim.currentStep == record["generated_steps"]

    system = sim.system
    assert system.getNumConstraints() > 0
    state = sim.context.getState(getPositions=True, getVelocities=True, getEnergy=True)
    positions = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    velocities = state.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond)
    assert constraint_deviations(system, positions).max() < 1e-4
    # velocities drawn after the hand-back have no component along the constraints
    for c in range(system.getNumConstraints()):
        i, j, _ = system.getConstraintParameters(c)
        r, v = positions[i] - positions[j], velocities[i] - velocities[j]
        assert abs(np.dot(r, v)) / (np.linalg.norm(r) * np.linalg.norm(v) + 1e-12) < 1e-3
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    kinetic = state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
    # equilibrium MD of this system sits near -170 kJ/mol; a broken bond or clash would be far above 0
    assert np.isfinite(energy) and energy < 0.0
    assert np.isfinite(kinetic) and kinetic > 0.0
    assert_sane_alanine(sim.topology, positions)

    # every frame a reporter saw inside the jump satisfies the constraints too
    assert recorder.steps == expected_steps(1250, 0, record["generated_steps"])
    for frame, frame_energy in zip(recorder.positions, recorder.energies):
        assert constraint_deviations(system, frame).max() < 1e-4
        assert np.isfinite(frame_energy)
        assert_sane_alanine(sim.topology, frame)


def test_steered_propagator_samples_through_the_gates_geometry(model, alanine_system):
    """``steering=`` wraps the bound model in a SteeredModel over the gate's geometry; jumps still hand back."""
    from biomd_core.sampling.steering import SteeredModel, SteeringConfig

    sim = make_simulation(alanine_system)
    prop = GenerativePropagator(sim, model, jump_ps=100, seed=2, steering=SteeringConfig(strength=1.0))
    steered = prop.generator.sampler.model
    assert isinstance(steered, SteeredModel) and steered.prior.n_atoms == prop.gate.n_atoms == 22
    assert len(steered.prior.chiral_centres) == prop.gate.n_stereocentres
    record = prop.jump()
    assert record["outcome"] in ("accepted", "shortened") and sim.currentStep == record["generated_steps"]
    assert steered.steered_evaluations > 0
    off = GenerativePropagator(make_simulation(alanine_system), model, jump_ps=100, steering=SteeringConfig(0.0))
    assert not isinstance(off.generator.sampler.model, SteeredModel)


# -- 4. a poisoned model never reaches the Context ------------------------------------------------
@pytest.mark.parametrize("kind", ["nan", "huge"])
def test_poisoned_model_falls_back_to_md_and_never_reaches_the_context(kind, model, alanine_system, tmp_path):
    sim = make_simulation(alanine_system)
    seen: list[np.ndarray] = []  # every position array handed to the Context
    set_positions = sim.context.setPositions

    def spy(positions):
        values = positions.value_in_unit(unit.nanometer) if unit.is_quantity(positions) else positions
        seen.append(np.array(values, dtype=np.float64))
        return set_positions(positions)

    sim.context.setPositions = spy
    dcd = tmp_path / "traj.dcd"
    recorder = Recorder(500)
    sim.reporters += [app.DCDReporter(str(dcd), 500), recorder]
    relax = 50
    prop = GenerativePropagator(sim, model, jump_ps=5, retries=2, seed=4,
                                handback=HandBackConfig(relax_steps=relax, **FAST_HANDBACK))
    n = 2 * (prop.jump_steps + relax) + 137
    with poisoned(model, kind):
        prop.step(n)

    summary = prop.summary()
    assert sim.currentStep == n and counted_steps(summary) == n
    assert summary["jumps_attempted"] == summary["jumps_fallback"] == 2
    assert summary["jumps_accepted"] == 0 and summary["generated_steps"] == 0
    assert summary["fallback_md_steps"] == 2 * prop.jump_steps
    assert summary["retries"] == 2 * prop.retries  # every draw of each jump's coarse block was re-drawn, then given up
    assert sum(summary["rejections"].values()) == 2 * (prop.retries + 1)
    if kind == "nan":
        assert set(summary["rejections"]) == {"finite"}
    else:
        assert "finite" not in summary["rejections"] and set(summary["rejections"]) <= {"bond", "clash"}
    assert all(r["outcome"] == "fallback" for r in prop.records)

    assert all(np.isfinite(p).all() for p in seen)
    for p in seen:
        assert_sane_alanine(sim.topology, p)
    assert recorder.steps == expected_steps(500, 0, n)
    for frame in recorder.positions:
        assert_sane_alanine(sim.topology, frame)
    del sim.reporters[:]
    traj = mdtraj.load_dcd(str(dcd), top=mdtraj.Topology.from_openmm(sim.topology))
    assert traj.n_frames == n // 500 and np.isfinite(traj.xyz).all()
    assert read_dcd_header(dcd)["n_frames"] == n // 500

    # the model is whole again once the poison is removed
    record = prop.jump()
    assert record["outcome"] in ("accepted", "shortened")


# -- 5. topology compatibility ------------------------------------------------------------------
def test_model_for_another_topology_is_refused_unless_transfer_is_allowed(model):
    host_guest = get_system("host-guest").load()
    sim = make_simulation(host_guest)
    with pytest.raises(TopologyMismatchError) as info:
        GenerativePropagator(sim, model)
    message = str(info.value)
    assert "allow_transfer=True" in message and "Fine-tune" in message and "selection=" in message
    assert "CUC" in message and "np.str_" not in message
    assert "--allow-transfer" in message and "biomd run" not in message  # the option of whichever command ran
    # residue by residue, the one with fewest unknown atoms first (a renamed ligand before a whole host)
    counts = [int(n) for n in re.findall(r"residue \w+: (\d+) atom\(s\), e\.g\. ", message)]
    assert len(counts) >= 2 and counts == sorted(counts)
    prop = GenerativePropagator(sim, model, allow_transfer=True, jump_ps=5)
    assert prop.summary()["modelled_atoms"] == host_guest.system.getNumParticles()
    assert sim.currentStep == 0


# -- 6. the TorchScript export ----------------------------------------------------------------------
def test_exported_torchscript_model_drives_the_same_jump(model, alanine_system, tmp_path):
    from biomd_core.export import export_torchscript
    from openmm_biomd.propagator.model_source import ScriptedModel

    export_torchscript(model, tmp_path)
    handback = HandBackConfig(relax_steps=50, **FAST_HANDBACK)
    results = {}
    for label, source in (("eager", model), ("script", tmp_path / "velocity_net.pt")):
        sim = make_simulation(alanine_system)
        recorder = Recorder(2500)
        sim.reporters.append(recorder)
        prop = GenerativePropagator(sim, str(source) if label == "script" else source, jump_ps=100, seed=6,
                                    handback=handback)
        record = prop.jump()
        results[label] = (prop, sim.currentStep, record, np.array(recorder.positions))
    scripted, steps, record, frames = results["script"]
    assert isinstance(scripted.model, ScriptedModel)
    assert scripted.summary()["model_sha256"] == model.weights_hash()
    assert record["outcome"] in ("accepted", "shortened")
    assert steps == results["eager"][1] == record["generated_steps"] + 50
    assert counted_steps(scripted.summary()) == steps
    # the compiled network reproduces the eager one: the same frames come out
    np.testing.assert_allclose(frames, results["eager"][3], atol=1e-4)


# -- 7. explicit solvent ---------------------------------------------------------------------------
def _density_g_cm3(system, box_nm: np.ndarray) -> float:
    mass_da = sum(system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(system.getNumParticles()))
    return mass_da * 1.66053906660e-24 / (abs(np.linalg.det(box_nm)) * 1e-21)


def test_explicit_solvent_handback_keeps_water_box_and_energy_physical(model, tmp_path):
    with contextlib.redirect_stdout(None), contextlib.redirect_stderr(None):
        from openmmtools import testsystems

        solvated = testsystems.AlanineDipeptideExplicit()  # TIP3P, PME, HBonds + rigid water
    barostat = openmm.MonteCarloBarostat(1.0 * unit.bar, TEMPERATURE_K * unit.kelvin, 25)
    barostat.setRandomNumberSeed(5)  # unseeded, its volume moves differ run to run: the test would be a lottery
    solvated.system.addForce(barostat)
    positions = np.asarray(solvated.positions.value_in_unit(unit.nanometer), dtype=np.float64)
    sim = make_simulation(LoadedSystem(solvated.topology, solvated.system, positions, {}))
    system = sim.system
    box_before = sim.context.getState().getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)
    density_before = _density_g_cm3(system, box_before)
    recorder = Recorder(500)  # frames inside the jump
    sim.reporters.append(recorder)
    relax = 20
    n_forces = system.getNumForces()
    with pytest.raises(ValueError, match="frame_md_steps needs every atom"):  # refused before touching anything
        GenerativePropagator(sim, model, jump_ps=5, allow_transfer=True, handback=HandBackConfig(frame_md_steps=25))
    assert system.getNumForces() == n_forces
    prop = GenerativePropagator(
        sim, model, jump_ps=5, seed=8, allow_transfer=True, calibration_frames=5, calibration_interval_steps=20,
        handback=HandBackConfig(relax_steps=relax, thermalize_steps=20, solvent_relax_steps=50, minimize_iterations=20))
    assert prop.restraint is not None and len(prop.modelled) == 22  # the water is not modelled
    record = prop.jump()
    assert record["outcome"] in ("accepted", "shortened")
    assert sim.currentStep == record["generated_steps"] + relax

    # the box does not move inside the jump (the barostat acts only in the hand-back's MD)
    assert recorder.steps == expected_steps(500, 0, record["generated_steps"])
    for box in recorder.boxes:
        np.testing.assert_array_equal(box, box_before)
    assert sim.context.getParameter("biomd_restraint_k") == 0.0  # the solute restraint is off again

    state = sim.context.getState(getPositions=True, getEnergy=True)
    positions = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    box_after = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    assert np.isfinite(energy) and energy < 0.0
    assert np.isfinite(positions).all()
    # water intact: every constraint (rigid TIP3P included) holds
    assert constraint_deviations(system, positions, box_after).max() < 1e-4
    # The shipped input is under-dense (tleap's solvateBox leaves gaps: 0.66 g/cm³ at the start);
    # the hand-back must keep it where it was, not blow the box up or squash it.
    density_after = _density_g_cm3(system, box_after)
    assert 0.6 < density_after < 1.2
    assert abs(density_after / density_before - 1) < 0.02
    # no water left inside the new solute: solute heavy atoms and water oxygens are apart (minimum image)
    atoms = list(sim.topology.atoms())
    solute = [a.index for a in atoms if a.residue.name not in ("HOH", "WAT") and a.element.symbol != "H"]
    oxygens = [a.index for a in atoms if a.residue.name in ("HOH", "WAT") and a.element.symbol == "O"]
    delta = positions[solute][:, None] - positions[oxygens][None]
    lengths = np.diag(box_after)
    delta -= lengths * np.round(delta / lengths)
    assert np.linalg.norm(delta, axis=-1).min() > 0.2
    assert_sane_alanine(subset_topology(sim.topology, prop.modelled), positions[prop.modelled])


# -- 8. bad arguments ---------------------------------------------------------------------------
def test_jumps_and_steps_that_are_not_whole_are_refused(model, alanine_system):
    sim = make_simulation(alanine_system)
    with pytest.raises(ValueError, match="not a whole number of model frames"):
        GenerativePropagator(sim, model, jump_ps=7)
    with pytest.raises(ValueError, match="not a whole number of 0.002 ps steps"):
        GenerativePropagator(sim, model, jump_ps=5.001)
    prop = GenerativePropagator(sim, model, jump_ps=5, handback=HandBackConfig(**FAST_HANDBACK))
    with pytest.raises(ValueError, match="not a whole number of model frames of 5.0 ps"):
        prop.jump(jump_ps=2.5)
    with pytest.raises(ValueError, match="not a whole number of 0.002 ps steps"):
        prop.jump(jump_ps=1.0001)
    with pytest.raises(ValueError, match="not a whole number"):
        prop.jump(jump_ps=0)
    with pytest.raises(TypeError, match="non-negative integer"):
        prop.step(-1)
    with pytest.raises(TypeError, match="non-negative integer"):
        prop.step(1.5)
    assert sim.currentStep == 0 and prop.summary()["jumps_attempted"] == 0

    # an integrator step that does not divide the model's frame interval
    odd = make_simulation(alanine_system)
    odd.integrator.setStepSize(0.003 * unit.picosecond)
    with pytest.raises(ValueError, match="frame interval 5.0 ps is not a whole number of integrator steps"):
        GenerativePropagator(odd, model)


def test_bound_scripted_network_with_and_without_pair_biases(tmp_path, tiny_model, alanine_graph, alanine):
    """A bound exported network denoises with the biases computed once per window; an archive exported
    before ``pair_biases`` existed (its methods hidden here) still works, denoising from ``z``."""
    from biomd_core.export import export_torchscript
    from biomd_core.model import batch_systems
    from biomd_core.model.biomd import BoundModel
    from openmm_biomd.propagator.model_source import ScriptedModel

    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a fresh model's output layer is zero: give every weight a value
        for p in tiny_model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    scripted = ScriptedModel(export_torchscript(tiny_model, tmp_path / "export")["network"])

    class OldArchive:
        """What an archive from before this version offers: no pair_biases / denoise_biased."""

        def __init__(self, net):
            self.encode, self.denoise, self.parameters = net.encode, net.denoise, net.parameters

    n = alanine_graph.n_atoms
    anchor = torch.tensor(alanine[1], dtype=torch.float32).unsqueeze(0).expand(2, -1, -1).contiguous()
    y, tau = torch.randn(2, 3, n, 3, generator=g), torch.full((2, 3, n), 0.3)
    t_ps = torch.tensor([[0.0, 2.0, 4.0]] * 2)
    new = scripted.bind(alanine_graph).field(anchor)(y, tau, t_ps)
    eager = tiny_model.bind(alanine_graph).field(anchor)(y, tau, t_ps)
    scripted.net = OldArchive(scripted.net)
    old = BoundModel(scripted, batch_systems([alanine_graph])).field(anchor)(y, tau, t_ps)
    assert torch.allclose(new, eager, atol=1e-5) and torch.allclose(old, new, atol=1e-5)
    assert new.abs().max() > 1e-3
