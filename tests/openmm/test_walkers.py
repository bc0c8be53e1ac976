"""Well-tempered metadynamics walkers sharing one bias directory (real OpenMM, CB7–B2).

The path is synthetic (the guest slid rigidly out of the host along its axis,
no MD): the walkers only need frames to start from.  Runs are a few hundred
steps per walker; the tests check the exchange of hills through the bias
directory (lockstep and round-robin), walkers side by side on pinned cores,
resume after a kill (also one that falls between two walkers' commits),
single-walker jobs and the free-energy output.
"""

from __future__ import annotations

import argparse
import json
import math
import re

import numpy as np
import pytest
from openmm import unit

from openmm_biomd.affinity import available_cpus
from openmm_biomd.data import MDBlewUpError, RunMismatchError, get_system
from openmm_biomd.data.tables import read_csv
from openmm_biomd.enhanced import walkers
from openmm_biomd.enhanced.walkers import WalkerSettings, bias_dir_free_energy, run_walkers

GAMMA = 10.0
# 3 exchanges of 0.2 ps per walker, a hill every 0.02 ps, a CV row every 0.02 ps.
SETTINGS = dict(n_walkers=2, time_ps=0.6, height_kj_mol=2.0, bias_factor=GAMMA, deposit_interval_ps=0.02,
                save_interval_ps=0.2, frame_interval_ps=0.02, equilibration_ps=0.1, threads=1, seed=3)


@pytest.fixture(scope="module")
def path(host_guest_cv):
    """``[11, 156, 3]`` nm: the guest moved 0 … 1 nm along the host's symmetry axis."""
    loaded, ligand, pocket, _ = host_guest_cv
    host = loaded.positions[pocket]
    # CB7 is a flat ring: its axis is the direction of least spread of its atoms.
    axis = np.linalg.eigh(np.cov((host - host.mean(0)).T))[1][:, 0]
    frames = np.repeat(loaded.positions[None], 11, axis=0)
    frames[:, ligand] += np.linspace(0.0, 1.0, 11)[:, None, None] * axis
    return frames


@pytest.fixture(scope="module")
def shared_run(host_guest_cv, path, tmp_path_factory):
    loaded, _, _, cv = host_guest_cv
    out = tmp_path_factory.mktemp("walkers")
    return out, run_walkers(loaded, path, cv, WalkerSettings(**SETTINGS), out)


def _bias_files(out):
    return sorted(p.name for p in (out / "bias").iterdir())


def _assert_the_same_run(a, b):
    """Two finished 2-walker runs wrote bit-identical bias files and CV rows."""
    assert _bias_files(a) == _bias_files(b)
    for i in (0, 1):
        np.testing.assert_array_equal(np.load(a / "bias" / f"bias_{i}_3.npy"), np.load(b / "bias" / f"bias_{i}_3.npy"))
        cv_rows = f"walker_{i:03d}/cv.csv"
        assert (a / cv_rows).read_bytes() == (b / cv_rows).read_bytes()


def test_walkers_read_each_others_hills(host_guest_cv, path, shared_run):
    _, _, _, cv = host_guest_cv
    out, run = shared_run
    assert run.summary["status"] == "complete"
    # Walkers start from frames spread along the path: the bound end and the unbound end.
    values = cv.values(path)
    plan = json.loads((out / "walkers.json").read_text())["walkers"]
    assert [w["start_frame"] for w in plan] == [0, 10]
    assert [w["start_cv"][0] for w in plan] == pytest.approx([values[0], values[10]])

    # One bias directory, OpenMM's file format, one newest file per walker (3 saves each).
    assert _bias_files(out) == ["bias_0_3.npy", "bias_1_3.npy"]
    own = {i: np.load(out / "bias" / f"bias_{i}_3.npy") for i in (0, 1)}
    meta = run.metadynamics
    for i in (0, 1):
        np.testing.assert_array_equal(meta[i].self_bias(), own[i])
        assert own[i].max() > 0  # each walker deposited hills
    # Lockstep: after the last exchange both walkers hold the same bias, everyone's newest hills.
    for i in (0, 1):
        np.testing.assert_array_equal(meta[i].total_bias(), own[0] + own[1])
    # The two walkers sit at opposite ends of the path, so their hills do not coincide.
    assert np.argmax(own[0]) < np.argmax(own[1])

    # Free energy = Metadynamics.getFreeEnergy() of a walker that loaded everyone's hills.
    f1 = meta[1].getFreeEnergy().value_in_unit(unit.kilojoule_per_mole)
    np.testing.assert_allclose(f1, -GAMMA / (GAMMA - 1) * (own[0] + own[1]))
    np.testing.assert_allclose(run.free_energy_kj_mol, f1 - f1.min())
    np.testing.assert_allclose(bias_dir_free_energy(out / "bias", 300.0, GAMMA), f1)
    assert np.all(np.isfinite(run.free_energy_kj_mol)) and run.free_energy_kj_mol.min() == 0
    header, table = read_csv(out / "free_energy.csv")
    assert header == ["distance", "f_kj_mol", "f_kt"] and len(table) == len(run.axes[0]) == own[0].shape[0]
    assert (out / "free_energy.png").read_bytes()[:4] == b"\x89PNG"

    # Per-walker CV trajectories: a row every 0.02 ps up to 0.6 ps.
    for i in (0, 1):
        header, rows = read_csv(out / f"walker_{i:03d}" / "cv.csv")
        assert header == ["time_ps", "step", "distance", "bias_kj_mol"]
        np.testing.assert_allclose(rows[:, 0], 0.02 * np.arange(1, 31), atol=1e-9)
        assert np.all(rows[:, 3] >= 0) and rows[-1, 3] > 0


def test_resume_after_kill_matches_uninterrupted_run(host_guest_cv, path, shared_run, tmp_path):
    loaded, _, _, cv = host_guest_cv
    out, _ = shared_run
    partial = run_walkers(loaded, path, cv, WalkerSettings(**SETTINGS), tmp_path, max_chunks=2)
    assert partial.summary["status"] == "incomplete"
    assert {i: p["step"] for i, p in partial.summary["progress"].items()} == {0: 200, 1: 200}
    # Simulate a kill in the middle of walker 0's third chunk: rows and a saved bias file that
    # were never committed, and a half-written state file.
    with open(tmp_path / "walker_000" / "cv.csv", "a") as fh:
        fh.write("0.5,250,0.5,1.0\n")
    np.save(tmp_path / "bias" / "bias_0_3.npy", np.full_like(np.load(tmp_path / "bias" / "bias_0_2.npy"), 99.0))
    (tmp_path / "walker_000" / "state_000000000250.chk").write_bytes(b"torn")
    resumed = run_walkers(loaded, path, cv, WalkerSettings(**SETTINGS), tmp_path)
    assert resumed.summary["status"] == "complete"
    assert _bias_files(tmp_path) == _bias_files(out)
    # Same platform, same seeds, same exchange order: the resumed run is the uninterrupted one.
    for i in (0, 1):
        np.testing.assert_allclose(np.load(tmp_path / "bias" / f"bias_{i}_3.npy"),
                                   np.load(out / "bias" / f"bias_{i}_3.npy"), rtol=1e-6, atol=1e-9)
        a = read_csv(tmp_path / f"walker_{i:03d}" / "cv.csv")[1]
        b = read_csv(out / f"walker_{i:03d}" / "cv.csv")[1]
        assert a.shape == b.shape == (30, 4)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        assert sorted(p.name for p in (tmp_path / f"walker_{i:03d}").glob("state_*")) == \
            ["state_000000000300.chk", "state_000000000300.npz"]
    # Finished: a rerun does no MD and rebuilds the same free energy; a longer time extends it.
    again = run_walkers(loaded, path, cv, WalkerSettings(**SETTINGS), tmp_path)
    np.testing.assert_allclose(again.free_energy_kj_mol, resumed.free_energy_kj_mol)
    with pytest.raises(RunMismatchError, match="height_kj_mol"):
        run_walkers(loaded, path, cv, WalkerSettings(**{**SETTINGS, "height_kj_mol": 1.0}), tmp_path)


def test_lockstep_side_by_side_on_pinned_cores_is_the_same_run(host_guest_cv, path, shared_run, tmp_path):
    """``cpus``: the walkers spread over threads pinned one to each core; the data do not change."""
    loaded, _, _, cv = host_guest_cv
    out, _ = shared_run
    cpus = tuple(available_cpus()[:2])  # two walkers on two cores (one core: both on its thread)
    side_by_side = run_walkers(loaded, path, cv, WalkerSettings(**SETTINGS, cpus=cpus), tmp_path)
    assert side_by_side.summary["protocol"] == f"lockstep in one process, side by side on CPUs {list(cpus)}"
    _assert_the_same_run(tmp_path, out)


def test_lockstep_resume_after_a_kill_between_two_commits(host_guest_cv, path, shared_run, tmp_path, monkeypatch):
    """A kill after walker 0 committed the second exchange and before walker 1 did: walker 1 runs that
    chunk again alone (walker 0 waits, or it would read walker 1's hills of the wrong exchange), then both
    go on together, and the run ends as the uninterrupted one."""
    loaded, _, _, cv = host_guest_cv
    out, _ = shared_run
    commit = walkers._Walker._commit

    def killed_at_the_second_commit_of_walker_1(self):
        if self.index == 1 and self.step == 200:
            raise KeyboardInterrupt
        commit(self)

    monkeypatch.setattr(walkers._Walker, "_commit", killed_at_the_second_commit_of_walker_1)
    with pytest.raises(KeyboardInterrupt):
        run_walkers(loaded, path, cv, WalkerSettings(**SETTINGS), tmp_path)
    monkeypatch.undo()
    progress = {i: json.loads((tmp_path / f"walker_{i:03d}" / "progress.json").read_text())["step"] for i in (0, 1)}
    assert progress == {0: 200, 1: 100}
    resumed = run_walkers(loaded, path, cv, WalkerSettings(**SETTINGS), tmp_path)
    assert resumed.summary["status"] == "complete"
    _assert_the_same_run(tmp_path, out)
    for i in (0, 1):
        np.testing.assert_array_equal(resumed.metadynamics[i].total_bias(), np.load(out / "bias" / "bias_0_3.npy")
                                      + np.load(out / "bias" / "bias_1_3.npy"))


def test_round_robin_exchange_and_runs_from_before_it_had_a_name(host_guest_cv, path, tmp_path):
    """Round-robin: walker 0 reads walker 1's hills of the previous round, walker 1 walker 0's of this
    one. A run directory written before ``exchange`` existed resumes as round-robin, and only as that."""
    loaded, _, _, cv = host_guest_cv
    settings = WalkerSettings(**SETTINGS, exchange="round_robin")
    run = run_walkers(loaded, path, cv, settings, tmp_path, max_chunks=2)
    own = {i: np.load(tmp_path / "bias" / f"bias_{i}_2.npy") for i in (0, 1)}
    meta = run.metadynamics
    # Walker 1 saved last: its bias is its own hills plus walker 0's newest ones ...
    np.testing.assert_allclose(meta[1].total_bias(), own[0] + own[1])
    # ... and walker 0's holds walker 1's hills from the previous exchange (non-zero, fewer than now).
    others = meta[0].total_bias() - meta[0].self_bias()
    assert others.max() > 0 and np.all(others <= own[1] + 1e-9) and others.sum() < own[1].sum()

    # The same directory as written before the setting existed: no "exchange" in its settings.
    record = json.loads((tmp_path / "walkers.json").read_text())
    del record["settings"]["exchange"]
    (tmp_path / "walkers.json").write_text(json.dumps(record))
    with pytest.raises(RunMismatchError, match="exchange: 'round_robin' on disk, 'lockstep' now"):
        run_walkers(loaded, path, cv, WalkerSettings(**SETTINGS), tmp_path)
    resumed = run_walkers(loaded, path, cv, settings, tmp_path)
    assert resumed.summary["status"] == "complete" and resumed.summary["protocol"] == "round-robin in one process"
    assert json.loads((tmp_path / "walkers.json").read_text())["settings"]["exchange"] == "round_robin"


def test_walkers_that_blow_up_say_so_and_keep_their_commits(host_guest_cv, path, tmp_path):
    """A 10 fs step blows the constrained host–guest up within a chunk (real OpenMM NaN): a clear error
    naming the walker, and every walker's committed start (step 0) left as it was."""
    loaded, _, _, cv = host_guest_cv
    settings = WalkerSettings(**{**SETTINGS, "timestep_fs": 10.0, "equilibration_ps": 0.0},
                              cpus=tuple(available_cpus()[:2]))
    with pytest.raises(MDBlewUpError, match=r"walker 0 \(in the chunk from step 0\) blew up .*NaN.*"
                                            r"last commit \(step 0\).* intact.*smaller --timestep"):
        run_walkers(loaded, path, cv, settings, tmp_path)
    for i in (0, 1):
        assert json.loads((tmp_path / f"walker_{i:03d}" / "progress.json").read_text())["step"] == 0
        assert sorted(p.name for p in (tmp_path / f"walker_{i:03d}").glob("state_*")) == \
            ["state_000000000000.chk", "state_000000000000.npz"]
        assert (tmp_path / f"walker_{i:03d}" / "cv.csv").read_text().count("\n") == 1  # the header alone


def test_damaged_walker_files_are_named_and_left_alone(host_guest_cv, path, tmp_path, file_contents):
    """A resume that finds a walker's committed files damaged (cut short, emptied) stops with an error naming the
    file, before anything is changed: no rows padded onto a short cv.csv, no damaged checkpoint taken for a blow-up,
    no longer time recorded for an extension refused."""
    import shutil

    from biomd_core.io.output_folder import OutputFolderError
    from openmm_biomd.data.md import DamagedRunFileError

    loaded, _, _, cv = host_guest_cv
    partial = tmp_path / "partial"
    run_walkers(loaded, path, cv, WalkerSettings(**SETTINGS), partial, max_chunks=1)
    committed = partial / "walker_000"
    chk, npz = committed / "state_000000000100.chk", committed / "state_000000000100.npz"
    damages = {
        "cv.csv": (lambda d: (d / "cv.csv").write_bytes((d / "cv.csv").read_bytes()[:40]),
                   r"cv\.csv is damaged: walker 0's last commit \(step 100\) wrote \d+ bytes of CV rows, the file "
                   r"holds 40"),
        "empty checkpoint": (lambda d: (d / chk.name).write_bytes(b""), r"\.chk is damaged: it holds 0 bytes, where "
                             r"a checkpoint of this run's System, integrator and platform holds \d+"),
        # OpenMM loads a checkpoint cut short silently: early, a garbage state; in its velocities, zeros for
        # the atoms it lacks (106 of 156 at 40 %); at its end, no random state
        **{f"checkpoint cut to {int(100 * f)} %": ((lambda f: lambda d: (d / chk.name).write_bytes(
            chk.read_bytes()[:int(f * len(chk.read_bytes()))]))(f), r"\.chk is damaged: it holds \d+ bytes, where")
           for f in (0.03, 0.4, 0.65, 0.999)},
        "hills cut short": (lambda d: (d / npz.name).write_bytes(npz.read_bytes()[:100]),
                            r"\.npz is damaged: its hills cannot be read"),
        "missing checkpoint": (lambda d: (d / chk.name).unlink(), r"walker_000 is damaged: .* names "
                               r"state_000000000100\.chk, which is missing"),
        "progress": (lambda d: (d / "progress.json").write_text('{"step": 1'), r"progress\.json is damaged: it is "
                     r"not valid JSON"),
        # a lost progress.json had been taken for a walker killed before its first commit: its files deleted
        "missing progress": (lambda d: (d / "progress.json").unlink(), r"progress\.json is missing, but .*cv\.csv "
                             r"holds committed CV rows: walker 0 continues only from its last commit"),
        # the hills had been turned into a free energy with whatever bias factor the rerun gave
        "missing record": (lambda d: (d.parent / "walkers.json").unlink(), r"walkers\.json is missing, but .* "
                           r"\(walker_000/progress\.json, walker_001/progress\.json\)"),
    }
    for name, (damage, message) in damages.items():
        copy = tmp_path / name.replace(" ", "_")
        shutil.copytree(partial, copy)
        damage(copy / "walker_000")
        before = file_contents(copy)
        refused = OutputFolderError if name == "missing record" else DamagedRunFileError
        with pytest.raises(refused, match=message):
            run_walkers(loaded, path, cv, WalkerSettings(**SETTINGS), copy)
        assert file_contents(copy) == before, name
        # an extension refused the same way leaves the record too (walkers.json had taken its longer time)
        with pytest.raises(refused, match=message):
            run_walkers(loaded, path, cv, WalkerSettings(**{**SETTINGS, "time_ps": 2 * SETTINGS["time_ps"]}), copy)
        assert file_contents(copy) == before, name


def test_single_walker_jobs_share_through_files(host_guest_cv, path, tmp_path):
    """``walker_index``: walkers as separate jobs (here one after the other) still exchange hills."""
    loaded, _, _, cv = host_guest_cv
    settings = WalkerSettings(**{**SETTINGS, "time_ps": 0.2})
    first = run_walkers(loaded, path, cv, settings, tmp_path, walker_index=1)
    assert list(first.metadynamics) == [1] and not (tmp_path / "walker_000").exists()
    assert _bias_files(tmp_path) == ["bias_1_1.npy"]
    second = run_walkers(loaded, path, cv, settings, tmp_path, walker_index=0)
    m0 = second.metadynamics[0]
    np.testing.assert_allclose(m0.total_bias() - m0.self_bias(), np.load(tmp_path / "bias" / "bias_1_1.npy"), atol=1e-9)
    assert _bias_files(tmp_path) == ["bias_0_1.npy", "bias_1_1.npy"]


def test_bad_walker_inputs(host_guest_cv, path, tmp_path):
    loaded, _, _, cv = host_guest_cv
    settings = WalkerSettings(**SETTINGS)
    with pytest.raises(ValueError, match="walker_index"):
        run_walkers(loaded, path, cv, settings, tmp_path, walker_index=2)
    with pytest.raises(ValueError, match="one or two CVs"):
        run_walkers(loaded, path, [cv, cv, cv], settings, tmp_path)
    with pytest.raises(ValueError, match="leaves the bias grid"):
        run_walkers(loaded, path, cv, WalkerSettings(**{**SETTINGS, "cv_min": (0.0,), "cv_max": (0.5,)}), tmp_path)
    with pytest.raises(ValueError, match="empty"):
        run_walkers(loaded, path[:0], cv, settings, tmp_path)
    torn = path.copy()  # one frame torn apart (σ 4.3 nm): every coordinate finite and small, the bonds broken
    torn[1] += np.random.default_rng(0).normal(0.0, 4.3, torn[1].shape)
    with pytest.raises(ValueError, match="frame 1 of the path does not fit the system: atoms"):
        run_walkers(loaded, torn, cv, settings, tmp_path)
    with pytest.raises(ValueError, match="hill"):
        WalkerSettings(**{**SETTINGS, "deposit_interval_ps": 0.03})
    with pytest.raises(ValueError, match="bias_factor"):
        WalkerSettings(**{**SETTINGS, "bias_factor": 1.0})
    # Infinite numbers (γ = inf had run and written a free energy of NaNs; an infinite range had been a traceback)
    with pytest.raises(ValueError, match="bias_factor must be a finite number > 1"):
        WalkerSettings(**{**SETTINGS, "bias_factor": math.inf})
    with pytest.raises(ValueError, match="time_ps must be a positive finite number"):
        WalkerSettings(**{**SETTINGS, "time_ps": math.inf})
    for option, value in (("cv_max", (math.inf,)), ("sigma", (math.inf,)), ("cv_min", (math.nan,))):
        with pytest.raises(ValueError, match=f"{option} must be finite"):
            WalkerSettings(**{**SETTINGS, option: value})
    with pytest.raises(ValueError, match="would have 1 point.*sigma 100 is wider than the grid"):
        run_walkers(loaded, path, cv, WalkerSettings(**{**SETTINGS, "sigma": (100.0,)}), tmp_path)
    teleported = path.copy()  # the guest 30 nm away in one frame: a broken frame, not a path (it had made a
    # bias grid of [-5, 57] nm and a walker started there)
    teleported[5, host_guest_cv[1]] += 30.0
    with pytest.raises(ValueError, match="the path jumps between frames 4 and 5"):
        run_walkers(loaded, teleported, cv, settings, tmp_path)
    with pytest.raises(ValueError, match="exchange must be one of"):
        WalkerSettings(**{**SETTINGS, "exchange": "random"})
    with pytest.raises(ValueError, match="needs exchange='lockstep'"):
        WalkerSettings(**{**SETTINGS, "exchange": "round_robin", "cpus": (0,)})
    with pytest.raises(ValueError, match="distinct CPU numbers"):
        WalkerSettings(**{**SETTINGS, "cpus": (0, 0)})
    assert not (tmp_path / "bias").exists()


def test_command_line_two_cvs(path, tmp_path, capsys):
    """``biomd walkers`` with a 2-D bias (distance and path progress s) from a DCD path."""
    from openmm import app

    loaded = get_system("host-guest").load()
    with open(tmp_path / "path.dcd", "wb") as fh:
        dcd = app.DCDFile(fh, loaded.topology, 0.002)
        for frame in path:
            dcd.writeModel(frame * unit.nanometer)
    app.PDBFile.writeFile(loaded.topology, path[0] * unit.nanometer, str(tmp_path / "topology.pdb"))
    parser = argparse.ArgumentParser()
    walkers.add_arguments(parser)
    args = parser.parse_args([
        "--path", str(tmp_path / "path.dcd"), "--system", "host-guest", "--cv", "distance", "--cv2", "path",
        "--path-nodes", "6", "--walkers", "2", "--time", "0.1ps", "--save-interval", "0.1ps",
        "--deposit-interval", "0.02ps", "--frame-interval", "0.02ps", "--equilibration", "0ps",
        "--cpus", str(available_cpus()[0]), "--out", str(tmp_path / "run"), "--quiet",
    ])
    assert walkers.main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "complete" and report["progress_ps"] == {"0": 0.1, "1": 0.1}
    grid = json.loads((tmp_path / "run" / "walkers.json").read_text())["bias_grid"]
    assert [g["name"] for g in grid] == ["distance", "path_s"]
    fe = json.loads((tmp_path / "run" / "free_energy.json").read_text())
    f = np.array(fe["f_kj_mol"])
    assert f.shape == (grid[1]["grid_width"], grid[0]["grid_width"]) and np.all(np.isfinite(f))
    header, table = read_csv(tmp_path / "run" / "free_energy.csv")
    assert header == ["distance", "path_s", "f_kj_mol", "f_kt"] and len(table) == f.size
    names = sorted(p.name for p in (tmp_path / "run" / "bias").iterdir())
    assert all(re.fullmatch(r"bias_[01]_1\.npy", n) for n in names) and len(names) == 2
    # The same variable twice is no 2-D bias: refused before anything is written.
    same = parser.parse_args(["--path", str(tmp_path / "path.dcd"), "--system", "host-guest", "--cv", "path",
                              "--cv2", "path", "--out", str(tmp_path / "same")])
    with pytest.raises(ValueError, match="--cv2 path is --cv again"):
        walkers.main(same)
    none = parser.parse_args(["--path", str(tmp_path / "path.dcd"), "--system", "host-guest", "--max-chunks", "0",
                              "--out", str(tmp_path / "same")])
    with pytest.raises(ValueError, match="--max-chunks must be at least 1, got 0"):  # ("holds no bias files yet")
        walkers.main(none)
    assert not (tmp_path / "same").exists()
