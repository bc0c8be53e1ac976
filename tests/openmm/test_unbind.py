"""`biomd unbind`: the success criterion, Success@k, the decoupled gate energy, an end-to-end run, and
`biomd evaluate --paths` (Success@k and path RMSD against reference paths)."""

from __future__ import annotations

import json
import re

import mdtraj
import numpy as np
import pytest

from openmm_biomd.data.md import read_dcd_header
from openmm_biomd.data.systems import get_system
from openmm_biomd.enhanced.unbind import Pocket, Unbinder, UnbindSettings, success_at_k, unbind


@pytest.fixture(scope="module")
def host_guest():
    return get_system("host-guest").load()


def _atoms(loaded, selection):
    return mdtraj.Topology.from_openmm(loaded.topology).select(selection)


def _moved_ligand(loaded, ligand, shift_nm):
    frame = np.array(loaded.positions, dtype=np.float64)
    frame[ligand] += np.asarray(shift_nm)
    return frame


def _straight_path(loaded, ligand, criterion, direction, n_frames):
    """The ligand pulled rigidly out of the host along ``direction``, 0.2 nm past the exit distance."""
    steps = np.linspace(0.0, criterion.exit_distance_nm + 0.2, n_frames)
    return np.stack([_moved_ligand(loaded, ligand, s * np.asarray(direction, dtype=float)) for s in steps])


def _save_path(directory, loaded, frames_nm):
    directory.mkdir(parents=True, exist_ok=True)
    mdtraj.Trajectory(frames_nm.astype(np.float32), mdtraj.Topology.from_openmm(loaded.topology)).save_dcd(
        str(directory / "path.dcd"))


def _save_topology(directory, loaded):
    directory.mkdir(parents=True, exist_ok=True)
    mdtraj.Trajectory(np.asarray(loaded.positions, dtype=np.float32)[None],
                      mdtraj.Topology.from_openmm(loaded.topology)).save_pdb(str(directory / "topology.pdb"))


def _reference_campaign(directory, loaded, ligand, criterion):
    """A dissociation campaign in ``generate-data --dissociation`` layout: two exits (+z, −z), one failure."""
    _save_topology(directory, loaded)
    for seed, (direction, n, left) in enumerate((([0, 0, 1], 40, True), ([0, 0, -1], 30, True), ([0, 0, 0], 5, False))):
        seed_dir = directory / f"seed_{seed:03d}"
        _save_path(seed_dir, loaded, _straight_path(loaded, ligand, criterion, direction, n))
        (seed_dir / "result.json").write_text(json.dumps({"dissociated": left}))


def test_success_criterion_on_hand_made_bound_and_unbound_frames(host_guest):
    ligand, pocket = _atoms(host_guest, "resname B2"), _atoms(host_guest, "resname CUC and not element H")
    bound = np.asarray(host_guest.positions)
    criterion = Pocket.from_bound_frame(bound, ligand, pocket, margin_nm=0.5)
    # CB7's heavy atoms reach ~0.6 nm from its centre; B2 sits in the cavity.
    assert 0.5 < criterion.radius_nm < 0.7
    assert criterion.bound_distance_nm < 0.1
    exit_nm = criterion.exit_distance_nm
    assert exit_nm == pytest.approx(criterion.radius_nm + 0.5)
    axis = np.array([0.0, 0.0, 1.0])
    just_inside = _moved_ligand(host_guest, ligand, (exit_nm - 0.05 - criterion.bound_distance_nm) * axis)
    outside = _moved_ligand(host_guest, ligand, (exit_nm + 0.05 + criterion.bound_distance_nm) * axis)
    assert criterion.unbound(np.stack([bound, just_inside, outside])).tolist() == [False, False, True]
    # the margin is the user's: a larger one keeps the same frame "bound"
    strict = Pocket.from_bound_frame(bound, ligand, pocket, margin_nm=1.0)
    assert not strict.unbound(outside[None])[0]
    with pytest.raises(ValueError, match="already unbound"):
        Pocket.from_bound_frame(outside, ligand, pocket, margin_nm=0.5)
    with pytest.raises(ValueError, match="overlaps the ligand"):
        Pocket.from_bound_frame(bound, ligand, ligand, margin_nm=0.5)


def test_success_at_k_is_the_unbiased_estimator():
    assert success_at_k(10, 0, 10) == 0.0
    assert success_at_k(10, 1, 10) == 1.0
    assert success_at_k(10, 3, 1) == pytest.approx(0.3)
    assert success_at_k(9, 9, 10) is None
    # 20 attempts, 2 successes: P(no success among 10 drawn) = C(18,10)/C(20,10)
    assert success_at_k(20, 2, 10) == pytest.approx(1 - (10 * 9) / (20 * 19))


def test_decoupled_gate_energy_ignores_where_the_ligand_is(host_guest):
    import openmm

    from openmm_biomd.propagator.gate import GateConfig, PhysicsGate
    from openmm_biomd.propagator.solute_system import build_solute_system

    ligand = _atoms(host_guest, "resname B2")
    everything = np.arange(host_guest.system.getNumParticles())
    coupled = build_solute_system(host_guest.system, everything)
    decoupled = build_solute_system(host_guest.system, everything, decoupled=ligand)
    assert coupled.scoring_system is None and decoupled.key != coupled.key
    # relaxation uses the same full energy; only the score differs
    assert openmm.XmlSerializer.serialize(coupled.system) == openmm.XmlSerializer.serialize(decoupled.system)

    def energy(system, frame):
        ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
        ctx.setPositions(frame)
        return ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)

    bound = np.asarray(host_guest.positions)
    away = _moved_ligand(host_guest, ligand, [0.0, 0.0, 3.0])
    assert energy(decoupled.scoring_system, bound) == pytest.approx(energy(decoupled.scoring_system, away), abs=1e-6)
    # with the coupling the energy moves by ~100 kJ/mol with the ligand: the gate must not judge that
    assert abs(energy(coupled.system, bound) - energy(coupled.system, away)) > 50.0

    # the gate relaxes with the coupled energy: a guest hydrogen pressed 0.13 nm into a host oxygen is pushed
    # out (the decoupled energy alone would leave it there), and the frame is scored with the decoupled energy
    gate = PhysicsGate(decoupled, np.zeros((0, 2), int), np.array([a.element.symbol for a in host_guest.topology.atoms()]),
                       bound, GateConfig(minimize_iterations=50, check_energy=False))
    atoms = list(host_guest.topology.atoms())
    oxygen = next(a.index for a in atoms if a.element.symbol == "O")
    hydrogen = next(int(i) for i in ligand if atoms[int(i)].element.symbol == "H")
    pressed = bound.copy()
    pressed[ligand] += bound[oxygen] + [0.13, 0.0, 0.0] - bound[hydrogen]
    score, relaxed = gate.relax(pressed)
    assert np.linalg.norm(relaxed[hydrogen] - relaxed[oxygen]) > 0.16
    # (the gate scores a solute this size on the CPU platform, mixed precision: ~1e-3 kJ/mol from Reference's)
    assert score == pytest.approx(energy(decoupled.scoring_system, relaxed), abs=1e-2)
    with pytest.raises(ValueError, match="modelled atoms"):
        build_solute_system(host_guest.system, everything[:10], decoupled=ligand)


def test_steering_prior_is_the_unbinding_gates_geometry(host_guest):
    """The steering potential of :meth:`PhysicsGate.geometry_prior` is flat on the bound pose and pushes a guest
    hydrogen pressed into a host oxygen back out."""
    import torch

    from biomd_core.sampling.steering import SteeringConfig

    unbinder = Unbinder(host_guest, "host-guest", settings=UnbindSettings(attempts=1))
    gate, prior, config = unbinder.gate, unbinder.gate.geometry_prior(), SteeringConfig()
    assert prior.n_atoms == gate.n_atoms == 156 and len(prior.chiral_centres) == gate.n_stereocentres > 0
    assert np.array_equal(prior.bonds, gate._bond_pairs) and len(prior.excluded_pairs) == len(gate._near)
    bound = np.asarray(host_guest.positions, dtype=np.float64)
    assert prior.energy(torch.from_numpy(bound), config).item() == pytest.approx(0.0, abs=1e-6)
    atoms = list(host_guest.topology.atoms())
    ligand = unbinder.pocket.ligand
    oxygen = next(a.index for a in atoms if a.element.symbol == "O")
    hydrogen = next(int(i) for i in ligand if atoms[int(i)].element.symbol == "H")
    pressed = bound.copy()
    pressed[ligand] += bound[oxygen] + [0.13, 0.0, 0.0] - bound[hydrogen]
    assert [oxygen, hydrogen] in prior.overlap_pairs(pressed, config.overlap_fraction).tolist()
    step = -prior.gradient(torch.from_numpy(pressed), config).numpy()
    apart = pressed[hydrogen] - pressed[oxygen]
    assert step[hydrogen] @ apart > 0 and step[oxygen] @ apart < 0  # the descent separates the pair
    # the unbinder's sampler is steered by default, and not with steering=0
    assert unbinder.generator.sampler.model.prior.n_atoms == 156
    assert not hasattr(Unbinder(host_guest, "host-guest", settings=UnbindSettings(steering=0)).generator.sampler.model,
                        "prior")
    with pytest.raises(ValueError, match="steering"):
        UnbindSettings(steering=-1.0)


@pytest.mark.slow
def test_unbind_end_to_end_with_the_tiny_host_guest_model(host_guest, tmp_path, capsys, file_contents):
    from openmm_biomd.cli import main

    out = tmp_path / "unbind"
    # 100 ps: the shipped weights' paths leave after ~50 ps (their card), so some of the three attempts leave
    settings = UnbindSettings(attempts=2, max_time_ps=100.0, seed=3)
    unbinder = Unbinder(host_guest, "host-guest", settings=settings)
    assert unbinder.calibration_wall_s == 0.0  # the shipped model stores the decoupled gate statistics
    summary = unbind(host_guest, "host-guest", out, unbinder=unbinder)
    for key in ("attempts", "successes", "success_at_1", "time_to_first_path_s"):
        assert key in summary
    assert summary["attempts"] == 2 and "success_at_10" not in summary
    assert summary["settings"]["steering"] == 1.0 and unbinder.generator.sampler.model.steered_evaluations > 0
    top = mdtraj.load_topology(str(out / "topology.pdb"))
    assert top.n_atoms == 156
    for r in summary["results"]:
        path = mdtraj.load(str(out / f"attempt_{r['attempt']:03d}" / "path.dcd"), top=top)
        assert path.n_frames == r["n_frames"] >= 1
        # the header's time step is the model's Δt (mdtraj's writer had left 1 AKMA unit, 0.0489 ps)
        header = read_dcd_header(out / f"attempt_{r['attempt']:03d}" / "path.dcd")
        assert header["n_frames"] == r["n_frames"]
        assert header["timestep_ps"] * header["interval_steps"] == pytest.approx(unbinder.time.frame_interval_ps)
        d = unbinder.pocket.distances(path.xyz.astype(np.float64))
        assert d[0] == pytest.approx(r["bound_distance_nm"], abs=1e-3)
        # every frame but a successful path's last is still bound; the last is unbound iff success
        assert (d[:-1] <= unbinder.pocket.exit_distance_nm + 1e-3).all()
        assert (d[-1] > unbinder.pocket.exit_distance_nm - 1e-3) == r["success"]
        assert r["path_time_ps"] <= 100.0
    # resume through the command line: finished attempts are kept, one more is generated
    before = (out / "attempt_000" / "result.json").read_bytes()
    args = ["unbind", "--system", "host-guest", "--model", "host-guest", "--max-time", "100ps", "--seed", "3",
            "--out", str(out), "--quiet"]
    assert main(args + ["--attempts", "3"]) == 0
    assert (out / "attempt_000" / "result.json").read_bytes() == before
    saved = json.loads((out / "summary.json").read_text())
    assert saved["attempts"] == 3 and saved["results"][2]["attempt"] == 2
    assert [r["wall_s"] for r in saved["results"][:2]] == [r["wall_s"] for r in summary["results"]]
    assert saved["ligand_atoms"] == unbinder.pocket.ligand.tolist()
    # the same weights from another file are the same model: the run resumes (nothing to add)
    import shutil

    from biomd_core.io.checkpoint import WEIGHTS_DIR

    copy = shutil.copyfile(WEIGHTS_DIR / "host-guest.safetensors", tmp_path / "copy.safetensors")
    copied = list(args)
    copied[args.index("--model") + 1] = str(copy)
    assert main(copied + ["--attempts", "3"]) == 0
    assert json.loads((out / "summary.json").read_text())["results"] == saved["results"]
    # another margin or steering is another run: refused naming what differs (it had said "different settings"),
    # nothing touched; a NaN steering is named as the flag (it had failed in the sampler: "data must be finite")
    capsys.readouterr()
    assert main(args + ["--attempts", "3", "--margin", "0.8"]) == 2
    assert "holds another unbinding run: settings.margin_nm (there: 0.5, now: 0.8)" in capsys.readouterr().err
    assert main(args + ["--attempts", "3", "--steering", "0"]) == 2
    assert main(args + ["--attempts", "3", "--steering", "nan"]) == 2
    assert "steering (--steering) must be >= 0 and finite (0: off), got nan" in capsys.readouterr().err
    assert main(args + ["--attempts", "3", "--keep-passing-prefix"]) == 2
    assert (out / "attempt_000" / "result.json").read_bytes() == before
    # a run recorded before keep_passing_prefix existed re-drew whole blocks: it resumes as such
    legacy = json.loads((out / "summary.json").read_text())
    del legacy["settings"]["keep_passing_prefix"]
    (out / "summary.json").write_text(json.dumps(legacy))
    assert main(args + ["--attempts", "3"]) == 0
    assert json.loads((out / "summary.json").read_text())["results"] == saved["results"]
    # damaged inputs: a NaN starting frame, one with its atoms in another order, a summary cut short (named,
    # the run left as it was)
    starts = np.repeat(np.asarray(host_guest.positions)[None], 2, axis=0)
    starts[1, 7] = np.nan
    with pytest.raises(ValueError, match="frame 1 of the starting frames holds coordinates that are not finite"):
        unbind(host_guest, "host-guest", tmp_path / "nan_starts", unbinder=unbinder, starts_nm=starts)
    starts[1] = starts[0][np.random.default_rng(0).permutation(len(starts[0]))]
    with pytest.raises(ValueError, match="frame 1 of the starting frames does not fit the system: atoms"):
        unbind(host_guest, "host-guest", tmp_path / "permuted_starts", unbinder=unbinder, starts_nm=starts)
    assert not (tmp_path / "nan_starts").exists() and not (tmp_path / "permuted_starts").exists()
    kept = (out / "summary.json").read_bytes()
    (out / "summary.json").write_bytes(kept[: len(kept) // 2])
    assert main(args + ["--attempts", "3"]) == 2
    assert f"{out / 'summary.json'} is damaged: it is not valid JSON" in capsys.readouterr().err
    assert (out / "attempt_000" / "result.json").read_bytes() == before and not (out / "attempt_003").exists()
    (out / "summary.json").write_bytes(kept)
    # deleted: a rerun under another seed had kept these attempts, recorded under its own settings
    (out / "summary.json").unlink()
    files = file_contents(out)
    assert main(args + ["--attempts", "3", "--seed", "7"]) == 2
    assert re.search(r"summary\.json is missing, but .* holds the results it recorded the settings of \(attempt_000/"
                     r"result\.json, attempt_001/result\.json, attempt_002/result\.json\)", capsys.readouterr().err)
    assert file_contents(out) == files
    (out / "summary.json").write_bytes(kept)
    short = ["unbind", "--system", "host-guest", "--model", "host-guest", "--max-time", "10ps", "--out",
             str(tmp_path / "short"), "--quiet"]  # shorter than one 20 ps block: paths would outrun it
    assert main(short) == 2
    assert "max_time_ps 10 is shorter than one generated block of this model (20 ps)" in capsys.readouterr().err
    assert not (tmp_path / "short").exists()
    # a model of another system: that is what is said, not its block length (400 ps for alanine dipeptide)
    assert main([*short[:4], "alanine-dipeptide", *short[5:7], "--out", str(tmp_path / "other"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "the model's vocabularies do not know" in err and "block" not in err
    assert not (tmp_path / "other").exists()
    # the real run's paths evaluate against reference paths (hand-made exits through both portals)
    reference = tmp_path / "campaign"
    _reference_campaign(reference, host_guest, unbinder.pocket.ligand, unbinder.pocket)
    assert main(["evaluate", "--paths", str(out), "--reference-paths", str(reference), "--out", str(tmp_path / "ev")]) == 0
    scored = json.loads((tmp_path / "ev" / "metrics.json").read_text())["unbinding"]
    assert scored["attempts"] == 3 and scored["successes"] == saved["successes"] and scored["n_reference_paths"] == 2
    assert scored["path_rmsd_to_nearest_reference_nm"]["n"] == saved["successes"]
    assert (tmp_path / "ev" / "unbinding_distance.png").stat().st_size > 0
    # a path.dcd cut short (mdtraj reads what is left, with a warning) is named: by evaluate and by a resume,
    # which then changes nothing
    success = next(r for r in saved["results"] if r["success"])  # (evaluate reads the paths that left)
    dcd = out / f"attempt_{success['attempt']:03d}" / "path.dcd"
    whole = dcd.read_bytes()
    dcd.write_bytes(whole[: len(whole) // 2])
    files = file_contents(out)
    message = (rf"attempt_{success['attempt']:03d}/path.dcd is damaged: it holds \d+ frames, the run's record "
               rf"{success['n_frames']} .*Delete .*attempt_{success['attempt']:03d} and rerun the same biomd unbind")
    for argv in (["evaluate", "--paths", str(out), "--reference-paths", str(reference), "--out", str(tmp_path / "e2")],
                 args + ["--attempts", "4"]):
        assert main(argv) == 2
        assert re.search(message, capsys.readouterr().err)
    # another command pointed at the unbinding run's folder is refused, naming it (a sample overwrote its summary)
    assert main(["sample", "--model", "host-guest", "--system", "host-guest", "--time", "10ps", "--out", str(out)]) == 2
    assert re.search(r"`biomd sample` would overwrite summary.json, topology.pdb in .* which holds the output of "
                     r"`biomd unbind`", capsys.readouterr().err)
    assert file_contents(out) == files
    assert not (tmp_path / "e2").exists()  # no metrics, nor an empty folder, of a damaged run
    dcd.write_bytes(whole)
    record = dcd.parent / "result.json"
    kept_record = record.read_bytes()
    record.write_bytes(kept_record[:40])  # its record cut short: the same advice
    assert main(args + ["--attempts", "4"]) == 2
    assert re.search(r"result.json is damaged: it is not valid JSON .*Delete .*and rerun the same biomd unbind",
                     capsys.readouterr().err)
    record.write_text("{}")  # emptied: named too (it had been a bare KeyError, "error: success")
    assert main(args + ["--attempts", "4"]) == 2
    assert re.search(r"result.json is damaged: it lacks 'attempt', 'success'", capsys.readouterr().err)
    record.write_bytes(kept_record)
    # a topology.pdb of garbage is named, not the good path read with it (whose remedy threw the path away);
    # deleted, as its error says, it is written again
    topology = out / "topology.pdb"
    kept_topology = topology.read_bytes()
    topology.write_text("garbage")
    assert main(args + ["--attempts", "4"]) == 2
    err = capsys.readouterr().err
    assert "topology.pdb cannot be read" in err and "(they are not at fault)" in err and "path.dcd" not in err, err
    topology.unlink()
    assert main(args + ["--attempts", "3"]) == 0 and topology.read_bytes() == kept_topology
    distances = out / "attempt_000" / "distance.csv"  # derived from the path: a deleted one is written again
    kept_distances = np.loadtxt(distances, delimiter=",", skiprows=1)
    distances.unlink()
    assert main(args + ["--attempts", "3"]) == 0
    np.testing.assert_allclose(np.loadtxt(distances, delimiter=",", skiprows=1), kept_distances, atol=2e-5)
    capsys.readouterr()
    # a reference path cut short as well (its record counts its frames)
    seed_dir = reference / "seed_000"
    (seed_dir / "result.json").write_text(json.dumps({"dissociated": True, "n_frames": 40}))
    (seed_dir / "path.dcd").write_bytes((seed_dir / "path.dcd").read_bytes()[:5000])
    evaluate = ["evaluate", "--paths", str(out), "--reference-paths", str(reference), "--out", str(tmp_path / "e3")]
    assert main(evaluate) == 2
    assert re.search(r"seed_000/path.dcd is damaged: it holds \d+ frames, the run's record 40", capsys.readouterr().err)
    assert not (tmp_path / "e3").exists()
    (tmp_path / "e3").mkdir()
    (tmp_path / "e3" / "notes.txt").write_text("mine")  # a folder the user made is left as it was, with its files
    assert main(evaluate) == 2
    assert file_contents(tmp_path / "e3") == {tmp_path / "e3" / "notes.txt": b"mine"}


def test_unbind_keeping_the_passing_prefix_of_refused_blocks(host_guest, tmp_path):
    """The real gate refuses some generated frames; with ``keep_passing_prefix`` the frames before a refused one
    are kept and the path goes on from them: still a path of gated frames, bound until its last."""
    settings = UnbindSettings(attempts=1, max_time_ps=20.0, seed=3, keep_passing_prefix=True)
    unbinder = Unbinder(host_guest, "host-guest", settings=settings)
    assert unbinder.generator.keep_passing_prefix
    path, result = unbinder.attempt(host_guest.positions[unbinder.modelled], seed=5)
    assert sum(result["gate_rejections"].values()) > 0, "no refusal: the prefix was never needed"
    assert len(path) == result["n_frames"] and np.isfinite(path).all()
    d = unbinder.pocket.distances(path)
    assert (d[:-1] <= unbinder.pocket.exit_distance_nm + 1e-9).all()
    assert unbinder.gate.check(path[1:]).accepted, "every generated frame passes the gate as it stands"


def test_path_rmsd_compares_paths_at_equal_progress(host_guest):
    from openmm_biomd.enhanced.path_metrics import path_rmsd_nm, resample_by_progress

    ligand, pocket = _atoms(host_guest, "resname B2"), _atoms(host_guest, "resname CUC and not element H")
    criterion = Pocket.from_bound_frame(np.asarray(host_guest.positions), ligand, pocket, margin_nm=0.5)
    go = criterion.exit_distance_nm + 0.2

    def path(direction, n, wobble=0.0):
        steps = np.linspace(0.0, go, n)
        return np.stack([_moved_ligand(host_guest, ligand, s * np.asarray(direction) + [wobble, 0, 0]) for s in steps])

    slow, fast = path([0, 0, 1], 80), path([0, 0, 1], 15)
    assert path_rmsd_nm(slow, fast, criterion) < 0.05  # same route, different speed
    other_portal = path([0, 0, -1], 30)
    assert path_rmsd_nm(slow, other_portal, criterion) > 0.5
    # a whole receptor rotation changes nothing: paths are compared in the pocket's frame
    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert path_rmsd_nm(slow, fast @ rotation.T + 1.0, criterion) < 0.05
    resampled = resample_by_progress(slow, criterion, 10)
    assert resampled.shape == (10, *slow.shape[1:])
    with pytest.raises(ValueError, match="never leaves"):
        resample_by_progress(slow[:5], criterion)
    # a reference that stops a little short of the exit distance (a metadynamics seed stops at its own
    # CV threshold) is compared as far as it got
    short = np.stack([f for f in fast if criterion.distances(f[None])[0] < criterion.exit_distance_nm - 0.02])
    assert criterion.distances(short).max() < criterion.exit_distance_nm
    assert path_rmsd_nm(slow, short, criterion) < 0.05 and path_rmsd_nm(other_portal, short, criterion) > 0.5


def test_evaluate_paths_scores_success_at_k_and_path_rmsd(host_guest, tmp_path, capsys):
    """`biomd evaluate --paths`: known answers on paths laid out as `biomd unbind` writes them."""
    from openmm_biomd.cli import main

    ligand, pocket = _atoms(host_guest, "resname B2"), _atoms(host_guest, "resname CUC and not element H")
    criterion = Pocket.from_bound_frame(np.asarray(host_guest.positions), ligand, pocket, margin_nm=0.5)
    reference, generated = tmp_path / "campaign", tmp_path / "unbind"
    _reference_campaign(reference, host_guest, ligand, criterion)
    _save_topology(generated, host_guest)
    # start 0: 12 attempts, one out through +z (another speed), one through +x (no reference took it);
    # start 1: 3 attempts, none out
    routes = {0: ([0, 0, 1], 17), 1: ([1, 0, 0], 25)}
    results = []
    for attempt in range(15):
        direction, n = routes.get(attempt, ([0, 0, 0], 4))
        frames = _straight_path(host_guest, ligand, criterion, direction, n)
        _save_path(generated / f"attempt_{attempt:03d}", host_guest, frames)
        results.append({"attempt": attempt, "start_index": 0 if attempt < 12 else 1, "success": attempt in routes,
                        "max_distance_nm": float(criterion.distances(frames).max())})
    (generated / "summary.json").write_text(json.dumps({
        "format": "biomd-unbind", "pocket": criterion.to_dict(), "results": results, "frame_interval_ps": 1.0}))

    out = tmp_path / "evaluation"
    assert main(["evaluate", "--paths", str(generated), "--reference-paths", str(reference), "--out", str(out)]) == 0
    u = json.loads((out / "metrics.json").read_text())["unbinding"]
    assert (u["attempts"], u["successes"], u["n_starts"], u["n_reference_paths"]) == (15, 2, 2, 2)
    assert u["success_at_1"] == pytest.approx((2 / 12 + 0 / 3) / 2)
    assert u["success_at_10"] == pytest.approx(1 - 1 / 66)  # start 1 has fewer than 10 attempts
    rmsd = u["path_rmsd_to_nearest_reference_nm"]
    assert rmsd["per_attempt"]["0"] < 0.05  # the +z reference path, at another speed
    assert rmsd["per_attempt"]["1"] > 0.3  # a portal no reference path used
    assert rmsd["n"] == 2 and rmsd["mean"] == pytest.approx(np.mean(list(rmsd["per_attempt"].values())))
    report = (out / "report.md").read_text()
    assert "Success@10" in report and "unbinding_distance.png" in report
    # incomplete requests are refused with a message, and so are inputs of the wrong kind
    assert main(["evaluate", "--paths", str(generated), "--out", str(tmp_path / "x")]) == 2
    assert main(["evaluate", "--paths", str(reference), "--reference-paths", str(reference), "--out", str(tmp_path / "x")]) == 2
    assert main(["evaluate", "--paths", str(generated), "--reference-paths", str(reference), "--energy-frames", "0",
                 "--out", str(tmp_path / "x")]) == 2
    assert "--energy-frames must be at least 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    # an unbind folder given as the campaign is named as such (it had been "no path ... left the pocket")
    assert main(["evaluate", "--paths", str(generated), "--reference-paths", str(generated), "--out",
                 str(tmp_path / "x")]) == 2
    assert "is not a dissociation campaign" in capsys.readouterr().err
    # a generated path with a NaN frame is a damaged file, named with what to do (numpy's "SVD did not converge")
    frames = _straight_path(host_guest, ligand, criterion, [0, 0, 1], 17)
    frames[5, 10] = np.nan
    _save_path(generated / "attempt_000", host_guest, frames)
    assert main(["evaluate", "--paths", str(generated), "--reference-paths", str(reference), "--out",
                 str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "attempt_000/path.dcd is damaged: frame 5 holds coordinates that are not finite" in err
    assert "rerun the same biomd unbind command" in err and not (tmp_path / "x").exists()


def test_evaluate_takes_the_systems_ligand_residue_as_the_ligand(host_guest):
    """The featurizer's ligand mask holds every non-standard residue, the host CB7 too: evaluate's ligand metrics
    had covered all 156 atoms of host–guest."""
    from biomd_core.featurize import featurize
    from openmm_biomd.evaluate import ligand_atoms

    topology = mdtraj.Topology.from_openmm(host_guest.topology)
    assert featurize(topology).ligand_mask.all()  # why the system's own ligand residue is needed
    np.testing.assert_array_equal(ligand_atoms(topology, "host-guest"), topology.select("resname B2"))
    assert 0 < len(topology.select("resname B2")) < topology.n_atoms
    assert ligand_atoms(topology, None) is None and ligand_atoms(topology, "alanine-dipeptide") is None


def test_unbind_starts_that_cannot_be_read_are_named_by_their_options(host_guest, tmp_path, capsys):
    """``--starts`` without its topology, with a bad one, or not a trajectory: the message names ``--starts``
    and ``--starts-topology`` (it had said "path file"), and no output folder is made."""
    from openmm_biomd.cli import main

    loaded = host_guest
    notes = tmp_path / "notes.dcd"
    notes.write_text("not a trajectory")
    topology = tmp_path / "complex.pdb"  # (a topology.pdb beside --starts is taken without being given)
    mdtraj.Trajectory(np.asarray(loaded.positions, np.float32)[None],
                      mdtraj.Topology.from_openmm(loaded.topology)).save_pdb(str(topology))
    out = tmp_path / "out"
    cases = {(): r"--starts .*notes.dcd holds coordinates only: .* with --starts-topology",
             ("--starts-topology", str(tmp_path / "missing.pdb")): r"the topology \(--starts-topology\) of the "
                                                                    r"--starts .*missing.pdb does not exist",
             ("--starts-topology", str(topology)): r"--starts .*notes.dcd cannot be read"}
    for extra, message in cases.items():
        assert main(["unbind", "--system", "host-guest", "--starts", str(notes), *extra, "--out", str(out)]) == 2
        assert re.search(message, capsys.readouterr().err), message
    assert not out.exists()


@pytest.mark.slow
def test_unbind_on_t4l_and_on_a_users_complex_from_files(host_guest, tmp_path):
    """The pocket comes from contacts when the system names none; a user's files work like a bundled system."""
    import openmm
    from openmm import app

    from openmm_biomd.cli import main

    t4l = get_system("t4l-pxylene").load()
    # one block, no re-draws, a short relaxation: this checks the set-up on a 2621-atom protein, not the
    # model (a 100-step relaxation of a T4L frame costs ~1 s on this CPU)
    quick = UnbindSettings(attempts=1, max_time_ps=20.0, retries=0, stall_limit=1, calibration_frames=3,
                           calibration_interval_ps=0.02, calibration_equilibration_ps=0.02)
    from dataclasses import replace

    from openmm_biomd.enhanced.unbind import UNBIND_GATE

    unbinder = Unbinder(t4l, "host-guest", settings=quick, allow_transfer=True,
                        gate_config=replace(UNBIND_GATE, minimize_iterations=5))
    assert unbinder.pocket_selection == "contacts" and unbinder.calibration_wall_s > 0
    residues = {a.residue.name for a in np.array(list(t4l.topology.atoms()))[unbinder.modelled[unbinder.pocket.pocket]]}
    assert "TMP" not in residues and len(unbinder.pocket.pocket) >= 10  # buried in the protein's C-terminal domain
    summary = unbind(t4l, "host-guest", tmp_path / "t4l", unbinder=unbinder)
    assert summary["attempts"] == 1 and summary["modelled_atoms"] == 2621
    assert (tmp_path / "t4l" / "attempt_000" / "path.dcd").exists()

    # the host-guest complex as a user's files: System XML + State XML + PDB
    files = tmp_path / "inputs"
    files.mkdir()
    (files / "system.xml").write_text(openmm.XmlSerializer.serialize(host_guest.system))
    context = openmm.Context(host_guest.system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(host_guest.positions)
    (files / "state.xml").write_text(openmm.XmlSerializer.serialize(context.getState(getPositions=True)))
    with open(files / "complex.pdb", "w") as fh:
        app.PDBFile.writeFile(host_guest.topology, host_guest.positions * openmm.unit.nanometer, fh, keepIds=True)
    args = ["unbind", "--inputs", str(files / "system.xml"), str(files / "state.xml"), str(files / "complex.pdb"),
            "--model", "host-guest", "--attempts", "1", "--max-time", "20ps", "--quiet"]
    assert main(args + ["--ligand", "resname B2", "--out", str(tmp_path / "user")]) == 0
    saved = json.loads((tmp_path / "user" / "summary.json").read_text())
    assert saved["attempts"] == 1 and saved["pocket_selection"] == "contacts"
    # no ligand named: a clear error, nothing written
    assert main(args + ["--out", str(tmp_path / "user2")]) == 2
    assert not (tmp_path / "user2").exists()


@pytest.mark.slow
def test_seed_umbrella_example_runs(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "examples" / "seed_umbrella.py"
    out = tmp_path / "example"
    run = subprocess.run([sys.executable, str(script), "--attempts", "3", "--max-time-ps", "20", "--windows", "3",
                          "--window-ps", "2", "--equilibration-ps", "0.5", "--exchange-ps", "0.25", "--up-to", "0.3",
                          "--out", str(out)],
                         capture_output=True, text=True, timeout=1200)  # generous: CI runners are shared
    assert run.returncode == 0, run.stderr[-2000:]
    assert "generated path" in run.stdout
    for name in ("fes.json", "fes.csv", "fes.png"):
        assert (out / "umbrella" / name).exists()
    assert len(list((out / "umbrella").glob("window_*/cv.csv"))) == 3
    assert json.loads((out / "umbrella" / "umbrella.json").read_text())["exchange"]["iterations"] == 8
