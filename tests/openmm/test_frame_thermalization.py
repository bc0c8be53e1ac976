"""Short physical MD of reported frames (:class:`~openmm_biomd.propagator.thermalize.FrameThermalizer`).

Real OpenMM throughout: the bundled alanine dipeptide (OBC1 implicit solvent, HBonds
constraints) and, in the propagator, the shipped ``alanine-dipeptide`` model.
"""

from __future__ import annotations

import os

import numpy as np
import openmm
import openmm.unit as unit
import pytest
from test_propagator import (
    DT_PS,
    FAST_HANDBACK,
    TEMPERATURE_K,
    Recorder,
    alanine_system,  # noqa: F401  (fixture)
    constraint_deviations,
    make_simulation,
    model,  # noqa: F401  (fixture)
    positions_nm,
)

from openmm_biomd.affinity import cpu_for, pinned_to_cpu
from openmm_biomd.data.md import replica_seed
from openmm_biomd.propagator import GenerativePropagator, HandBackConfig
from openmm_biomd.propagator.thermalize import FrameThermalizer

BOLTZMANN_KJ_MOL_K = 0.0083144626


@pytest.fixture(scope="module")
def minimised(alanine_system):
    """The bundled start structure minimised to convergence, ``[22, 3]`` nm, and its energy (kJ/mol)."""
    context = openmm.Context(openmm.XmlSerializer.clone(alanine_system.system), openmm.VerletIntegrator(0.001),
                             openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(np.asarray(alanine_system.positions, dtype=np.float64))
    openmm.LocalEnergyMinimizer.minimize(context, 1.0, 0)
    state = context.getState(getPositions=True, getEnergy=True)
    return (state.getPositions(asNumpy=True).value_in_unit(unit.nanometer),
            state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))


def _cpu_mask() -> set | None:
    """The calling thread's CPU mask (``None`` where the OS has no affinity interface)."""
    return os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None


def _frames_and_thermalisers(system: openmm.System, start: np.ndarray, n: int, seed: int, steps: int):
    """``n`` frames jittered around ``start``, their seeds, and thermalisers of one unpinned Context and of two
    pinned ones (``steps`` MD steps, velocities every 10)."""
    rng = np.random.default_rng(seed)
    frames = [start + rng.normal(0.0, 0.002, start.shape) for _ in range(n)]
    seeds = [replica_seed(seed + 3, 1000 * k) for k in range(n)]
    one = FrameThermalizer(system, TEMPERATURE_K, DT_PS, steps=steps, refresh_steps=10)
    two = FrameThermalizer(system, TEMPERATURE_K, DT_PS, steps=steps, refresh_steps=10, workers=2, pin=True)
    return frames, seeds, one, two


def _energies(system: openmm.System, frames: list[np.ndarray]) -> np.ndarray:
    """Potential energy of each frame ``[N, 3]`` nm, kJ/mol."""
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    energies = []
    for positions in frames:
        context.setPositions(positions)
        energies.append(context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
    return np.array(energies)


def test_thermalised_frames_are_deterministic_constrained_and_warm(alanine_system, minimised):
    """A frame's dynamics depend only on its seed (the propagator's: run seed and step); the result
    satisfies the constraints, stays near the start, and a minimised frame gains the potential energy of a
    thermal sample (equipartition: ≈ kT/2 per degree of freedom once velocities have been re-drawn a few
    times)."""
    system = alanine_system.system
    start, e_min = minimised
    thermalizer = FrameThermalizer(system, TEMPERATURE_K, DT_PS, steps=100, refresh_steps=25)
    a = thermalizer(start, seed=replica_seed(3, 1000))
    np.testing.assert_array_equal(thermalizer(start, seed=replica_seed(3, 1000)), a)
    b = thermalizer(start, seed=replica_seed(3, 2000))  # another step
    assert not np.array_equal(a, b)
    assert not np.array_equal(thermalizer(start, seed=replica_seed(4, 1000)), a)  # another run
    assert constraint_deviations(system, a).max() < 1e-4
    rmsd = np.sqrt(((a - start) ** 2).sum(axis=1).mean())
    assert 0.002 < rmsd < 0.05, rmsd  # it moves, and 0.2 ps of motion does not carry it far

    warmed = [thermalizer(start, seed=replica_seed(3, s)) for s in range(0, 40_000, 1000)]
    rises = _energies(system, warmed) - e_min
    dof = 3 * system.getNumParticles() - system.getNumConstraints() - 3
    equipartition = 0.5 * dof * BOLTZMANN_KJ_MOL_K * TEMPERATURE_K
    assert 0.5 * equipartition < np.mean(rises) < 1.5 * equipartition, (np.mean(rises), equipartition)


def test_frames_thermalised_side_by_side_are_those_of_one_context(alanine_system, minimised):
    """``many`` on two worker Contexts, each pinned to its own core, returns, frame by frame and in order,
    exactly what one unpinned Context gives (a frame depends on its seed, not on which worker ran it, where,
    or what that worker ran before); the caller's CPU mask is as it was."""
    frames, seeds, one, two = _frames_and_thermalisers(alanine_system.system, minimised[0], 7, seed=0, steps=30)
    mask = _cpu_mask()
    alone = [one(frame, seed) for frame, seed in zip(frames, seeds)]
    side_by_side = two.many(frames, seeds)
    assert _cpu_mask() == mask
    assert two.workers == 2 and len(side_by_side) == 7
    for a, b in zip(alone, side_by_side):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(side_by_side[0], side_by_side[1])
    with pytest.raises(ValueError, match="7 frames but 6 seeds"):
        two.many(frames, seeds[:-1])
    with pytest.raises(ValueError, match="workers >= 1"):
        FrameThermalizer(alanine_system.system, TEMPERATURE_K, DT_PS, steps=30, refresh_steps=10, workers=0)


def test_thermalizer_runs_a_task_beside_its_workers(alanine_system, minimised):
    """``many(..., beside=task, each=f)``: the task runs once, on the calling thread, while the other worker starts
    on the frames; ``f`` gets every frame in order on the calling thread; the frames are still exactly one
    Context's; an exception of the task or of a frame reaches the caller after the workers have stopped, and the
    thermaliser works on afterwards."""
    import threading
    import time

    start = minimised[0]
    frames, seeds, one, two = _frames_and_thermalisers(alanine_system.system, start, 6, seed=1, steps=20)
    alone = [one(frame, seed) for frame, seed in zip(frames, seeds)]
    ran_on: list[int] = []

    def task() -> None:
        ran_on.append(threading.get_ident())
        time.sleep(0.05)  # long enough for the other worker to take frames

    passed: list[tuple[int, np.ndarray, int]] = []
    beside = two.many(frames, seeds, beside=task,
                      each=lambda i, frame: passed.append((i, frame, threading.get_ident())))
    assert ran_on == [threading.get_ident()]
    for a, b in zip(alone, beside, strict=True):
        np.testing.assert_array_equal(a, b)
    # each frame passed on once, in order, on the calling thread, as it came out
    assert [i for i, _, _ in passed] == list(range(6)) and {t for _, _, t in passed} == {threading.get_ident()}
    for (_, frame, _), b in zip(passed, beside):
        assert frame is b

    def failing() -> None:
        raise RuntimeError("the task failed")

    with pytest.raises(RuntimeError, match="the task failed"):
        two.many(frames, seeds, beside=failing)
    with pytest.raises(Exception, match="wrong number of positions"):  # OpenMM refuses a frame of the wrong size
        two.many([*frames[:3], start[:5], *frames[3:]], [*seeds[:3], 1, *seeds[3:]])
    for a, b in zip(alone, two.many(frames, seeds), strict=True):
        np.testing.assert_array_equal(a, b)


def test_thermalizer_refuses_no_steps(alanine_system):
    for steps, refresh in ((0, 25), (25, 0)):
        with pytest.raises(ValueError, match="steps > 0"):
            FrameThermalizer(alanine_system.system, TEMPERATURE_K, DT_PS, steps, refresh)
    with pytest.raises(ValueError, match="frame_md_steps"):
        HandBackConfig(frame_md_steps=-1)


def test_propagator_thermalises_reported_frames_only(model, alanine_system):
    """Same seeds with and without frame MD: the reporters see other frames (near the generated ones,
    constrained), but the jump, its hand-back and the Context after it are bit for bit the same, and the
    steps and times are the same."""
    steps = 50

    def run(frame_md_steps: int, workers: int = 1, openmm_cpu: int | None = None):
        with pinned_to_cpu(openmm_cpu):  # biomd run makes its Simulation on the core it then drives it from
            sim = make_simulation(alanine_system)
        recorder = Recorder(500)
        sim.reporters.append(recorder)
        handback = HandBackConfig(frame_md_steps=frame_md_steps, frame_md_workers=workers, **FAST_HANDBACK)
        prop = GenerativePropagator(sim, model, jump_ps=10, seed=5, handback=handback, openmm_cpu=openmm_cpu)
        record = prop.jump()
        return sim, prop, recorder, record

    sim_plain, prop_plain, rec_plain, record_plain = run(0)
    sim_md, prop_md, rec_md, record_md = run(steps)
    # the jump's frames thermalised on two Contexts at once, and the Simulation driven from one core
    mask = _cpu_mask()
    sim_two, prop_two, rec_two, _ = run(steps, workers=2, openmm_cpu=cpu_for(0))
    assert prop_two.thermalizer.workers == 2
    assert _cpu_mask() == mask
    for one, two in zip(rec_md.positions, rec_two.positions, strict=True):
        np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(positions_nm(sim_two), positions_nm(sim_md))
    assert record_plain["outcome"] == record_md["outcome"] == "accepted"
    assert rec_md.steps == rec_plain.steps and rec_md.times == rec_plain.times and len(rec_md.steps) == 10
    np.testing.assert_array_equal(positions_nm(sim_md), positions_nm(sim_plain))
    assert sim_md.currentStep == sim_plain.currentStep == 5000
    assert prop_md.statistics.frame_md_steps == steps * len(rec_md.steps)
    assert prop_plain.statistics.frame_md_steps == 0 and prop_md.statistics.frame_md_wall_s > 0
    heavy = [a.index for a in alanine_system.topology.atoms() if a.element.symbol != "H"]
    for plain, moved in zip(rec_plain.positions, rec_md.positions):
        rmsd = np.sqrt(((plain - moved)[heavy] ** 2).sum(axis=1).mean())
        assert 0.0005 < rmsd < 0.05, rmsd  # heavy atoms (methyl hydrogens spin much further in 0.1 ps)
        assert constraint_deviations(alanine_system.system, moved).max() < 1e-4
    assert np.isfinite(rec_md.energies).all()
