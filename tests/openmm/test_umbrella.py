"""Steered MD, umbrella windows seeded from a path, and their pymbar profile (real OpenMM, CB7–B2).

The path is made here by a short constant-velocity pull of the guest out of
the host (:func:`steered_path`); windows are a few ps at most.  The tests check
the machinery — seed frames, restraint centres, samples, resume, pymbar output
— not converged free energies.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import math
import os
import re
import shutil
from dataclasses import replace

import numpy as np
import pytest

from biomd_core.io.output_folder import OutputFolderError
from openmm_biomd.affinity import cpu_for
from openmm_biomd.data import MDBlewUpError, RunMismatchError
from openmm_biomd.data.md import DamagedRunFileError
from openmm_biomd.data.tables import read_csv
from openmm_biomd.enhanced import steered, umbrella, umbrella_exchange
from openmm_biomd.enhanced.seeding_common import (
    DistanceCV,
    PathCV1D,
    first_arrival_frames,
    nearest_frames,
)
from openmm_biomd.enhanced.steered import load_steered, steered_path
from openmm_biomd.enhanced.umbrella import (
    UmbrellaSettings,
    analyze_umbrella,
    binding_free_energy,
    profile_difference,
    refine_umbrella_windows,
    seed_umbrella_windows,
)

PULL_NM = 0.8
FAST = {"threads": 1, "temperature_k": 300.0, "timestep_fs": 2.0}


@pytest.fixture(scope="module")
def pulled(host_guest_cv, tmp_path_factory):
    """A 3 ps pull of the guest by PULL_NM: ``(out_dir, frames [31, 156, 3] nm)``."""
    loaded, _, _, cv = host_guest_cv
    out = tmp_path_factory.mktemp("steer")
    start = float(cv.values(loaded.positions)[0])
    frames = steered_path(loaded, cv, out, to_value=start + PULL_NM, pull_ps=3.0, force_constant=3000.0,
                          frame_interval_ps=0.1, equilibration_ps=0.2, seed=1, **FAST)
    return out, frames


def test_steered_path_pulls_at_constant_velocity(host_guest_cv, pulled, tmp_path, file_contents):
    loaded, _, _, cv = host_guest_cv
    out, frames = pulled
    assert frames.shape == (31, loaded.system.getNumParticles(), 3)
    data = load_steered(out)
    np.testing.assert_array_equal(data["frames_nm"], frames)
    start = float(cv.values(loaded.positions)[0])
    # The centre moves linearly from the start CV to start + PULL_NM; the CV follows it.
    np.testing.assert_allclose(data["centre"], start + PULL_NM * np.linspace(0, 1, 31), atol=1e-9)
    np.testing.assert_allclose(data["time_ps"], np.linspace(0, 3.0, 31), atol=1e-9)
    np.testing.assert_allclose(data["cv"], cv.values(frames), atol=1e-4)  # OpenMM's CV == numpy twin (float32 DCD)
    assert data["cv"][-1] > start + PULL_NM - 0.2
    assert data["work_kj_mol"][0] == 0.0 and data["work_kj_mol"][-1] > 0  # pulling a guest out costs work
    record = json.loads((out / "steered.json").read_text())
    assert record["status"] == "complete" and record["n_frames"] == 31

    # A finished pull is not rerun: the same frames come back from the DCD.
    mtime = os.stat(out / "path.dcd").st_mtime_ns
    again = steered_path(loaded, cv, out, to_value=start + PULL_NM, pull_ps=3.0, force_constant=3000.0,
                         frame_interval_ps=0.1, equilibration_ps=0.2, seed=1, **FAST)
    np.testing.assert_array_equal(again, frames)
    assert os.stat(out / "path.dcd").st_mtime_ns == mtime
    with pytest.raises(RunMismatchError, match="force_constant"):
        steered_path(loaded, cv, out, to_value=start + PULL_NM, pull_ps=3.0, force_constant=100.0,
                     frame_interval_ps=0.1, equilibration_ps=0.2, seed=1, **FAST)
    # Its path cut short is named (it used to be pulled again over it), for a rerun and for seeding.
    cut = tmp_path / "cut"
    shutil.copytree(out, cut)
    (cut / "path.dcd").write_bytes((cut / "path.dcd").read_bytes()[:20000])
    kept = file_contents(cut)
    for call in (lambda: steered_path(loaded, cv, cut, to_value=start + PULL_NM, pull_ps=3.0, force_constant=3000.0,
                                      frame_interval_ps=0.1, equilibration_ps=0.2, seed=1, **FAST),
                 lambda: load_steered(cut)):
        with pytest.raises(DamagedRunFileError, match=r"path\.dcd is damaged: it holds \d+ frames, the run's "
                                                      r"record 31.*delete it and rerun the same command"):
            call()
    assert file_contents(cut) == kept
    # its record deleted: a rerun had pulled again over the path (another path, on several threads)
    lost = tmp_path / "lost"
    shutil.copytree(out, lost)
    (lost / "steered.json").unlink()
    kept = file_contents(lost)
    with pytest.raises(OutputFolderError, match=r"steered\.json is missing, but .* \(path\.dcd, work\.csv\)"):
        steered_path(loaded, cv, lost, to_value=start + PULL_NM, pull_ps=3.0, force_constant=3000.0,
                     frame_interval_ps=0.1, equilibration_ps=0.2, seed=1, **FAST)
    assert file_contents(lost) == kept
    # its topology.pdb deleted: written again, the finished path read back as it is (it had been "does not exist")
    (lost / "steered.json").write_bytes((out / "steered.json").read_bytes())
    (lost / "topology.pdb").unlink()
    again = steered_path(loaded, cv, lost, to_value=start + PULL_NM, pull_ps=3.0, force_constant=3000.0,
                         frame_interval_ps=0.1, equilibration_ps=0.2, seed=1, **FAST)
    np.testing.assert_array_equal(again, frames)
    assert {p.relative_to(lost): data for p, data in file_contents(lost).items()} == \
        {p.relative_to(out): data for p, data in file_contents(out).items()}
    # its work table deleted or cut short: named by the rerun too (it had passed, to fail when seeded from)
    work = (lost / "work.csv").read_text().splitlines(keepends=True)
    for damaged, message in ((None, "it is missing, but steered.json says the pull finished"),
                             ("".join(work[:-2]), r"it holds 29 rows, not 31 \(one per frame of path.dcd\)"),
                             ("", r"its header is \[''\], not \['time_ps', 'step', 'centre', 'cv', 'work_kj_mol'\]")):
        (lost / "work.csv").unlink(missing_ok=True)
        if damaged is not None:
            (lost / "work.csv").write_text(damaged)
        for call in (lambda: load_steered(lost),
                     lambda: steered_path(loaded, cv, lost, to_value=start + PULL_NM, pull_ps=3.0,
                                          force_constant=3000.0, frame_interval_ps=0.1, equilibration_ps=0.2, seed=1,
                                          **FAST)):
            with pytest.raises(DamagedRunFileError, match=rf"work\.csv is damaged: {message}.* delete it and "
                                                          r"path\.dcd and rerun"):
                call()


def test_a_pull_or_a_window_that_blows_up_says_so(host_guest_cv, pulled, tmp_path):
    """A 10 fs step blows the constrained host–guest up (real OpenMM NaN): a clear error naming what blew up."""
    loaded, _, _, cv = host_guest_cv
    start = float(cv.values(loaded.positions)[0])
    with pytest.raises(MDBlewUpError, match=r"the steered pull blew up .*NaN.*Nothing of the pull is kept"):
        steered_path(loaded, cv, tmp_path / "pull", to_value=start + PULL_NM, pull_ps=3.0, force_constant=3000.0,
                     frame_interval_ps=0.1, equilibration_ps=0.2, seed=1, **{**FAST, "timestep_fs": 10.0})
    assert not (tmp_path / "pull" / "path.dcd").exists()
    assert json.loads((tmp_path / "pull" / "steered.json").read_text())["status"] == "running"

    with pytest.raises(MDBlewUpError, match=r"umbrella window 0 \(centre 0\.4\) blew up .*NaN.*"
                                                     r"finished before it are kept"):
        seed_umbrella_windows(loaded, pulled[1], cv, UmbrellaSettings(**{**DIST, "timestep_fs": 10.0}),
                              tmp_path / "windows")
    assert not (tmp_path / "windows" / "window_000" / "result.json").exists()


def test_a_steered_pull_made_and_driven_from_one_core_is_the_same_pull(host_guest_cv, pulled, tmp_path):
    loaded, _, _, cv = host_guest_cv
    cpu = cpu_for(1)
    before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    start = float(cv.values(loaded.positions)[0])
    frames = steered_path(loaded, cv, tmp_path, to_value=start + PULL_NM, pull_ps=3.0, force_constant=3000.0,
                          frame_interval_ps=0.1, equilibration_ps=0.2, seed=1, cpu=cpu, **FAST)
    np.testing.assert_array_equal(frames, pulled[1])
    assert (tmp_path / "work.csv").read_bytes() == (pulled[0] / "work.csv").read_bytes()
    platform = json.loads((tmp_path / "steered.json").read_text())["platform"]
    assert platform["pinned_cpu"] == cpu and platform["properties"] == {"Threads": "1"}
    if before is not None:
        assert os.sched_getaffinity(0) == before  # the caller's thread is free again


# Six windows 0.06 nm apart (σ = sqrt(kT/k) ≈ 0.03 nm) where the guest has left the cavity: near
# the portal the host pulls it back harder than k can hold (mean lags ~0.1 nm at 0.3 nm).
# (approach_per_ps: the 3 ps pull's frames lie ~0.03 nm apart, so each window approaches its centre for <= 0.3 ps.)
DIST = dict(n_windows=6, cv_min=0.4, cv_max=0.7, force_constant=3000.0, equilibration_ps=0.1, production_ps=1.0,
            sample_interval_ps=0.02, approach_per_ps=0.1, **FAST)


@pytest.fixture(scope="module")
def distance_run(host_guest_cv, pulled, tmp_path_factory):
    loaded, _, _, cv = host_guest_cv
    out = tmp_path_factory.mktemp("umbrella")
    summary = seed_umbrella_windows(loaded, pulled[1], cv, UmbrellaSettings(**DIST), out)
    return out, summary


def test_first_arrival_seeds_a_gap_from_the_frame_before_the_jump():
    # A path in time order: in the pocket, a step back, then a jump from 0.34 to 0.73 nm and on.
    path = np.array([0.04, 0.20, 0.34, 0.26, 0.73, 0.67, 0.90])
    centres = np.array([0.04, 0.29, 0.55, 0.69, 0.80, 0.95])
    # Nearest-CV seeding pushes the 0.55 and 0.69 windows back from a frame that already left (5);
    # first arrival pulls them forward from frame 2, the furthest the path got before it passed them.
    np.testing.assert_array_equal(nearest_frames(path, centres), [0, 3, 5, 5, 4, 6])
    np.testing.assert_array_equal(first_arrival_frames(path, centres), [0, 1, 2, 2, 4, 6])
    # A frame landing exactly on a centre seeds it; a centre past the path's reach gets its furthest frame.
    np.testing.assert_array_equal(first_arrival_frames(path, [0.34, 0.73]), [2, 4])
    assert first_arrival_frames(path, [1.2])[0] == 6
    # A path whose CV falls (a binding path, a progress read backwards) arrives from above.
    np.testing.assert_array_equal(first_arrival_frames(-path, -centres), [0, 1, 2, 2, 4, 6])
    # On a dense monotone path it is the nearest frame from below.
    dense = np.linspace(0.0, 1.0, 101)
    np.testing.assert_array_equal(first_arrival_frames(dense, [0.255, 0.5049]), [25, 50])
    with pytest.raises(ValueError, match="seed_frames"):
        UmbrellaSettings(seed_frames="closest")


def test_windows_start_where_the_path_first_arrives_and_sample_near_centre(host_guest_cv, pulled, distance_run):
    _, _, _, cv = host_guest_cv
    frames = pulled[1]
    out, summary = distance_run
    values = cv.values(frames)
    assert summary["status"] == "complete" and len(summary["windows"]) == 6
    np.testing.assert_allclose([w["centre"] for w in summary["windows"]], np.linspace(0.4, 0.7, 6))
    seeds = first_arrival_frames(values, np.linspace(0.4, 0.7, 6))
    for w, seed in zip(summary["windows"], seeds):
        assert w["start_frame"] == seed and values[seed] <= w["centre"]  # arrived from the bound side
        assert w["start_cv"] == pytest.approx(values[seed])
        # The restraint's CV force agrees with the numpy twin on the seed frame.
        assert w["start_cv_openmm"] == pytest.approx(w["start_cv"], abs=1e-4)
        header, table = read_csv(out / f"window_{w['index']:03d}" / "cv.csv")
        assert header == ["time_ps", "cv"] and table.shape == (50, 2)
        np.testing.assert_allclose(table[:, 0], 0.02 * np.arange(1, 51))
        assert w["mean_cv"] == pytest.approx(table[:, 1].mean())
        # k = 3000 kJ/mol/nm² holds the guest within a few σ = sqrt(kT/k) ≈ 0.03 nm of the centre.
        assert abs(w["mean_cv"] - w["centre"]) < 0.1
        assert 0 < w["std_cv"] < 0.1


def test_a_window_seeded_across_a_gap_approaches_its_centre_as_a_steered_pull(host_guest_cv, pulled, tmp_path):
    loaded, _, _, cv = host_guest_cv
    frames = pulled[1]
    values = cv.values(frames)
    gapped = frames[(values < 0.45) | (values > 0.7)]  # the path jumps over 0.45-0.7 nm
    settings = UmbrellaSettings(centres=(0.58,), force_constant=3000.0, equilibration_ps=0.2, production_ps=0.4,
                                sample_interval_ps=0.02, approach_per_ps=0.05, **FAST)
    (w,) = seed_umbrella_windows(loaded, gapped, cv, settings, tmp_path / "approach")["windows"]
    assert w["start_cv"] < 0.45  # first arrival: the frame before the jump
    # The centre moves from the seed frame's CV to 0.58 nm at 0.05 nm/ps, in moves of 10 steps (0.02 ps).
    assert w["approach_ps"] == pytest.approx(math.ceil((0.58 - w["start_cv_openmm"]) / 0.05 / 0.02) * 0.02)
    assert w["approach_ps"] > 2.0 and abs(w["equilibrated_cv"] - 0.58) < 0.08  # it got there
    # one window has a profile but no binding free energy (its well's flank had been reported as the plateau)
    lone = analyze_umbrella(tmp_path / "approach", write=False)
    assert np.isfinite(lone["f_kt"]).any() and "delta_f_kt" not in lone["binding"]
    assert lone["binding"]["error"].startswith("one window (at 0.58) samples only its own well")
    # Without the approach the spring is at the centre from the first step (the seed frame minimised there),
    # as before the approach existed (and before first arrival: the nearest frame).
    legacy = replace(settings, approach_per_ps=None, seed_frames="nearest")
    (yanked,) = seed_umbrella_windows(loaded, gapped, cv, legacy, tmp_path / "yanked")["windows"]
    assert yanked["approach_ps"] == 0.0 and yanked["start_frame"] == nearest_frames(cv.values(gapped), [0.58])[0]
    # A run recorded before both settings existed resumes with what the package did then, and only with that.
    record = json.loads((tmp_path / "yanked" / "umbrella.json").read_text())
    for key in ("approach_per_ps", "seed_frames"):
        del record["settings"][key]
    (tmp_path / "yanked" / "umbrella.json").write_text(json.dumps(record))
    result = tmp_path / "yanked" / "window_000" / "result.json"
    stamp = os.stat(result).st_mtime_ns
    seed_umbrella_windows(loaded, gapped, cv, legacy, tmp_path / "yanked")
    assert os.stat(result).st_mtime_ns == stamp
    with pytest.raises(RunMismatchError, match="approach_per_ps: None on disk, 0.05 now"):
        seed_umbrella_windows(loaded, gapped, cv, replace(legacy, approach_per_ps=0.05), tmp_path / "yanked")
    with pytest.raises(ValueError, match="approach_per_ps"):
        UmbrellaSettings(approach_per_ps=0.0)


def test_resume_skips_finished_windows(host_guest_cv, pulled, distance_run, tmp_path, file_contents):
    loaded, _, _, cv = host_guest_cv
    out, first = distance_run
    results = {i: out / f"window_{i:03d}" / "result.json" for i in range(6)}
    stamps = {i: os.stat(p).st_mtime_ns for i, p in results.items()}
    # A window killed before its result.json is rerun; the others are kept untouched.
    results[5].unlink()
    again = seed_umbrella_windows(loaded, pulled[1], cv, UmbrellaSettings(**DIST), out)
    assert [os.stat(results[i]).st_mtime_ns for i in range(5)] == [stamps[i] for i in range(5)]
    assert results[5].exists()
    assert [w["start_frame"] for w in again["windows"]] == [w["start_frame"] for w in first["windows"]]
    assert [w["mean_cv"] for w in again["windows"][:5]] == [w["mean_cv"] for w in first["windows"][:5]]
    with pytest.raises(RunMismatchError, match="force_constant"):
        seed_umbrella_windows(loaded, pulled[1], cv, UmbrellaSettings(**{**DIST, "force_constant": 100.0}), out)
    with pytest.raises(RunMismatchError, match="seed_frames"):  # another seeding rule is other data
        seed_umbrella_windows(loaded, pulled[1], cv, UmbrellaSettings(**DIST, seed_frames="nearest"), out)
    # umbrella.json deleted: the windows had been taken for those of another force constant (a wrong profile)
    lost = tmp_path / "lost"
    shutil.copytree(out, lost)
    (lost / "umbrella.json").unlink()
    kept = file_contents(lost)
    with pytest.raises(OutputFolderError, match=r"umbrella\.json is missing, but .* \(window_000/result\.json, "
                                                r"window_001/result\.json, .* and 2 more\)"):
        seed_umbrella_windows(loaded, pulled[1], cv, UmbrellaSettings(**{**DIST, "force_constant": 100.0}), lost)
    assert file_contents(lost) == kept


def test_windows_side_by_side_on_pinned_cores_are_the_sequential_windows(host_guest_cv, pulled, distance_run,
                                                                          tmp_path):
    loaded, _, _, cv = host_guest_cv
    out, first = distance_run
    cpus = tuple(sorted({cpu_for(0), cpu_for(1)} - {None})) or None
    # One window left from a sequential run: the rest run side by side (a resume with cpus is the same run).
    shutil.copytree(out / "window_000", tmp_path / "window_000")
    shutil.copy(out / "umbrella.json", tmp_path / "umbrella.json")
    before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    summary = seed_umbrella_windows(loaded, pulled[1], cv, UmbrellaSettings(**DIST, cpus=cpus), tmp_path)
    assert summary["status"] == "complete" and summary["platform"]["properties"] == {"Threads": "1"}
    assert [w["index"] for w in summary["windows"]] == list(range(6))  # in window order, however they finished
    for w in range(6):
        np.testing.assert_array_equal(read_csv(tmp_path / f"window_{w:03d}" / "cv.csv")[1],
                                      read_csv(out / f"window_{w:03d}" / "cv.csv")[1])
    if before is not None:
        assert os.sched_getaffinity(0) == before
    with pytest.raises(ValueError, match="distinct CPU"):
        UmbrellaSettings(**DIST, cpus=(0, 0))


def test_refinement_adds_windows_where_neighbours_do_not_overlap(host_guest_cv, pulled, tmp_path):
    loaded, _, _, cv = host_guest_cv
    # Two windows 0.3 nm apart at σ ≈ 0.03 nm share no sample: MBAR overlap ~0.
    sparse = UmbrellaSettings(**{**DIST, "n_windows": 2})
    first = seed_umbrella_windows(loaded, pulled[1], cv, sparse, tmp_path)
    before = analyze_umbrella(tmp_path, write=False)["min_overlap"]
    assert before < 0.03
    stamps = [os.stat(tmp_path / f"window_{i:03d}" / "result.json").st_mtime_ns for i in range(2)]
    refined = refine_umbrella_windows(loaded, pulled[1], cv, sparse, tmp_path, max_rounds=1)
    # One round: one window midway, appended (index 2) and seeded where the path first arrives at its centre.
    assert refined["refinement"]["rounds"] == [{"min_overlap_before": before, "added_centres": [pytest.approx(0.55)]}]
    added = refined["windows"][2]
    assert added["index"] == 2 and added["centre"] == pytest.approx(0.55)
    assert added["start_frame"] == first_arrival_frames(cv.values(pulled[1]), [0.55])[0]
    # The two finished windows are kept as they were.
    assert [os.stat(tmp_path / f"window_{i:03d}" / "result.json").st_mtime_ns for i in range(2)] == stamps
    assert refined["windows"][:2] == first["windows"]
    assert refined["refinement"]["min_overlap"] > before
    assert json.loads((tmp_path / "umbrella.json").read_text())["refinement"] == refined["refinement"]
    # Resuming: the same call reruns nothing; the windows alone (all centres) resume too, whatever placed them;
    # the original two windows alone, changed settings or other windows are refused.
    again = refine_umbrella_windows(loaded, pulled[1], cv, sparse, tmp_path, max_rounds=1)
    assert again["windows"] == refined["windows"]
    (tmp_path / "window_002" / "result.json").unlink()  # killed while the added window ran
    resumed = refine_umbrella_windows(loaded, pulled[1], cv, sparse, tmp_path, max_rounds=1)
    assert len(resumed["windows"]) == 3 and resumed["windows"][2]["centre"] == pytest.approx(0.55)
    assert resumed["refinement"]["rounds"] == refined["refinement"]["rounds"]
    every = replace(sparse, centres=(0.4, 0.7, 0.55), n_windows=None, cv_min=None, cv_max=None)
    assert seed_umbrella_windows(loaded, pulled[1], cv, every, tmp_path)["windows"] == resumed["windows"]
    assert [os.stat(tmp_path / f"window_{i:03d}" / "result.json").st_mtime_ns for i in range(2)] == stamps
    with pytest.raises(RunMismatchError, match="added by a refinement"):
        seed_umbrella_windows(loaded, pulled[1], cv, sparse, tmp_path)
    with pytest.raises(RunMismatchError, match="windows_key"):
        seed_umbrella_windows(loaded, pulled[1], cv, replace(every, centres=(0.4, 0.6)), tmp_path)
    with pytest.raises(RunMismatchError, match="production_ps"):
        refine_umbrella_windows(loaded, pulled[1], cv, replace(sparse, production_ps=2.0), tmp_path, max_rounds=1)
    with pytest.raises(RunMismatchError, match="refined other windows"):
        refine_umbrella_windows(loaded, pulled[1], cv, replace(sparse, n_windows=3), tmp_path, max_rounds=1)
    with pytest.raises(RunMismatchError, match="refined to an overlap"):
        refine_umbrella_windows(loaded, pulled[1], cv, sparse, tmp_path, min_overlap=0.1)
    with pytest.raises(ValueError, match="min_overlap"):
        refine_umbrella_windows(loaded, pulled[1], cv, sparse, tmp_path, min_overlap=0.0)


# Four windows 0.03 nm apart (σ ≈ 0.03 nm): neighbours overlap, so swaps are often accepted.
EXCHANGE = dict(centres=(0.45, 0.48, 0.51, 0.54), force_constant=3000.0, equilibration_ps=0.1, production_ps=2.0,
                sample_interval_ps=0.1, replica_exchange=True, approach_per_ps=0.1, **FAST)


def test_cv_from_energies_inverts_the_umbrella_bias():
    rng = np.random.default_rng(0)
    centres = np.array([0.1, 0.35, 0.6, 0.85])
    cv = rng.uniform(0.0, 1.0, size=(7, 5))  # [T, R]
    unbiased = rng.normal(-4000.0, 50.0, size=(7, 5, 1))  # reduced energy without the bias, kT: it cancels
    beta = 1.0 / umbrella.kt_kj_mol(300.0)
    reduced = unbiased + beta * 0.5 * 2500.0 * (cv[..., None] - centres) ** 2  # [T, R, K]
    np.testing.assert_allclose(umbrella_exchange.cv_from_energies(reduced, centres, 2500.0, 300.0), cv, atol=1e-9)


def test_replica_exchange_windows_swap_sample_and_resume(host_guest_cv, pulled, tmp_path, monkeypatch,
                                                         file_contents):
    """Windows side by side with swaps: samples per window from the stored energies, OpenMM's CV, resume."""
    from openmmtools import multistate

    loaded, _, _, cv = host_guest_cv
    settings = UmbrellaSettings(**EXCHANGE)
    # Killed after the first 10 iterations (a checkpoint): the storage is closed and the run resumes from it.
    monkeypatch.setattr(umbrella_exchange, "PROGRESS_ITERATIONS", 10)
    real_statistics = umbrella_exchange.exchange_statistics

    def killed(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(umbrella_exchange, "exchange_statistics", killed)
    with pytest.raises(KeyboardInterrupt):
        seed_umbrella_windows(loaded, pulled[1], cv, settings, tmp_path)
    assert not any(tmp_path.glob("window_*/result.json"))
    # The storage cut short (a full disk): named, with what to do, and left as it is.
    damaged = tmp_path.parent / f"{tmp_path.name}_damaged"
    shutil.copytree(tmp_path, damaged)
    storage = damaged / "exchange.nc"
    storage.write_bytes(storage.read_bytes()[: storage.stat().st_size // 2])
    kept = file_contents(damaged, "exchange*")
    with pytest.raises(DamagedRunFileError, match=r"exchange\.nc is damaged: openmmtools cannot resume from it .*"
                                                  r"delete both to run the exchange again"):
        seed_umbrella_windows(loaded, pulled[1], cv, settings, damaged)
    assert file_contents(damaged, "exchange*") == kept
    # its checkpoint file gone, or garbage: that file is named (both had been reported as exchange.nc's damage)
    storage.write_bytes((tmp_path / "exchange.nc").read_bytes())
    checkpoint = damaged / "exchange_checkpoint.nc"
    for damage, why in ((None, r"it is missing, and exchange\.nc cannot resume without it"),
                        (b"garbage" * 100, "openmmtools cannot resume from it")):
        checkpoint.unlink() if damage is None else checkpoint.write_bytes(damage)
        with pytest.raises(DamagedRunFileError, match=rf"exchange_checkpoint\.nc is damaged: {why}.* Restore "
                                                      r"exchange\.nc and exchange_checkpoint\.nc from a copy"):
            seed_umbrella_windows(loaded, pulled[1], cv, settings, damaged)
    # the windows' records gone beside a storage of iterations: refused (a new exchange had deleted them)
    checkpoint.write_bytes((tmp_path / "exchange_checkpoint.nc").read_bytes())
    records = damaged / "exchange_windows.json"
    kept_records = records.read_bytes()
    records.unlink()
    kept = file_contents(damaged)
    with pytest.raises(DamagedRunFileError, match=r"exchange_windows\.json is missing, but .*exchange\.nc holds 10 "
                                                  r"iterations of exchange"):
        seed_umbrella_windows(loaded, pulled[1], cv, settings, damaged)
    assert file_contents(damaged) == kept
    records.write_bytes(kept_records)
    # the storage gone beside its checkpoint: refused (a new exchange had started over it without a word); both
    # gone (the fresh start offered above): the log says the exchange starts again
    storage.unlink()
    kept = file_contents(damaged)
    with pytest.raises(DamagedRunFileError, match=r"exchange\.nc is missing, but its checkpoint .*exchange_checkpoint"
                                                  r"\.nc is there: .* delete exchange_checkpoint\.nc too"):
        seed_umbrella_windows(loaded, pulled[1], cv, settings, damaged)
    assert file_contents(damaged) == kept
    checkpoint.unlink()
    log = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        seed_umbrella_windows(loaded, pulled[1], cv, settings, damaged, log=log)
    assert "exchange.nc and exchange_checkpoint.nc are gone from" in log.getvalue()
    records = tmp_path / "exchange_windows.json"
    stamp = os.stat(records).st_mtime_ns
    monkeypatch.setattr(umbrella_exchange, "exchange_statistics", real_statistics)
    log = io.StringIO()
    summary = seed_umbrella_windows(loaded, pulled[1], cv, settings, tmp_path, log=log)
    assert "resuming at iteration 10 of 20" in log.getvalue()
    assert os.stat(records).st_mtime_ns == stamp  # the windows were not equilibrated again

    assert summary["status"] == "complete" and len(summary["windows"]) == 4
    stats = summary["exchange"]
    assert stats["iteration"] == stats["n_iterations"] == stats["iterations"] == 20
    assert stats["mean_neighbour_acceptance"] > 0.1 and max(stats["windows_visited"]) > 1
    values = cv.values(pulled[1])
    for w, centre in zip(summary["windows"], EXCHANGE["centres"]):
        assert w["centre"] == pytest.approx(centre) and w["replica_exchange"]
        assert w["start_frame"] == first_arrival_frames(values, [centre])[0]
        header, table = read_csv(tmp_path / f"window_{w['index']:03d}" / "cv.csv")
        assert header == ["time_ps", "cv"] and table.shape == (20, 2)
        np.testing.assert_allclose(table[:, 0], 0.1 * np.arange(1, 21))
        assert abs(w["mean_cv"] - centre) < 0.1 and 0 < w["std_cv"] < 0.1
    # The samples recovered from the energies are the CV of the configurations OpenMM propagated.
    reporter = multistate.MultiStateReporter(str(tmp_path / "exchange.nc"), open_mode="r")
    try:
        positions = np.array([s.positions.value_in_unit(s.positions.unit) for s in reporter.read_sampler_states(20)])
        window_of = reporter.read_replica_thermodynamic_states(20)  # [R]
    finally:
        reporter.close()
    last = np.array([read_csv(tmp_path / f"window_{k:03d}" / "cv.csv")[1][-1, 1] for k in window_of])
    np.testing.assert_allclose(last, cv.values(positions), atol=1e-4)
    # The profile is analysed like plain windows'; a finished run is not rerun; refinement is refused.
    assert np.isfinite(analyze_umbrella(tmp_path, write=False)["f_kt"]).sum() > 5
    stamps = [os.stat(p).st_mtime_ns for p in sorted(tmp_path.glob("window_*/result.json"))]
    again = seed_umbrella_windows(loaded, pulled[1], cv, settings, tmp_path)
    assert again["windows"] == summary["windows"] and again["exchange"] == summary["exchange"]
    assert json.loads((tmp_path / "umbrella.json").read_text())["exchange"] == summary["exchange"]
    assert [os.stat(p).st_mtime_ns for p in sorted(tmp_path.glob("window_*/result.json"))] == stamps
    with pytest.raises(ValueError, match="refinement"):
        refine_umbrella_windows(loaded, pulled[1], cv, settings, tmp_path)
    with pytest.raises(ValueError, match="two windows"):
        UmbrellaSettings(**{**EXCHANGE, "centres": (0.5,)})
    with pytest.raises(RunMismatchError, match="replica_exchange"):
        seed_umbrella_windows(loaded, pulled[1], cv, replace(settings, replica_exchange=False), tmp_path)

    # Reproducible: two fresh runs give the same samples bit for bit (swaps drawn from a seeded numpy state, which
    # is the caller's again afterwards); the resumed run above matches them up to where it was killed and then goes
    # on with noise of its own.
    np.random.seed(123)
    fresh = [seed_umbrella_windows(loaded, pulled[1], cv, settings, tmp_path / name) for name in ("a", "b")]
    assert np.random.randint(1 << 30) == np.random.RandomState(123).randint(1 << 30)
    assert fresh[0]["exchange"]["windows_visited"] == fresh[1]["exchange"]["windows_visited"]
    for k in range(4):
        a, b, resumed = (read_csv(d / f"window_{k:03d}" / "cv.csv")[1] for d in (tmp_path / "a", tmp_path / "b", tmp_path))
        assert np.array_equal(a, b) and np.array_equal(a[:10], resumed[:10])


def test_each_replica_draws_its_own_noise_whichever_context_propagates_it(host_guest_cv):
    """Two replicas taking turns in one Context (one slot's cache) move exactly as each does in a Context of its
    own seeded ``seed + replica``: its noise goes on from one propagation to the next, untouched by the other's."""
    import openmm
    from openmm import unit
    from openmmtools import mcmc, states

    loaded = host_guest_cv[0]
    thermodynamic_state = states.ThermodynamicState(loaded.system, 300.0 * unit.kelvin)
    move = mcmc.LangevinDynamicsMove(timestep=2.0 * unit.femtosecond, n_steps=20, reassign_velocities=False)
    platform, properties = openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"}
    noise = umbrella_exchange._ReplicaNoise(41, properties)
    slot = umbrella_exchange._ReplicaNoiseCache(noise, platform=platform, platform_properties=properties)
    still = np.zeros_like(loaded.positions)
    replicas = [states.SamplerState(loaded.positions * unit.nanometer, still * unit.nanometer / unit.picosecond)
                for _ in range(2)]
    for _ in range(3):
        for r, replica in enumerate(replicas):
            with slot.propagating(r):
                move.apply(thermodynamic_state, replica, context_cache=slot)
    for r, replica in enumerate(replicas):
        integrator = move._get_integrator(thermodynamic_state)
        integrator.setRandomNumberSeed(umbrella_exchange._nth_seed(41, r))
        alone = thermodynamic_state.create_context(integrator, platform, properties)
        alone.setPositions(loaded.positions)
        alone.setVelocities(still)
        integrator.step(3 * 20)
        expected = alone.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        assert np.array_equal(replica.positions.value_in_unit(unit.nanometer), expected)
    assert not np.array_equal(replicas[0].positions, replicas[1].positions)


def test_replica_exchange_gives_the_same_samples_on_any_number_of_cores(host_guest_cv, pulled, tmp_path):
    """Replicas one after another, pinned to one core, or side by side on two: the same samples bit for bit (each
    replica draws its own noise, whichever core propagates it); another seed, other samples."""
    loaded, _, _, cv = host_guest_cv
    cpus = tuple(sorted({cpu_for(0), cpu_for(1)} - {None}))
    if len(cpus) < 2:
        cpus = (cpus[0], cpus[0] + 1) if cpus else (0, 1)  # a pin that fails leaves the thread unpinned
    short = {**EXCHANGE, "production_ps": 1.0}
    arrangements = {"serial": ({}, None), "one core": ({}, cpus[:1]), "two cores": ({}, cpus),
                    "two cores, another seed": ({"seed": 1}, cpus)}
    samples, summaries = {}, {}
    for name, (changed, where) in arrangements.items():
        out = tmp_path / name.replace(" ", "_").replace(",", "")
        summaries[name] = seed_umbrella_windows(loaded, pulled[1], cv,
                                                UmbrellaSettings(**{**short, **changed}, cpus=where), out)
        samples[name] = [read_csv(out / f"window_{k:03d}" / "cv.csv")[1] for k in range(4)]
    same = {name: all(np.array_equal(a, b) for a, b in zip(samples["serial"], s)) for name, s in samples.items()}
    assert same == {"serial": True, "one core": True, "two cores": True, "two cores, another seed": False}
    # The windows were equilibrated side by side from the same seeds: the same starts of the exchange.
    assert [w["equilibrated_cv"] for w in summaries["two cores"]["windows"]] == \
        [w["equilibrated_cv"] for w in summaries["serial"]["windows"]]
    assert summaries["two cores"]["exchange"]["cpus"] == list(cpus) and summaries["serial"]["exchange"]["cpus"] is None
    for s in samples["two cores"]:
        assert s.shape == (10, 2) and np.all(np.isfinite(s))


def test_replica_exchange_stored_with_the_old_seeded_move_resumes(host_guest_cv, pulled, tmp_path, monkeypatch):
    """Runs stored before the per-core seeding name ``_SeededLangevinMove`` in exchange.nc: they still resume."""
    loaded, _, _, cv = host_guest_cv
    settings = UmbrellaSettings(**EXCHANGE)
    monkeypatch.setattr(umbrella_exchange, "PROGRESS_ITERATIONS", 10)  # a checkpoint
    monkeypatch.setattr(umbrella_exchange.mcmc, "LangevinDynamicsMove",
                        functools.partial(umbrella_exchange._SeededLangevinMove, random_seed=7))

    def killed(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(umbrella_exchange, "exchange_statistics", killed)
    with pytest.raises(KeyboardInterrupt):
        seed_umbrella_windows(loaded, pulled[1], cv, settings, tmp_path)
    assert b"_SeededLangevinMove" in (tmp_path / "exchange.nc").read_bytes()
    monkeypatch.undo()  # today's move and statistics again
    log = io.StringIO()
    summary = seed_umbrella_windows(loaded, pulled[1], cv, settings, tmp_path, log=log)
    assert "resuming at iteration 10 of 20" in log.getvalue()
    assert summary["status"] == "complete" and summary["exchange"]["iterations"] == 20


def test_replica_exchange_that_blows_up_says_so(host_guest_cv, pulled, tmp_path):
    """10 fs steps blow the constrained host–guest up (real OpenMM NaN): in the windows' equilibration, or, with
    none, in the exchange itself, whose storage then stays readable up to where it blew up."""
    from openmmtools import multistate

    loaded, _, _, cv = host_guest_cv
    unstable = {**EXCHANGE, "timestep_fs": 10.0}
    with pytest.raises(MDBlewUpError, match=r"the equilibration of umbrella window 0 \(centre 0\.45\) blew up "
                                            r".*NaN.*Nothing of the replica exchange is stored yet"):
        seed_umbrella_windows(loaded, pulled[1], cv, UmbrellaSettings(**unstable), tmp_path / "a")
    assert not (tmp_path / "a" / "exchange.nc").exists()
    with pytest.raises(MDBlewUpError, match=r"replica exchange blew up after iteration \d+ .*NaN.*keeps every "
                                            r"iteration up to its last checkpoint"):
        seed_umbrella_windows(loaded, pulled[1], cv, UmbrellaSettings(**{**unstable, "equilibration_ps": 0.0,
                                                                          "approach_per_ps": None}), tmp_path / "b")
    reporter = multistate.MultiStateReporter(str(tmp_path / "b" / "exchange.nc"), open_mode="r")
    try:
        assert reporter.read_last_iteration() >= 0
    finally:
        reporter.close()


def test_pymbar_profile_with_uncertainties_and_plot(distance_run):
    out, _ = distance_run
    fes = analyze_umbrella(out, n_bins=25)
    filled = fes["counts"] > 0
    assert filled.sum() >= 10
    assert np.all(np.isfinite(fes["f_kt"][filled])) and np.all(np.isnan(fes["f_kt"][~filled]))
    assert np.all(np.isfinite(fes["df_kt"][filled])) and np.all(fes["df_kt"][filled] >= 0)
    j = int(np.argmin(np.abs(fes["x"] - fes["bound_minimum"])))
    assert fes["f_kt"][j] == 0.0 and fes["df_kt"][j] == 0.0  # zero (exactly) at the bound minimum
    assert np.nanmin(fes["f_kt"]) == 0.0
    np.testing.assert_allclose(fes["f_kj_mol"][filled], fes["f_kt"][filled] * fes["kt_kj_mol"])
    assert fes["kt_kj_mol"] == pytest.approx(2.494, abs=1e-3)
    # The profile is -ln p(r) + 2 ln r (the distance's volume term), both zeroed at the same bin.
    jac = fes["f_kt"][filled] - fes["f_raw_kt"][filled]
    np.testing.assert_allclose(jac, 2 * np.log(fes["x"][filled] / fes["x"][j]), atol=1e-9)
    for w in fes["windows"]:
        assert w["g"] >= 1 and 1 <= w["n_uncorrelated"] <= w["n_samples"] == 50
    assert sum(w["n_uncorrelated"] for w in fes["windows"]) == fes["counts"].sum()
    assert len(fes["neighbour_overlap"]) == 5 and 0 < fes["min_overlap"] <= 1
    b = fes["binding"]
    assert np.isfinite(b["delta_f_kt"]) and np.isfinite(b["d_delta_f_kt"]) and b["d_delta_f_kt"] > 0
    assert b["delta_f_kj_mol"] == pytest.approx(b["delta_f_kt"] * fes["kt_kj_mol"])
    assert b["bound_bin"][1] <= b["plateau"][0]

    on_disk = json.loads((out / "fes.json").read_text())
    assert on_disk["binding"]["delta_f_kt"] == pytest.approx(b["delta_f_kt"])
    assert on_disk["f_kt"][j] == 0.0 and on_disk["f_kt"].count(None) == int((~filled).sum())
    header, table = read_csv(out / "fes.csv")
    assert header[:3] == ["cv", "f_kt", "df_kt"] and table.shape == (25, 7)
    assert (out / "fes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    same = binding_free_energy(out, n_bins=25)
    assert same["delta_f_kt"] == pytest.approx(b["delta_f_kt"])
    assert same["warnings"] == fes["warnings"]  # the caller of the one number is told what the analysis found
    assert same["d_delta_f_kt"] == pytest.approx(b["d_delta_f_kt"])
    # An explicit plateau works the same way (and is refused where there is none).
    explicit = binding_free_energy(out, n_bins=25, plateau_from=b["plateau"][0])
    assert explicit["delta_f_kt"] == pytest.approx(b["delta_f_kt"])
    with pytest.raises(ValueError, match="plateau"):
        binding_free_energy(out, n_bins=25, plateau_from=-1.0)


def test_profiles_on_common_bins_compare(distance_run):
    """Two analyses on the same bins compare bin by bin (how generated and steered seeding are compared)."""
    out, _ = distance_run
    a = analyze_umbrella(out, n_bins=12, cv_range=(0.35, 0.75), write=False)
    b = analyze_umbrella(out, n_bins=12, cv_range=(0.35, 0.75), discard_ps=0.2, write=False)
    np.testing.assert_allclose(a["bin_edges"], np.linspace(0.35, 0.75, 13))
    same = profile_difference(a, a)
    assert same["max_abs_kt"] == 0 and same["aligned_max_abs_kt"] == 0 and same["n_bins"] >= 6
    d = profile_difference(a, b)
    assert d["n_bins"] >= 6 and np.isfinite(d["aligned_rms_kt"]) and d["aligned_rms_kt"] <= d["aligned_max_abs_kt"]
    shifted = {**b, "f_kt": np.asarray(b["f_kt"]) + 3.0}  # a profile is defined up to a constant
    assert profile_difference(a, shifted)["aligned_max_abs_kt"] == pytest.approx(d["aligned_max_abs_kt"])
    with pytest.raises(ValueError, match="different bins"):
        profile_difference(a, analyze_umbrella(out, n_bins=10, write=False))
    # kde profiles need scikit-learn (not a dependency): either it works or the error says so.
    try:
        import sklearn  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="scikit-learn"):
            analyze_umbrella(out, fes_type="kde", n_bootstraps=2, write=False)
    else:
        kde = analyze_umbrella(out, fes_type="kde", n_bootstraps=2, write=False)
        assert np.isfinite(kde["f_kt"]).all()


def _synthetic_umbrella(out, pmf_kt, centres, k_kt, n=3000, seed=0):
    """An umbrella run directory with windows sampled exactly (iid) from a known PMF of a distance.

    The unbiased density is ``x² exp(-W(x))`` (the 3-D volume term); window ``k`` adds ``½ k (x − c_k)²``.
    """
    rng = np.random.default_rng(seed)
    grid = np.linspace(1e-3, 1.5, 30001)
    samples = []
    for c in centres:
        log_p = 2 * np.log(grid) - pmf_kt(grid) - 0.5 * k_kt * (grid - c) ** 2
        cdf = np.cumsum(np.exp(log_p - log_p.max()))
        samples.append(np.interp(rng.random(n) * cdf[-1], cdf, grid))
    _umbrella_run(out, centres, samples, k_kt * 0.00831446261815324 * 300.0)


def _umbrella_run(out, centres, samples, k_kj_mol_nm2):
    """An umbrella run directory (300 K, a sample every 0.1 ps) holding the given CV samples of each window."""
    plan = []
    for i, (c, x) in enumerate(zip(centres, samples)):
        wdir = out / f"window_{i:03d}"
        wdir.mkdir(parents=True)
        np.savetxt(wdir / "cv.csv", np.stack([0.1 * np.arange(1, len(x) + 1), x], 1), delimiter=",",
                   header="time_ps,cv", comments="")
        (wdir / "result.json").write_text(json.dumps({"index": i, "centre": float(c)}))
        plan.append({"index": i, "centre": float(c)})
    (out / "umbrella.json").write_text(json.dumps({
        "format": "biomd-umbrella", "plan": plan,
        "settings": {"temperature_k": 300.0, "force_constant": k_kj_mol_nm2, "sample_interval_ps": 0.1},
        "cv": [{"name": "distance", "unit": "nm", "jacobian_exponent": 2}]}))


def test_pymbar_analysis_recovers_a_known_profile(tmp_path):
    """Known answer: a 3 kT deep well at 0.3 nm, flat beyond ~0.6 nm (no MD, exact samples)."""
    def pmf(x):
        return 3.0 * (1.0 - np.exp(-(((x - 0.3) / 0.12) ** 2)))

    _synthetic_umbrella(tmp_path, pmf, np.linspace(0.15, 1.0, 12), k_kt=400.0)
    fes = analyze_umbrella(tmp_path, n_bins=30, cv_range=(0.2, 0.95), plateau_from=0.75)
    ok = np.isfinite(fes["f_kt"])
    assert ok.sum() == 30
    assert fes["bound_minimum"] == pytest.approx(0.3, abs=0.03)
    truth = pmf(fes["x"]) - pmf(fes["bound_minimum"])
    err = np.abs(fes["f_kt"] - truth)
    # Within the statistical error (plus a little histogram bias) everywhere.
    assert np.all(err < 4 * fes["df_kt"] + 0.15), (err, fes["df_kt"])
    b = fes["binding"]
    assert b["delta_f_kt"] == pytest.approx(3.0 - pmf(fes["bound_minimum"]), abs=max(0.2, 4 * b["d_delta_f_kt"]))
    assert 0 < b["d_delta_f_kt"] < 0.2
    assert fes["min_overlap"] > 0.03 and fes["warnings"] == [] and len(fes["empty_bins"]) == 0


def test_replicate_runs_pool_into_one_profile(tmp_path):
    """Replicates of the same windows (other seeds) pool into one MBAR analysis; other windows' physics do not."""
    def pmf(x):
        return 3.0 * (1.0 - np.exp(-(((x - 0.3) / 0.12) ** 2)))

    centres = np.linspace(0.15, 1.0, 12)
    for name, seed in (("a", 0), ("b", 1)):
        (tmp_path / name).mkdir()
        _synthetic_umbrella(tmp_path / name, pmf, centres, k_kt=400.0, n=1500, seed=seed)
    options = dict(n_bins=30, cv_range=(0.2, 0.95), plateau_from=0.75, write=False)
    one = analyze_umbrella(tmp_path / "a", **options)
    both = analyze_umbrella(tmp_path / "a", pool=(tmp_path / "b",), **options)
    assert sum(w["n_samples"] for w in both["windows"]) == 2 * sum(w["n_samples"] for w in one["windows"])
    assert both["pooled_with"] == [str(tmp_path / "b")]
    truth = pmf(both["x"]) - pmf(both["bound_minimum"])
    assert np.all(np.abs(both["f_kt"] - truth) < 4 * both["df_kt"] + 0.15)
    # Twice the samples: the uncertainty shrinks by about √2.
    assert both["binding"]["d_delta_f_kt"] == pytest.approx(one["binding"]["d_delta_f_kt"] / np.sqrt(2), rel=0.2)
    # Neighbours are centres, not windows: two replicates at a centre share its overlap, not halve it.
    assert [o["centres"] for o in both["neighbour_overlap"]] == [o["centres"] for o in one["neighbour_overlap"]]
    assert [o["overlap"] for o in both["neighbour_overlap"]] == pytest.approx(
        [o["overlap"] for o in one["neighbour_overlap"]], rel=0.15)
    assert binding_free_energy(tmp_path / "a", pool=(tmp_path / "b",), plateau_from=0.75, n_bins=30,
                               cv_range=(0.2, 0.95))["delta_f_kt"] == pytest.approx(both["binding"]["delta_f_kt"])
    (tmp_path / "c").mkdir()
    _synthetic_umbrella(tmp_path / "c", pmf, centres, k_kt=200.0, n=100)
    with pytest.raises(ValueError, match="cannot be pooled.*force_constant"):
        analyze_umbrella(tmp_path / "a", pool=(tmp_path / "c",), **options)


def test_holes_in_the_sampled_range_are_reported(tmp_path):
    """Two stiff windows far apart: no overlap and empty bins between them, each a warning."""
    _synthetic_umbrella(tmp_path, lambda x: 0.0 * x, [0.3, 0.8], k_kt=4000.0, n=500)
    fes = analyze_umbrella(tmp_path, n_bins=20, cv_range=(0.2, 0.9), write=False)
    assert fes["min_overlap"] < 0.03
    assert len(fes["empty_bins"]) >= 10 and np.all((fes["empty_bins"] > 0.3) & (fes["empty_bins"] < 0.8))
    assert np.all(np.isnan(fes["f_kt"][np.isin(fes["x"], fes["empty_bins"])]))
    assert any("overlap" in w for w in fes["warnings"]) and any("hold no sample" in w for w in fes["warnings"])
    # MBAR converges across the gap, but a free-energy difference across it rests on no shared sample
    assert re.match(r"neighbouring windows share no samples: 0\.3–0\.8 \(overlap .*\) nm; the bound and unbound "
                    r"states are not joined", fes["binding"]["error"])


def test_windows_mbar_cannot_join_are_refused_with_what_to_do(tmp_path):
    """Short windows on a steep profile: the middle one never reaches its centre and shares no CV values
    with the last; MBAR does not converge, and the error names the gap and what to do instead of pymbar's
    traceback.  The samples are those of a real run (3 windows × 2 ps along a whole generated host–guest
    exit, k = 1000 kJ/mol/nm², the seed_umbrella example's test settings)."""
    samples = [[0.0591, 0.0259, 0.0119, 0.0356, 0.0094, 0.0263, 0.027, 0.0383],
               [0.0831, 0.0733, 0.0845, 0.074, 0.0501, 0.0582, 0.0913, 0.0955],
               [0.9031, 0.9, 0.9332, 0.9317, 0.9281, 0.945, 0.9619, 0.9728]]
    _umbrella_run(tmp_path, [0.004, 0.4236, 0.8432], [np.array(x) for x in samples], 1000.0)
    message = r"(?s)could not join the windows.*never meet: 0\.4236–0\.8432 nm.*Add windows"
    with pytest.raises(ValueError, match=message):
        analyze_umbrella(tmp_path, write=False)
    assert not (tmp_path / "fes.json").exists()


def test_path_cv_windows(host_guest_cv, pulled, tmp_path):
    loaded, ligand, pocket, _ = host_guest_cv
    frames = pulled[1]
    cv = PathCV1D.from_path(frames, np.union1d(ligand, pocket), n_nodes=8, which="s")
    s = cv.values(frames)
    assert s[0] < 0.1 and s[-1] > 0.9  # progress runs from the bound end to the unbound end
    settings = UmbrellaSettings(centres=(0.2, 0.5, 0.8), force_constant=20000.0, equilibration_ps=0.2,
                                production_ps=0.6, sample_interval_ps=0.02, **FAST)
    summary = seed_umbrella_windows(loaded, frames, cv, settings, tmp_path)
    assert json.loads((tmp_path / "umbrella.json").read_text())["cv"][0]["name"] == "path_s"
    assert (tmp_path / "path_nodes_path_s.npy").exists()
    for w in summary["windows"]:
        assert w["start_frame"] == first_arrival_frames(s, [w["centre"]])[0]
        assert w["start_cv_openmm"] == pytest.approx(w["start_cv"], abs=1e-3)  # RMSDForce path CV == numpy twin
        assert abs(w["mean_cv"] - w["centre"]) < 0.15
    fes = analyze_umbrella(tmp_path, n_bins=15)
    assert fes["jacobian_exponent"] == 0 and fes["unit"] == "1"
    filled = fes["counts"] > 0
    assert np.all(np.isfinite(fes["f_kt"][filled])) and np.all(np.isfinite(fes["df_kt"][filled]))


def test_bad_inputs_are_refused(host_guest_cv, pulled, tmp_path):
    loaded, _, _, cv = host_guest_cv
    frames = pulled[1]
    top = float(cv.values(frames).max())
    with pytest.raises(ValueError, match="outside the path's CV range"):
        seed_umbrella_windows(loaded, frames, cv, UmbrellaSettings(centres=(0.1, top + 1.0), **FAST), tmp_path)
    values = np.sort(cv.values(frames))
    gap = int(np.argmax(np.diff(values)))
    with pytest.raises(ValueError, match="gap"):
        seed_umbrella_windows(loaded, frames, cv, UmbrellaSettings(
            centres=(0.5 * (values[gap] + values[gap + 1]),), max_start_offset=1e-3, **FAST), tmp_path)
    with pytest.raises(ValueError, match="empty"):
        seed_umbrella_windows(loaded, frames[:0], cv, UmbrellaSettings(**FAST), tmp_path)
    with pytest.raises(ValueError, match="156 particles"):
        seed_umbrella_windows(loaded, frames[:, :100], cv, UmbrellaSettings(**FAST), tmp_path)
    with pytest.raises(ValueError, match="whole"):
        UmbrellaSettings(sample_interval_ps=0.003)
    with pytest.raises(ValueError, match="overlap"):
        DistanceCV([0, 1], [1, 2])
    with pytest.raises(FileNotFoundError, match="umbrella.json"):
        analyze_umbrella(tmp_path / "nothing")
    # A last frame 1.5 nm further out (a gap, not yet a broken frame): a window in the gap would approach its
    # centre for ~100 ps.
    jumped = frames.copy()
    jumped[-1, host_guest_cv[1], 0] += 1.5
    with pytest.raises(ValueError, match=r"window 1 \(centre 2 nm\) would start from frame .* approach its centre "
                                         r"for [\d.]+ ps .* the path jumps across that part of the CV"):
        seed_umbrella_windows(loaded, jumped, cv, UmbrellaSettings(centres=(0.5, 2.0), production_ps=1.0,
                                                                   sample_interval_ps=0.1, **FAST), tmp_path)
    # One frame with the guest 30 nm away (teleported): refused as a broken frame before any window is planned,
    # whatever the windows (two windows, one on that frame, had given a free energy between them).
    teleported = frames.copy()
    teleported[10, host_guest_cv[1]] += 30.0
    for settings in (UmbrellaSettings(n_windows=2, production_ps=1.0, sample_interval_ps=0.1, **FAST),
                     UmbrellaSettings(n_windows=2, approach_per_ps=None, production_ps=1.0, sample_interval_ps=0.1,
                                      **FAST)):
        with pytest.raises(ValueError, match=r"the path jumps between frames 9 and 10: the distance between two "
                                             r"atoms of the CV .* changes by [\d.]+ nm .*2 such step"):
            seed_umbrella_windows(loaded, teleported, cv, settings, tmp_path)
    assert not any(tmp_path.glob("window_*")) and not (tmp_path / "umbrella.json").exists()


def test_unreadable_and_damaged_files_and_bad_machine_settings_get_one_line_errors(host_guest_cv, pulled,
                                                                                    distance_run, tmp_path, capsys):
    """Through ``biomd``: a file that is no trajectory, an output path that is a file, a CPU this process may not
    use, zero threads, a window record cut short: exit status 2 and one line naming the problem."""
    from openmm_biomd.cli import main

    steer_dir, _ = pulled
    not_a_trajectory = tmp_path / "notes.dcd"
    not_a_trajectory.write_text("not a trajectory\n")
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    cut_short = tmp_path / "cut_short.dcd"  # mdtraj reads the whole frames left: a path seeded from part of it
    whole = (steer_dir / "path.dcd").read_bytes()
    cut_short.write_bytes(whole[: len(whole) * 2 // 3])
    steer = ["steer", "--system", "host-guest", "--by", "0.2", "--time", "0.2ps", "--equilibration", "0ps",
             "--frame-interval", "0.1ps", "--quiet"]
    cases = {
        "notes.dcd cannot be read": ["--path", str(not_a_trajectory), "--topology", str(steer_dir / "topology.pdb"),
                                     "--out", str(tmp_path / "a")],
        r"cut_short.dcd is cut short: its header counts \d+ frames of \d+ bytes, the file holds \d+ whole ones "
        "and part of another": ["--path", str(cut_short), "--topology", str(steer_dir / "topology.pdb"),
                                "--out", str(tmp_path / "d")],
        # each had been recorded in steered.json before it failed, which then refused the corrected command
        "argument --seed: a seed is a whole number >= 0, not -1": ["--seed=-1", "--out", str(tmp_path / "e")],
        r"from_value \(--from\) must be a finite CV value, got nan": ["--from", "nan", "--out", str(tmp_path / "f")],
        "is a file, not a folder": ["--out", str(a_file)],
        "CPU 100000 is not one this process may run on": ["--cpu", "100000", "--out", str(tmp_path / "b")],
        "CPU threads must be at least 1": ["--threads", "0", "--out", str(tmp_path / "c")],
    }
    for message, argv in cases.items():
        status = main(steer + argv)
        assert status == 2, message
        err = capsys.readouterr().err
        assert re.search(f"biomd steer: error: .*({message})", err) and "Traceback" not in err, err
    assert not any((tmp_path / name).exists() for name in "abcdef")
    damaged = tmp_path / "damaged"
    shutil.copytree(distance_run[0], damaged)
    record = damaged / "window_002" / "result.json"
    kept = record.read_bytes()
    record.write_bytes(kept[:50])
    with pytest.raises(DamagedRunFileError, match=r"window_002/result.json is damaged: it is not valid JSON"):
        analyze_umbrella(damaged, write=False)
    summary = (damaged / "umbrella.json").read_bytes()  # resuming names it too, before rewriting the summary
    with pytest.raises(DamagedRunFileError, match=r"window_002/result.json is damaged"):
        seed_umbrella_windows(host_guest_cv[0], pulled[1], host_guest_cv[3], UmbrellaSettings(**DIST), damaged)
    assert (damaged / "umbrella.json").read_bytes() == summary
    # emptied to {} (a bare KeyError, "error: index"), or another window's record: named, with the window's remedy
    for other, message in (("{}", "it lacks 'index', 'centre'"),
                           ((damaged / "window_003" / "result.json").read_text(), "it records a window at")):
        record.write_text(other)
        for call in (lambda: analyze_umbrella(damaged, write=False),
                     lambda: seed_umbrella_windows(host_guest_cv[0], pulled[1], host_guest_cv[3],
                                                   UmbrellaSettings(**DIST), damaged)):
            with pytest.raises(DamagedRunFileError, match=rf"window_002/result.json is damaged: {message}.* delete the "
                                                          r"window's result.json and rerun"):
                call()
    assert (damaged / "umbrella.json").read_bytes() == summary
    record.write_bytes(kept)
    samples = damaged / "window_001" / "cv.csv"
    samples.rename(samples.with_suffix(".moved"))  # (it had been OSError's bare "No such file or directory")
    with pytest.raises(DamagedRunFileError, match=r"window_001/cv.csv is damaged: it is missing, but the window's "
                                                  r"result.json says it finished"):
        analyze_umbrella(damaged, write=False)
    samples.with_suffix(".moved").rename(samples)
    kept_samples = samples.read_bytes()
    samples.write_bytes(b"")  # emptied: named (it had been an IndexError's traceback)
    with pytest.raises(DamagedRunFileError, match=r"window_001/cv.csv is damaged: its header is \[''\], not "
                                                  r"\['time_ps', 'cv'\]"):
        analyze_umbrella(damaged, write=False)
    samples.write_bytes(kept_samples)
    rows = samples.read_text().splitlines(keepends=True)
    samples.write_text("".join(rows[:-3]))
    with pytest.raises(DamagedRunFileError, match=rf"window_001/cv.csv is damaged: it holds {len(rows) - 4} "
                                                  rf"samples, the window's result.json {len(rows) - 1}.*rerun"):
        analyze_umbrella(damaged, write=False)
    samples.write_text("".join(rows[:-1]) + rows[-1][:3] + ",\n")
    with pytest.raises(DamagedRunFileError, match=r"window_001/cv.csv is damaged: its rows cannot be read"):
        analyze_umbrella(damaged, write=False)
    # a NaN had been pymbar's "cannot convert float NaN to integer", naming no file; the same call again names it
    # too, and leaves the record as the run wrote it (its wall time had been replaced by the call's)
    time_ps = rows[-2].split(",")[0]
    samples.write_text("".join(rows[:-2]) + f"{time_ps},nan\n" + rows[-1])
    with pytest.raises(DamagedRunFileError, match=rf"window_001/cv.csv is damaged: row {len(rows) - 2} holds a value "
                                                  r"that is not a finite number"):
        analyze_umbrella(damaged, write=False)
    with pytest.raises(DamagedRunFileError, match=r"window_001/cv.csv is damaged: row"):
        seed_umbrella_windows(host_guest_cv[0], pulled[1], host_guest_cv[3], UmbrellaSettings(**DIST), damaged)
    assert (damaged / "umbrella.json").read_bytes() == summary
    samples.write_text("".join(rows))
    again = seed_umbrella_windows(host_guest_cv[0], pulled[1], host_guest_cv[3], UmbrellaSettings(**DIST), damaged)
    assert (damaged / "umbrella.json").read_bytes() == summary and again == json.loads(summary)


def _parse(module, argv):
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return parser.parse_args(argv)


def test_command_lines(host_guest_cv, pulled, distance_run, tmp_path, capsys):
    _, ligand, pocket, _ = host_guest_cv
    steer_dir, _ = pulled
    out, _ = distance_run
    # A biomd unbind-style directory (the steered path as attempt 0): system, atoms and topology from it.
    unbind = tmp_path / "unbind"
    (unbind / "attempt_000").mkdir(parents=True)
    shutil.copy(steer_dir / "path.dcd", unbind / "attempt_000" / "path.dcd")
    shutil.copy(steer_dir / "topology.pdb", unbind / "topology.pdb")
    (unbind / "summary.json").write_text(json.dumps({
        "ligand_atoms": ligand.tolist(), "pocket_atoms": pocket[:20].tolist(), "first_success_attempt": 0,
        "system": {"name": "host-guest", "inputs": {"bundled": "host-guest"}}}))
    argv = ["--unbind", str(unbind), "--centres", "0.5", "0.55", "--k", "2000", "--time", "0.2ps",
            "--sample-interval", "0.02ps", "--equilibration", "0ps", "--threads", "1", "--bins", "10",
            "--out", str(tmp_path / "cli"), "--quiet"]
    assert umbrella.main(_parse(umbrella, argv)) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["unit"] == "nm" and (tmp_path / "cli" / "fes.png").exists()
    run = json.loads((tmp_path / "cli" / "umbrella.json").read_text())
    assert len(run["windows"]) == 2 and run["system"] == "host-guest"
    assert run["cv"][0]["pocket_atoms"] == pocket[:20].tolist()  # the unbind run's atoms, not the default pocket
    # --exchange: the windows side by side with replica exchange (not with --refine).
    # --seed-frames nearest: the frames of nearest CV; --approach: another speed; both settings of the data.
    assert run["settings"]["seed_frames"] == "first_arrival" and run["settings"]["approach_per_ps"] == 0.012
    exchange_argv = [*argv[:argv.index("--out")], "--exchange", "--sample-interval", "0.1ps",
                     "--seed-frames", "nearest", "--approach", "none", "--out", str(tmp_path / "exchange"), "--quiet"]
    assert umbrella.main(_parse(umbrella, exchange_argv)) == 0
    assert json.loads(capsys.readouterr().out)["unit"] == "nm"  # openmmtools' citations went to stderr
    exchanged = json.loads((tmp_path / "exchange" / "umbrella.json").read_text())
    assert exchanged["settings"]["replica_exchange"] and exchanged["exchange"]["iterations"] == 2
    assert exchanged["settings"]["seed_frames"] == "nearest" and exchanged["settings"]["approach_per_ps"] is None
    assert all(w["approach_ps"] == 0.0 for w in exchanged["windows"])
    for bad in ("fast", "0", "-0.1"):
        with pytest.raises(SystemExit):  # argparse: "give a positive speed in CV units per ps, or none"
            _parse(umbrella, [*argv, "--approach", bad])
    steered_cv = DistanceCV(ligand, pocket[:20]).values(load_steered(steer_dir)["frames_nm"])
    assert [w["start_frame"] for w in exchanged["windows"]] == nearest_frames(steered_cv, [0.5, 0.55]).tolist()
    with pytest.raises(ValueError, match="refinement"):
        umbrella.main(_parse(umbrella, [*exchange_argv, "--refine", "1"]))
    # --refine: a window is added between two that do not overlap.
    refine_argv = [*argv[:2], "--centres", "0.45", "0.65", "--k", "3000", "--refine", "1", "--time", "0.2ps",
                   "--sample-interval", "0.02ps", "--equilibration", "0ps", "--threads", "1",
                   "--out", str(tmp_path / "refined"), "--quiet"]
    assert umbrella.main(_parse(umbrella, refine_argv)) == 0
    refined = json.loads((tmp_path / "refined" / "umbrella.json").read_text())
    assert [w["centre"] for w in refined["windows"]] == pytest.approx([0.45, 0.65, 0.55])
    capsys.readouterr()
    with pytest.raises(FileNotFoundError, match="attempt_000"):
        umbrella.main(_parse(umbrella, [*argv[:2], "--attempt", "7", "--out", str(tmp_path / "z")]))
    # --analyze-only needs nothing but the run directory.
    assert umbrella.main(_parse(umbrella, ["--analyze-only", "--out", str(out), "--bins", "20"])) == 0
    assert json.loads(capsys.readouterr().out)["bound_minimum"] > 0
    # An unknown selection is a clear error, before any MD.
    with pytest.raises(ValueError, match=r"--ligand selection 'resname NOPE' matches no atom \(residue names here: "
                                         r"B2, CUC\)"):
        umbrella.main(_parse(umbrella, ["--path", str(steer_dir / "path.dcd"), "--system", "host-guest",
                                        "--ligand", "resname NOPE", "--out", str(tmp_path / "x")]))
    with pytest.raises(ValueError, match=r"invalid --pocket selection 'resname CUC and' \(mdtraj's selection "
                                         r"language") as bad_syntax:  # pyparsing's dump, cut to one short line
        umbrella.main(_parse(umbrella, ["--path", str(steer_dir / "path.dcd"), "--system", "host-guest",
                                        "--pocket", "resname CUC and", "--out", str(tmp_path / "x")]))
    assert len(str(bad_syntax.value)) < 300 and "\n" not in str(bad_syntax.value)
    with pytest.raises(ValueError, match="give the path"):
        umbrella.main(_parse(umbrella, ["--system", "host-guest", "--out", str(tmp_path / "y")]))
    # biomd steer: a tiny pull from the system's own (bound) pose.
    argv = ["--system", "host-guest", "--by", "0.3", "--time", "0.2ps", "--k", "3000", "--frame-interval", "0.02ps",
            "--equilibration", "0ps", "--threads", "1", "--out", str(tmp_path / "steer"), "--quiet"]
    assert steered.main(_parse(steered, argv)) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frames"] == 11 and report["final_cv"] > report["start_cv"]
    data = load_steered(tmp_path / "steer")
    assert data["centre"][-1] == pytest.approx(data["record"]["settings"]["from_value"] + 0.3)


def test_a_path_is_checked_for_jumps_of_the_cv_atoms_not_for_drift(host_guest_cv, pulled, tmp_path, capsys):
    """The whole complex drifting 5 nm or turning is no jump; the guest moving 4 nm relative to the host is,
    for the distance CV and the path CV alike; through ``biomd steer --cv path`` the path CV is never built
    over it (it had collapsed to one value)."""
    from mdtraj import Trajectory, load

    from openmm_biomd.cli import main
    from openmm_biomd.enhanced.seeding_common import MAX_PATH_STEP_NM, check_frames, check_path_steps

    loaded, ligand, pocket, cv = host_guest_cv
    frames = pulled[1]
    drifted = frames.copy()
    drifted[15:] += 5.0
    turn = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # 90° about z
    drifted[25:] = drifted[25:] @ turn.T
    check_frames(drifted, loaded.system, cvs=cv)
    path_cv = PathCV1D.from_path(frames, np.union1d(ligand, pocket), 6)
    broken = frames.copy()
    broken[20:, ligand, 2] += MAX_PATH_STEP_NM + 1.0  # from frame 20 on: one step, 19 -> 20
    for watched in (cv, path_cv):
        with pytest.raises(ValueError, match=r"jumps between frames 19 and 20: .*; 1 such step"):
            check_frames(broken, loaded.system, cvs=watched)
    check_path_steps(broken, ligand)  # the guest alone did not move relative to itself
    steer_dir, _ = pulled
    teleported = load(str(steer_dir / "path.dcd"), top=str(steer_dir / "topology.pdb"))
    xyz = teleported.xyz.copy()
    xyz[10, ligand] += 30.0
    Trajectory(xyz, teleported.topology).save_dcd(str(tmp_path / "teleported.dcd"))
    assert main(["steer", "--system", "host-guest", "--path", str(tmp_path / "teleported.dcd"), "--topology",
                 str(steer_dir / "topology.pdb"), "--cv", "path", "--by", "0.2", "--time", "0.2ps",
                 "--out", str(tmp_path / "steer"), "--quiet"]) == 2
    assert "the path jumps between frames 9 and 10" in capsys.readouterr().err
    assert not (tmp_path / "steer").exists()


def test_umbrella_analysis_options_are_checked_before_any_window_runs(pulled, tmp_path, capsys):
    """Options that cannot work are refused before the windows' MD (they had been refused after all of it),
    and a run whose profile has no binding free energy says why on stderr, with the profile written (it had
    said so in its JSON only)."""
    from openmm_biomd.cli import main

    steer_dir, _ = pulled
    run = ["umbrella", "--path", str(steer_dir / "path.dcd"), "--system", "host-guest", "--time", "0.2ps",
           "--sample-interval", "0.02ps", "--equilibration", "0ps", "--threads", "1", "--quiet"]
    for option, message in ((["--bins", "1"], "n_bins must be at least 2"),
                            (["--bin-range", "0.1", "0.1"], "cv_range must be"),
                            (["--bootstraps", "-1"], "n_bootstraps is 0"),
                            (["--plateau-from", "nan"], "plateau_from must be a finite"),
                            (["--discard", "5ps"], "shorter than a window's 0.2 ps of production"),
                            (["--ligand", "all"], "no pocket atom is left outside the ligand"),
                            (["--pocket-radius", "-1"], "--pocket-radius must be a positive")):
        out = tmp_path / f"refused{option[0]}"
        assert main([*run, *option, "--out", str(out)]) == 2
        assert message in capsys.readouterr().err
        assert not out.exists()
    out = tmp_path / "one"
    assert main([*run, "--centres", "0.3", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "warning: no binding free energy: one window (at 0.3) samples only its own well" in captured.err
    assert "error" in json.loads(captured.out) and (out / "fes.json").exists() and (out / "fes.png").exists()


def test_seeding_commands_refuse_a_folder_of_files_they_did_not_write(host_guest_cv, pulled, distance_run, tmp_path,
                                                                         capsys):
    """``steer``, ``umbrella``, ``walkers`` and ``interactions`` claim their ``--out`` as ``run`` and ``unbind``
    do: a file of the same name that they did not write (the user's, or another command's) is refused by name
    and left as it was (steer had replaced a path.dcd, umbrella a fes.csv, walkers a free_energy.csv,
    interactions an interactions.csv); their own folders are theirs to resume."""
    from openmm_biomd.cli import main

    steer_dir, _ = pulled
    path = ["--path", str(steer_dir / "path.dcd"), "--topology", str(steer_dir / "topology.pdb")]
    commands = {
        "path.dcd": ["steer", "--system", "host-guest", "--by", "0.2", "--time", "0.2ps", "--equilibration", "0ps",
                     "--frame-interval", "0.1ps", "--quiet"],
        "fes.csv": ["umbrella", "--system", "host-guest", *path, "--windows", "2", "--time", "1ps", "--quiet"],
        "free_energy.csv": ["walkers", "--system", "host-guest", *path, "--walkers", "1", "--time", "1ps",
                            "--save-interval", "1ps",
                            "--quiet"],
        "interactions.csv": ["interactions", "--system", "host-guest", "--trajectory", str(steer_dir / "path.dcd")],
    }
    for name, argv in commands.items():
        folder = tmp_path / argv[0]
        folder.mkdir()
        (folder / name).write_text("the user's own\n")
        assert main([*argv, "--out", str(folder)]) == 2
        err = capsys.readouterr().err
        assert f"`biomd {argv[0]}` would overwrite {name} in {folder}, which holds files not written by it" in err
        assert sorted(p.name for p in folder.iterdir()) == [name] and (folder / name).read_text() == "the user's own\n"
    # umbrella pointed at the pull's own folder is refused, naming the command that wrote it
    assert main([*commands["fes.csv"], "--out", str(steer_dir)]) == 2
    assert "which holds the output of `biomd steer`" in capsys.readouterr().err
    # a folder written before folders were claimed is still the command's own (its record says so): it resumes
    earlier = tmp_path / "earlier"
    shutil.copytree(distance_run[0], earlier)
    (earlier / ".biomd-output.json").unlink()
    loaded, _, _, cv = host_guest_cv
    recorded = json.loads((earlier / "umbrella.json").read_text())["windows"]
    resumed = seed_umbrella_windows(loaded, pulled[1], cv, UmbrellaSettings(**DIST), earlier)
    assert resumed["windows"] == recorded  # every window finished before: none run again
