"""``PhysicsGate`` check by check on real alanine dipeptide (OpenMM Reference platform, the shipped model's atoms).

Each defect is made by hand from a physical frame, so the test knows which check must name it and at which
frame of a block; the early acceptance of a staged relaxation is compared with the full relaxation.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import openmm
import pytest
import yaml

from openmm_biomd.propagator.gate import EnergyReference, GateConfig, PhysicsGate

N_MD_FRAMES = 6


@pytest.fixture(scope="module")
def alanine():
    """(gate factory, ``[T, 22, 3]`` nm MD frames of the modelled atoms): short Langevin MD at 300 K."""
    from biomd_core.io import load_model
    from openmm_biomd.data.systems import get_system
    from openmm_biomd.propagator.calibration import gate_for

    loaded = get_system("alanine-dipeptide").load()
    model = load_model("alanine-dipeptide")
    integrator = openmm.LangevinMiddleIntegrator(300.0, 1.0, 0.002)
    integrator.setRandomNumberSeed(7)
    context = openmm.Context(loaded.system, integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(loaded.positions)
    openmm.LocalEnergyMinimizer.minimize(context)
    context.setVelocitiesToTemperature(300.0, 7)
    frames = []
    for _ in range(N_MD_FRAMES):
        integrator.step(250)
        frames.append(context.getState(getPositions=True).getPositions(asNumpy=True)._value)
    frames = np.asarray(frames)

    def make(config: GateConfig = GateConfig(), calibrate: bool = True):
        gate, atoms = gate_for(model, loaded, config)
        if calibrate:
            gate.calibrate(frames[:, atoms], "test MD")
        return gate

    _, atoms = gate_for(model, loaded)
    return make, frames[:, atoms]


def _bonded_pair(gate) -> tuple[int, int]:
    return tuple(int(a) for a in gate._bond_pairs[0])


def test_md_frames_pass_and_come_back_relaxed(alanine):
    make, frames = alanine
    gate = make()
    verdict = gate.check(frames)
    assert verdict.accepted and verdict.reason is None and len(verdict.energies) == N_MD_FRAMES
    assert verdict.frames.shape == frames.shape and np.abs(verdict.frames - frames).max() < 0.05
    assert gate.n_stereocentres >= 1  # the alpha carbon


def test_each_defect_is_named_with_its_frame(alanine):
    make, frames = alanine
    gate = make()
    block = frames[:3].copy()

    nan = block.copy()
    nan[1, 4, 0] = np.nan
    stretched = block.copy()
    i, j = _bonded_pair(gate)
    stretched[2, j] += 0.3 * (stretched[2, j] - stretched[2, i]) / np.linalg.norm(stretched[2, j] - stretched[2, i])
    clash = block.copy()
    far = max(range(gate.n_atoms), key=lambda a: np.linalg.norm(block[1, a] - block[1, 0]))
    clash[1, far] = block[1, 0] + [0.05, 0.0, 0.0]  # the atoms furthest apart, pressed together
    mirrored = block.copy()
    mirrored[2, :, 0] *= -1.0  # the D-form: bonds, clashes and energy as before, the alpha carbon inverted

    # (moving one atom onto another also breaks its bonds: the clash is judged with the bond check out of the way)
    no_bond_check = make(GateConfig(max_bond_deviation_nm=10.0))
    for g, frames_in, reason, frame in ((gate, nan, "finite", 1), (gate, stretched, "bond", 2),
                                        (no_bond_check, clash, "clash", 1), (gate, mirrored, "chirality", 2)):
        verdict = g.check(frames_in)
        assert (verdict.accepted, verdict.reason, verdict.frame) == (False, reason, frame), verdict.detail
        assert f"frame {frame}" in verdict.detail and verdict.frames is None
        # refused after the relaxation (a stereocentre), the frames before the failing one come back relaxed;
        # refused before it (bonds, overlaps, NaN), nothing was relaxed
        assert (verdict.passed_frames is None) == (reason != "chirality")
    np.testing.assert_allclose(gate.check(mirrored).passed_frames, gate.check(mirrored[:2]).frames, atol=1e-6)
    assert no_bond_check.check(block).accepted

    # the energy test against the stored statistics: the same frames, statistics that put them far above
    strict = EnergyReference(mean=-1e4, std=1.0, maximum=-1e4, n_frames=2, key=gate.solute.key,
                             minimize_iterations=gate.config.minimize_iterations)
    gate.energy_reference = strict
    verdict = gate.check(block)
    assert (verdict.accepted, verdict.reason, verdict.frame) == (False, "energy", 0)
    assert "equilibrium -10000.0" in verdict.detail
    # without an energy check a NaN-free frame passes whatever the statistics say
    assert make(GateConfig(check_energy=False), calibrate=False).check(block).accepted


def test_early_acceptance_stops_at_the_first_stage_that_passes(alanine):
    make, frames = alanine
    noisy = frames[0] + np.random.default_rng(3).normal(0.0, 0.01, frames[0].shape)
    full = make(GateConfig(minimize_iterations=60), calibrate=False)
    e_early = make(GateConfig(minimize_iterations=4), calibrate=False).energy(noisy)
    e_full = full.energy(noisy)
    assert e_full < e_early - 1.0  # the frame relaxes on after the early stage

    def staged(threshold: float):
        config = GateConfig(minimize_iterations=60, early_accept_iterations=[4])  # a YAML list is welcome
        gate = make(config, calibrate=False)
        gate.energy_reference = EnergyReference(mean=threshold, std=0.0, maximum=threshold, n_frames=2,
                                                key=gate.solute.key, minimize_iterations=60)
        plain = make(replace(config, early_accept_iterations=()), calibrate=False)
        plain.energy_reference = gate.energy_reference
        return gate.check(noisy[None]), plain.check(noisy[None])

    # passes after 4 iterations: accepted there, the frame handed on relaxed 4 iterations only
    early, plain = staged(e_early + 1.0)
    assert early.accepted and plain.accepted
    assert early.energies[0] == pytest.approx(e_early, abs=1e-6)
    assert plain.energies[0] == pytest.approx(e_full, abs=1e-6)
    # fails after 4, passes after the rest: accepted with (about) the full relaxation's energy
    early, plain = staged((e_early + e_full) / 2)
    assert early.accepted and plain.accepted and early.energies[0] < (e_early + e_full) / 2
    # fails at every stage: refused like the full gate refuses it, judged after the last stage
    early, plain = staged(e_full - 50.0)
    assert (early.accepted, early.reason) == (plain.accepted, plain.reason) == (False, "energy")
    assert early.energies[0] == pytest.approx(e_full, abs=20.0)


def test_workers_relax_side_by_side_with_the_same_verdicts(alanine):
    """Two worker threads give bit-identical verdicts, relaxed frames, energies and statistics to one; ``check_each``
    judges every frame as a check of that frame alone would."""
    make, frames = alanine
    rng = np.random.default_rng(5)
    noisy = frames + rng.normal(0.0, 0.004, frames.shape)
    mirrored = noisy.copy()
    mirrored[3, :, 0] *= -1.0
    one = make(GateConfig(early_accept_iterations=(5,)), calibrate=False)
    two = make(GateConfig(early_accept_iterations=(5,)), calibrate=False)
    one.workers, two.workers = 1, 2
    assert one.calibrate(frames, "md") == two.calibrate(frames, "md")

    def same(a, b):
        assert (a.accepted, a.reason, a.frame, a.detail, a.energies) == (b.accepted, b.reason, b.frame, b.detail,
                                                                         b.energies)
        assert (a.frames is None and b.frames is None) or np.array_equal(a.frames, b.frames)

    for block in (noisy, mirrored):
        same(one.check(block), two.check(block))
    each = two.check_each(mirrored)
    assert [v.accepted for v in each] == [True, True, True, False, True, True]
    assert each[3].reason == "chirality" and each[3].frame == 0
    for t, verdict in enumerate(each):
        same(verdict, one.check(mirrored[t:t + 1]))
    with pytest.raises(ValueError, match="workers"):
        PhysicsGate(one.solute, np.zeros((0, 2), int), np.array(["C"] * 22), frames[0], workers=0)


def test_cpu_platform_gate_workers_are_pinned_and_agree_with_one_thread(alanine, monkeypatch):
    """A solute above REFERENCE_PLATFORM_MAX_ATOMS relaxes on the CPU platform on pinned workers (lowered here
    so the dipeptide takes that path): each worker stays on one core of its own, and its verdicts, relaxed
    frames and energies are bit for bit those of one unpinned calling thread."""
    import os

    from openmm_biomd.propagator import gate as gate_module

    monkeypatch.setattr(gate_module, "REFERENCE_PLATFORM_MAX_ATOMS", 0)
    make, frames = alanine
    noisy = frames + np.random.default_rng(8).normal(0.0, 0.004, frames.shape)
    one = make(GateConfig(), calibrate=False)
    two = make(GateConfig(), calibrate=False)
    one.workers, two.workers = 1, 2
    assert not one._on_reference and one.calibrate(frames, "md") == two.calibrate(frames, "md")
    for a, b in zip([one.check(noisy)] + one.check_each(noisy[:3]), [two.check(noisy)] + two.check_each(noisy[:3])):
        assert (a.accepted, a.reason, a.frame, a.energies) == (b.accepted, b.reason, b.frame, b.energies)
        assert (a.frames is None and b.frames is None) or np.array_equal(a.frames, b.frames)
    if hasattr(os, "sched_getaffinity"):
        masks = {frozenset(two._submit(os.sched_getaffinity, 0).result()) for _ in range(8)}
        assert all(len(mask) == 1 for mask in masks) and len(masks) <= 2


def test_early_acceptance_points_are_checked_and_serialise(alanine):
    for bad in ([0], [-5], [10, 5], [5, 5]):
        with pytest.raises(ValueError, match="early_accept_iterations"):
            GateConfig(minimize_iterations=20, early_accept_iterations=bad)
    config = GateConfig(minimize_iterations=20, early_accept_iterations=[5, 10])
    assert config.early_accept_iterations == (5, 10) and config.relaxation_stages == (5, 10, 20)
    assert GateConfig().relaxation_stages == (20,)
    # a shorter full relaxation (replace(UNBIND_GATE, minimize_iterations=5)) has nothing to stop early
    assert replace(config, minimize_iterations=10).relaxation_stages == (5, 10)
    assert replace(config, minimize_iterations=3).relaxation_stages == (3,)

    from openmm_biomd.propagator.mcmc import JumpMoveSettings

    settings = JumpMoveSettings(gate=config)
    text = yaml.safe_dump(settings.to_dict())  # plain types only
    assert JumpMoveSettings.from_dict(yaml.safe_load(text)) == settings
