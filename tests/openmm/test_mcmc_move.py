"""``GenerativeJumpMove``: the propagator's jump as an openmmtools MCMC move (real model, real OpenMM, no mocks).

The shipped ``alanine-dipeptide`` model on the bundled alanine dipeptide (OBC1
implicit solvent); jumps of 100 ps (one coarse step) with a short hand-back.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import openmm
import openmm.unit as unit
import pytest
import torch
from openmmtools import cache, mcmc, multistate, states, utils

from openmm_biomd.propagator import GenerativePropagator, HandBackConfig
from openmm_biomd.propagator.mcmc import (
    GenerativeJumpMove,
    ModelMismatchError,
    UnsupportedSystemError,
    topology_from_dict,
    topology_to_dict,
)

REPO = Path(__file__).resolve().parents[2]
MODEL = "alanine-dipeptide"
SHORT = HandBackConfig(relax_steps=50, minimize_iterations=50)


@pytest.fixture(scope="module")
def alanine_implicit():
    from openmm_biomd.data.systems import get_system

    return get_system("alanine-dipeptide").load()


def _cpu_cache() -> cache.ContextCache:
    return cache.ContextCache(platform=openmm.Platform.getPlatformByName("CPU"), platform_properties={"Threads": "1"})


def _move(alanine_implicit, **kwargs) -> GenerativeJumpMove:
    kwargs.setdefault("handback", SHORT)
    kwargs.setdefault("jump_ps", 100)
    return GenerativeJumpMove(MODEL, topology=alanine_implicit.topology, **kwargs)


def _max_constraint_error(system, positions_nm: np.ndarray) -> float:
    worst = 0.0
    for k in range(system.getNumConstraints()):
        i, j, d = system.getConstraintParameters(k)
        r = np.linalg.norm(positions_nm[i] - positions_nm[j])
        worst = max(worst, abs(r - d.value_in_unit(unit.nanometer)) / d.value_in_unit(unit.nanometer))
    return worst


def test_apply_is_the_propagators_jump_and_reuses_the_propagator(alanine_implicit):
    """One apply == GenerativePropagator.jump on a Simulation (same seed; no stochastic MD in the hand-back, as
    Langevin noise comes from each Context's own stream); a second apply reuses the cached propagator (no
    re-featurisation) and uses the gate statistics shipped with the model."""
    deterministic = HandBackConfig(relax_steps=0, thermalize_steps=0, minimize_iterations=50)
    move = _move(alanine_implicit, handback=deterministic)
    thermo = states.ThermodynamicState(alanine_implicit.system, 300 * unit.kelvin)
    sampler = states.SamplerState(alanine_implicit.positions * unit.nanometer)
    context_cache = _cpu_cache()
    move.apply(thermo, sampler, context_cache=context_cache)

    simulation = openmm.app.Simulation(
        alanine_implicit.topology, copy.deepcopy(alanine_implicit.system),
        openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 2 * unit.femtosecond),
        openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
    simulation.context.setPositions(alanine_implicit.positions)
    propagator = GenerativePropagator(simulation, MODEL, jump_ps=100, seed=move.seed_for(300.0, 0),
                                      handback=deterministic)
    record = propagator.jump()
    expected = simulation.context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    got = sampler.positions.value_in_unit(unit.nanometer)
    assert record["outcome"] == move.last_records[0]["outcome"]
    assert np.array_equal(got, expected), np.abs(got - expected).max()
    assert not np.allclose(got, alanine_implicit.positions, atol=0.01)  # it moved

    move.apply(thermo, sampler, context_cache=context_cache)
    summary = move.summary()
    assert summary["propagators_built"] == 1 and summary["applications"] == 2
    assert move.n_proposed == 2 and move.n_accepted + move.n_fallback == 2
    assert "calibrated" not in summary["propagators"][0]["energy_reference"]["source"]
    assert summary["propagators"][0]["jumps_attempted"] == 2
    assert move.n_accepted == 0 or move.generated_ps > 0
    assert np.isfinite(sampler.potential_energy.value_in_unit(unit.kilojoule_per_mole))
    assert _max_constraint_error(alanine_implicit.system, sampler.positions.value_in_unit(unit.nanometer)) < 1e-4

    move.reset_statistics()
    assert move.n_proposed == 0 and move.n_accepted == 0 and move.fraction_accepted is None
    assert move.statistics["applications"] == 2  # kept: it drives the seeds, so noise never repeats


def test_sequence_with_langevin_dynamics(alanine_implicit):
    context_cache = _cpu_cache()
    jump = _move(alanine_implicit, seed=3, n_jumps=2)
    langevin = mcmc.LangevinDynamicsMove(timestep=2 * unit.femtosecond, collision_rate=1 / unit.picosecond,
                                         n_steps=50, reassign_velocities=True)
    sequence = mcmc.SequenceMove([jump, langevin])
    thermo = states.ThermodynamicState(alanine_implicit.system, 310 * unit.kelvin)
    sampler = states.SamplerState(alanine_implicit.positions * unit.nanometer)
    sequence.apply(thermo, sampler, context_cache=context_cache)
    stats = sequence.statistics
    assert stats[0]["n_proposed"] == 2 and stats[0]["n_accepted"] + stats[0]["n_fallback"] == 2
    positions = sampler.positions.value_in_unit(unit.nanometer)
    assert np.all(np.isfinite(positions)) and not np.allclose(positions, alanine_implicit.positions, atol=0.01)
    assert np.isfinite(sampler.potential_energy.value_in_unit(unit.kilojoule_per_mole))
    # both jumps ran in one propagator, at the state's temperature
    (built,) = jump.summary()["propagators"]
    assert built["temperature_k"] == 310.0 and built["jumps_attempted"] == 2
    assert [r["outcome"] in ("accepted", "shortened", "fallback") for r in jump.last_records] == [True, True]


def test_serialisation_round_trip_keeps_settings_and_never_the_weights(alanine_implicit):
    move = _move(alanine_implicit, seed=7, n_jumps=2, selection="solute")
    move.statistics = {"n_accepted": 3, "n_proposed": 4, "n_fallback": 1, "rejections": {"energy": 2}}
    state = utils.serialize(move)
    assert state["model"] == MODEL and len(state["model_sha256"]) == 64
    assert all(not isinstance(v, (bytes, np.ndarray, torch.Tensor)) for v in state.values())
    assert len(repr(state)) < 20_000  # topology + settings; the weights are ~100x that
    restored = utils.deserialize(copy.deepcopy(state))
    assert isinstance(restored, GenerativeJumpMove)
    assert restored.settings == move.settings and restored.model_sha256 == move.model_sha256
    assert restored.statistics == move.statistics
    assert utils.serialize(restored) == state

    # the stored topology featurises to the same graph
    from biomd_core.featurize import featurize

    assert featurize(topology_from_dict(topology_to_dict(alanine_implicit.topology))).fingerprint() == \
        featurize(alanine_implicit.topology).fingerprint()

    # deep copies (what openmmtools' samplers make; a SequenceMove's goes through serialisation) share the
    # loaded model and keep settings and counters
    clone = copy.deepcopy(move)
    assert clone.model is move.model and clone.settings == move.settings and clone.statistics == move.statistics
    (inner,) = copy.deepcopy(mcmc.SequenceMove([move])).move_list
    assert inner.model is move.model and inner.statistics == move.statistics

    tampered = copy.deepcopy(state)
    tampered["model_sha256"] = "0" * 64
    with pytest.raises(ModelMismatchError, match="sha256"):
        utils.deserialize(tampered)


def test_steering_and_early_gate_acceptance_reach_the_propagator_and_round_trip(alanine_implicit):
    """``steering`` and the gate's ``early_accept_iterations`` are plain YAML settings of the move and arrive
    in the propagator it builds: a steered sampler over the gate's geometry and a staged relaxation."""
    from biomd_core.sampling.steering import SteeredModel
    from openmm_biomd.propagator.gate import GateConfig

    move = _move(alanine_implicit, steering=0.5, gate=GateConfig(early_accept_iterations=(5,)))
    restored = utils.deserialize(copy.deepcopy(utils.serialize(move)))
    assert restored.settings == move.settings
    assert (restored.settings.steering, restored.settings.gate.early_accept_iterations) == (0.5, (5,))
    thermo = states.ThermodynamicState(alanine_implicit.system, 300 * unit.kelvin)
    sampler = states.SamplerState(alanine_implicit.positions * unit.nanometer)
    restored.apply(thermo, sampler, context_cache=_cpu_cache())
    ((_, propagator),) = restored._propagators.values()
    steered = propagator.generator.sampler.model
    assert isinstance(steered, SteeredModel) and steered.config.strength == 0.5
    assert propagator.gate.config.relaxation_stages == (5, 20)
    assert restored.n_proposed == 1 and np.all(np.isfinite(sampler.positions.value_in_unit(unit.nanometer)))
    with pytest.raises(ValueError, match="steering"):
        _move(alanine_implicit, steering=-1.0)


def test_changed_weights_file_is_refused(alanine_implicit, tmp_path, tiny_model):
    from biomd_core.io import save_model

    path = save_model(tiny_model, tmp_path / "model.safetensors")
    move = GenerativeJumpMove(path, topology=alanine_implicit.topology, allow_transfer=True)
    state = utils.serialize(move)
    assert state["model"] == str(path.resolve())
    with torch.no_grad():
        next(tiny_model.parameters()).add_(0.01)
    save_model(tiny_model, path)
    with pytest.raises(ModelMismatchError, match="weights"):
        utils.deserialize(state)

    in_memory = GenerativeJumpMove(tiny_model, topology=alanine_implicit.topology, allow_transfer=True)
    with pytest.raises(ValueError, match="in-memory model"):
        utils.serialize(in_memory)


def test_jump_off_the_model_grid_is_refused_at_construction(alanine_implicit):
    with pytest.raises(ValueError, match="whole number of the model's frame interval"):
        _move(alanine_implicit, jump_ps=12.0)  # frames are 5 ps apart
    with pytest.raises(ValueError, match="n_jumps"):
        _move(alanine_implicit, n_jumps=0)


def test_explicit_solvent_is_refused(alanine_implicit):
    topology = topology_from_dict(topology_to_dict(alanine_implicit.topology))
    water = topology.addResidue("HOH", topology.addChain("W"))
    oxygen = topology.addAtom("O", openmm.app.Element.getBySymbol("O"), water)
    for name in ("H1", "H2"):
        topology.addBond(oxygen, topology.addAtom(name, openmm.app.Element.getBySymbol("H"), water))
    with pytest.raises(UnsupportedSystemError, match="unmodelled.*HOH"):
        GenerativeJumpMove(MODEL, topology=topology)


def test_replica_exchange_with_storage_round_trip(alanine_implicit, tmp_path):
    """Two temperatures, a SequenceMove of jump + Langevin, MultiStateReporter YAML, from_storage and resume."""
    move = mcmc.SequenceMove([
        _move(alanine_implicit, seed=1),
        mcmc.LangevinDynamicsMove(timestep=2 * unit.femtosecond, collision_rate=1 / unit.picosecond, n_steps=50),
    ])
    thermo = [states.ThermodynamicState(alanine_implicit.system, t * unit.kelvin) for t in (300, 310)]
    storage = str(tmp_path / "re.nc")
    sampler = multistate.ReplicaExchangeSampler(mcmc_moves=move, number_of_iterations=2,
                                                online_analysis_interval=None)
    sampler.energy_context_cache = _cpu_cache()
    sampler.sampler_context_cache = _cpu_cache()
    reporter = multistate.MultiStateReporter(storage, checkpoint_interval=1)
    sampler.create(thermo, states.SamplerState(alanine_implicit.positions * unit.nanometer), reporter)
    sampler.run()
    jumps = [m.move_list[0] for m in sampler.mcmc_moves]
    assert [j.n_proposed for j in jumps] == [2, 2]  # one replica per state per iteration
    assert all(j.n_accepted + j.n_fallback == 2 for j in jumps)
    # the per-state copies draw different noise
    assert jumps[0].seed_for(300.0, 0) != jumps[1].seed_for(310.0, 0)
    n_accepted, n_proposed = reporter.read_mixing_statistics()
    assert n_proposed.sum() > 0
    stored = reporter.read_dict("mcmc_moves/move0")["move_list"][0]  # the YAML in the NetCDF file
    assert stored["model"] == MODEL and stored["model_sha256"] == jumps[0].model_sha256
    assert stored["statistics"]["n_proposed"] == 2
    reporter.close()

    restored = multistate.ReplicaExchangeSampler.from_storage(storage)
    restored.energy_context_cache = _cpu_cache()
    restored.sampler_context_cache = _cpu_cache()
    restored_jumps = [m.move_list[0] for m in restored.mcmc_moves]
    assert all(isinstance(j, GenerativeJumpMove) for j in restored_jumps)
    assert [j.statistics for j in restored_jumps] == [j.statistics for j in jumps]
    assert all(j.settings == jumps[0].settings and j.model_sha256 == jumps[0].model_sha256 for j in restored_jumps)
    assert restored.iteration == 2
    restored.extend(1)
    assert [m.move_list[0].n_proposed for m in restored.mcmc_moves] == [3, 3]
    assert [m.move_list[0].statistics["applications"] for m in restored.mcmc_moves] == [3, 3]
    positions = restored.sampler_states[0].positions.value_in_unit(unit.nanometer)
    assert np.all(np.isfinite(positions))
    restored._reporter.close()


def test_replica_exchange_example_runs(tmp_path):
    out = tmp_path / "re"
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "replica_exchange.py"), "--iterations", "1", "--replicas", "2",
         "--langevin-steps", "20", "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "swap acceptance" in result.stdout and "jump acceptance" in result.stdout
    assert (out / "replica_exchange.nc").exists()


def test_importing_the_propagator_does_not_import_openmmtools():
    code = ("import sys, openmm_biomd.propagator as p; assert 'openmmtools' not in sys.modules; "
            "from openmm_biomd.propagator import GenerativeJumpMove; assert 'openmmtools' in sys.modules; "
            "assert GenerativeJumpMove.__module__ == 'openmm_biomd.propagator.mcmc'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
