"""``biomd generate-data``: bundled systems, input loaders, chunked resumable MD, metadynamics dissociation.

All runs are tiny (a few ps of alanine dipeptide or CB7–B2 on the CPU platform);
they test the machinery (frame counts, time axes, crash safety, refusals), not
the physics of the data.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from openmm_biomd.cli import main
from openmm_biomd.data import (
    BUNDLED_SYSTEMS,
    RunMismatchError,
    generate_dissociation,
    generate_md,
    get_system,
    iter_replica_trajectories,
    load_frames,
    load_input_files,
    load_inputs,
    load_trajectory,
    parse_time_ps,
    read_metadata,
    replica_seed,
)
from openmm_biomd.data.md import SMALL_SYSTEM_ATOMS, DamagedRunFileError, read_dcd_header, select_platform

REPO = Path(__file__).resolve().parents[2]

# A short alanine-dipeptide run: 30 frames of 0.2 ps in chunks of 6 (5 chunks).
SMALL = dict(time_ps=6.0, frame_interval_ps=0.2, chunk_frames=6, equilibration_ps=0.2, seed=7)
# Long enough (200 frames, 10 chunks) for a subprocess to be killed in the middle.
LONG = dict(time_ps=40.0, frame_interval_ps=0.2, chunk_frames=20, equilibration_ps=0.2, seed=11)


def _energy_kj_mol(system, positions_nm) -> float:
    import openmm
    from openmm import unit

    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions_nm)
    return context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)


def _openmmtools_data(*parts: str) -> Path:
    import openmmtools

    return Path(openmmtools.__file__).parent.joinpath("data", *parts)


@pytest.fixture(scope="module")
def small_reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("small_reference")
    generate_md("alanine-dipeptide", out, **SMALL)
    return out


# --------------------------------------------------------------------------- units and refusals


def test_parse_time_ps():
    assert parse_time_ps("2ns") == 2000.0
    assert parse_time_ps("200ps") == 200.0
    assert parse_time_ps("500 fs") == pytest.approx(0.5)
    assert parse_time_ps("1.5e-3us") == pytest.approx(1.5e3)
    assert parse_time_ps(3) == 3.0  # numbers are ps already
    with pytest.raises(ValueError, match="no unit"):
        parse_time_ps("200")
    with pytest.raises(ValueError, match="unknown time unit 'min'"):
        parse_time_ps("2min")


def test_frame_interval_that_is_not_whole_steps_is_refused(tmp_path, capsys):
    with pytest.raises(ValueError, match="not a whole number of 2 fs integrator steps"):
        generate_md("alanine-dipeptide", tmp_path / "x", time_ps=1.0, frame_interval_ps=0.003)
    rc = main(["generate-data", "--system", "alanine-dipeptide", "--time", "1ps", "--frame-interval", "5fs",
               "--out", str(tmp_path / "y"), "--quiet"])
    assert rc == 2
    assert "whole number" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()


def test_counts_that_would_be_replaced_or_ignored_are_refused(tmp_path, capsys):
    """``--replicas 0`` and ``--chunk-frames 0`` had run with the defaults, and ``--replicas`` with
    ``--dissociation`` had been ignored: each is refused by name, before anything is made."""
    base = ["generate-data", "--system", "alanine-dipeptide", "--time", "1ps", "--quiet"]
    cases = {("--replicas", "0"): "--replicas must be at least 1, got 0",
             ("--chunk-frames", "0"): "--chunk-frames must be at least 1, got 0",
             ("--max-chunks", "-1"): "--max-chunks must be at least 1, got -1",
             ("--replicas", "3", "--dissociation"): "--replicas is for plain-MD runs; a --dissociation campaign runs "
                                                    "--n-seeds seeds"}
    for extra, message in cases.items():
        assert main([*base, *extra, "--out", str(tmp_path / "x")]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    # an --out that is a file is named as such (it was "[Errno 17] File exists")
    (tmp_path / "a_file").write_text("")
    for extra in ((), ("--dissociation",)):
        assert main([*base, *extra, "--out", str(tmp_path / "a_file")]) == 2
        assert "a_file is a file, not a folder" in capsys.readouterr().err


def test_unknown_system_lists_the_known_ones(tmp_path, capsys):
    with pytest.raises(KeyError, match="alanine-dipeptide, host-guest, t4l-pxylene"):
        get_system("lysozyme")
    assert main(["generate-data", "--list-systems"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in BUNDLED_SYSTEMS)
    # through the command: named before the times are checked (it had been "0.2 ps is not a whole number of frame
    # intervals of 1 ps"), without the quotes of a KeyError's repr around the line
    assert main(["generate-data", "--system", "lysozyme", "--time", "0.2ps", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "error: unknown bundled system 'lysozyme'; known systems: alanine-dipeptide" in err
    assert not (tmp_path / "x").exists()


def test_options_a_run_would_ignore_are_refused(tmp_path, capsys):
    """``--resume`` had continued at the recorded 300 K when given ``--temperature 350`` (and the recorded seed, step
    and frame interval when given others), and a plain-MD run had ignored the metadynamics options: both refused by
    name, the run's files left as they were."""
    base = ["generate-data", "--system", "alanine-dipeptide", "--time", "0.2ps", "--quiet"]
    assert main([*base, "--height", "3", "--after-exit", "5ps", "--out", str(tmp_path / "x")]) == 2
    assert "--height, --after-exit are for a --dissociation campaign: add --dissociation" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    out = tmp_path / "run"
    assert main([*base, "--frame-interval", "0.2ps", "--equilibration", "0ps", "--out", str(out)]) == 0
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    for given in (["--temperature", "350"], ["--seed", "8"], ["--timestep", "1fs"], ["--frame-interval", "0.1ps"],
                  ["--out", str(tmp_path / "elsewhere")], ["--sigma", "0.1"]):
        assert main(["generate-data", "--resume", str(out), "--time", "0.4ps", *given, "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"{given[0]} cannot be given with --resume, which continues the run with the settings in its" in err
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == before
    assert not (tmp_path / "elsewhere").exists()


def test_cpu_threads_follow_openmm_cpu_threads(monkeypatch):
    """OpenMM's own OPENMM_CPU_THREADS sets the default (the test suite runs with 1); an explicit count wins."""
    monkeypatch.setenv("OPENMM_CPU_THREADS", "3")
    assert select_platform("CPU", n_atoms=10 * SMALL_SYSTEM_ATOMS)[1] == {"Threads": "3"}
    assert select_platform("CPU", n_atoms=10)[1] == {"Threads": "3"}
    assert select_platform("CPU", threads=2, n_atoms=10)[1] == {"Threads": "2"}
    monkeypatch.setenv("OPENMM_CPU_THREADS", "")
    assert select_platform("CPU", n_atoms=10)[1] == {"Threads": "1"}  # small system: one thread
    monkeypatch.setenv("OPENMM_CPU_THREADS", "two")
    with pytest.raises(ValueError, match="OPENMM_CPU_THREADS"):
        select_platform("CPU", n_atoms=10)


def test_replica_seeds_are_stable_and_nonzero():
    seeds = [replica_seed(0, r) for r in range(100)]
    assert len(set(seeds)) == 100 and all(0 < s < 2**31 for s in seeds)
    assert replica_seed(0, 3) == seeds[3]


# --------------------------------------------------------------------------- bundled systems and inputs


@pytest.mark.parametrize("name", sorted(BUNDLED_SYSTEMS))
def test_bundled_systems_build(name):
    spec = get_system(name)
    topology, system, positions, description = spec.load()
    assert positions.shape == (system.getNumParticles(), 3) == (topology.getNumAtoms(), 3)
    assert positions.dtype == np.float64 and positions.flags.c_contiguous
    assert np.isfinite(_energy_kj_mol(system, positions))
    assert description["kind"] == "bundled" and description["force_field"]
    if spec.ligand_residue:
        assert spec.ligand_residue in {r.name for r in topology.residues()}
    if name == "host-guest":
        # The native GBSAOBCForce (OBC2), not the slow CustomGBForce of the default OBC1 variant.
        assert "GBSAOBCForce" in {f.__class__.__name__ for f in system.getForces()}


@pytest.fixture(scope="module")
def alanine_amber_files():
    prmtop = _openmmtools_data("alanine-dipeptide-gbsa", "alanine-dipeptide.prmtop")
    inpcrd = _openmmtools_data("alanine-dipeptide-gbsa", "alanine-dipeptide.crd")
    return prmtop, inpcrd


def test_load_amber_inputs(alanine_amber_files):
    prmtop, inpcrd = alanine_amber_files
    loaded = load_inputs(prmtop=prmtop, inpcrd=inpcrd, implicit_solvent="OBC2")
    assert loaded.system.getNumParticles() == 22 and loaded.positions.shape == (22, 3)
    assert np.isfinite(_energy_kj_mol(loaded.system, loaded.positions))
    assert loaded.description["kind"] == "amber" and "OBC2" in loaded.description["force_field"]
    # The description rebuilds the same system.
    again = load_inputs(**loaded.description["inputs"])
    assert _energy_kj_mol(again.system, again.positions) == pytest.approx(_energy_kj_mol(loaded.system, loaded.positions))
    # By extension, as the CLI does.
    assert load_input_files([inpcrd, prmtop]).system.getNumParticles() == 22


def test_load_pdb_with_forcefield(tmp_path):
    from openmm import app, unit

    topology, _, positions, _ = get_system("alanine-dipeptide").load()
    pdb = tmp_path / "ala.pdb"
    with open(pdb, "w") as fh:
        app.PDBFile.writeFile(topology, positions * unit.nanometer, fh)
    loaded = load_inputs(pdb=pdb, forcefield=["amber14-all.xml", "implicit/obc2.xml"])
    assert loaded.system.getNumParticles() == 22
    assert np.isfinite(_energy_kj_mol(loaded.system, loaded.positions))
    assert loaded.description["kind"] == "pdb-forcefield"


def test_load_openmm_xml(tmp_path):
    import openmm
    from openmm import app, unit

    topology, system, positions, _ = get_system("alanine-dipeptide").load()
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    (tmp_path / "system.xml").write_text(openmm.XmlSerializer.serialize(system))
    (tmp_path / "state.xml").write_text(openmm.XmlSerializer.serialize(context.getState(getPositions=True)))
    with open(tmp_path / "top.pdb", "w") as fh:
        app.PDBFile.writeFile(topology, positions * unit.nanometer, fh)
    loaded = load_input_files([tmp_path / "state.xml", tmp_path / "top.pdb", tmp_path / "system.xml"])
    assert loaded.description["kind"] == "openmm-xml" and loaded.system.getNumParticles() == 22
    assert _energy_kj_mol(loaded.system, loaded.positions) == pytest.approx(_energy_kj_mol(system, positions), rel=1e-6)
    # The same atoms with a residue's lines moved first: every count matches, every atom would be mislabelled.
    atoms = [line for line in (tmp_path / "top.pdb").read_text().splitlines() if line.startswith(("ATOM", "HETATM"))]
    last = [line for line in atoms if line[17:20] == "NME"]
    (tmp_path / "moved.pdb").write_text("\n".join(last + [line for line in atoms if line not in last] + ["END"]) + "\n")
    with pytest.raises(ValueError, match=r"residue NME .* weighs 30\.\d+ amu by its elements, but the System's "
                                         r"particles 0–5 weigh 43\.\d+ amu: the topology lists the atoms in "
                                         r"another order"):
        load_input_files([tmp_path / "system.xml", tmp_path / "state.xml", tmp_path / "moved.pdb"])
    # Two atoms of one residue swapped (ACE's H1 and CH3): every residue weighs what it should, the names do not fit.
    swapped = [atoms[1], atoms[0]] + atoms[2:]
    assert [line[12:16].strip() for line in swapped[:2]] == ["CH3", "H1"]
    (tmp_path / "swapped.pdb").write_text("\n".join(swapped + ["END"]) + "\n")
    with pytest.raises(ValueError, match=r"the topology bonds atoms CH3 \(0\) and C \(4\) of residue ACE 1, but the "
                                         r"System has no bond or constraint between particles 0 and 4: the topology "
                                         r"lists the residue's atoms in another order"):
        load_input_files([tmp_path / "system.xml", tmp_path / "state.xml", tmp_path / "swapped.pdb"])
    # Hydrogen mass repartitioning moves mass between an atom and its hydrogens (one residue): accepted.
    heavy_h = openmm.XmlSerializer.clone(system)
    for a, b in topology.bonds():
        h, other = (a, b) if a.element.symbol == "H" else (b, a)
        if h.element.symbol == "H":
            heavy_h.setParticleMass(h.index, heavy_h.getParticleMass(h.index) + 2.0 * unit.dalton)
            heavy_h.setParticleMass(other.index, heavy_h.getParticleMass(other.index) - 2.0 * unit.dalton)
    (tmp_path / "hmr.xml").write_text(openmm.XmlSerializer.serialize(heavy_h))
    assert load_input_files([tmp_path / "hmr.xml", tmp_path / "state.xml", tmp_path / "top.pdb"]).system


def test_load_gromacs_via_parmed(tmp_path, alanine_amber_files):
    import parmed

    prmtop, inpcrd = alanine_amber_files
    structure = parmed.load_file(str(prmtop), str(inpcrd))
    structure.save(str(tmp_path / "ala.top"))
    structure.save(str(tmp_path / "ala.gro"))
    loaded = load_input_files([tmp_path / "ala.top", tmp_path / "ala.gro"])
    assert loaded.description["kind"] == "gromacs" and loaded.system.getNumParticles() == 22
    assert np.isfinite(_energy_kj_mol(loaded.system, loaded.positions))
    assert not loaded.system.usesPeriodicBoundaryConditions()


def test_input_errors_are_clear(tmp_path, alanine_amber_files):
    prmtop, _ = alanine_amber_files
    with pytest.raises(FileNotFoundError, match="inpcrd input .*missing.inpcrd does not exist"):
        load_inputs(prmtop=prmtop, inpcrd=tmp_path / "missing.inpcrd")
    with pytest.raises(ValueError, match="should end in .prmtop"):
        load_inputs(prmtop=tmp_path / "x.txt", inpcrd=tmp_path / "x.inpcrd")
    with pytest.raises(ValueError, match="unrecognised input extension '.xyz'"):
        load_input_files([tmp_path / "a.xyz"])
    with pytest.raises(ValueError, match="exactly one set of inputs"):
        load_inputs()
    with pytest.raises(ValueError, match="force-field XML names"):
        load_inputs(pdb=tmp_path / "a.pdb")
    # a NaN coordinate is named with its file (it had been OpenMM's "Particle position is NaN" at the first step)
    from openmm.app import PDBFile

    loaded = load_inputs(prmtop=prmtop, inpcrd=alanine_amber_files[1])
    with open(tmp_path / "ala.pdb", "w") as fh:
        PDBFile.writeFile(loaded.topology, loaded.positions * 10.0, fh)  # (Å, as PDBFile takes bare numbers)
    lines = (tmp_path / "ala.pdb").read_text().splitlines(keepends=True)
    ninth = [i for i, line in enumerate(lines) if line.startswith(("ATOM", "HETATM"))][8]
    lines[ninth] = lines[ninth][:30] + "     nan" + lines[ninth][38:]
    (tmp_path / "nan.pdb").write_text("".join(lines))
    with pytest.raises(ValueError, match=r"nan.pdb: the coordinates of 1 atom\(s\) are not finite \(first: atom 8"):
        load_inputs(pdb=tmp_path / "nan.pdb", forcefield=("amber14-all.xml", "implicit/obc2.xml"))
    # a ligand the force fields do not know: OpenMM's "No template found" plus what to do (it had been OpenMM's
    # words alone)
    host_guest = get_system("host-guest").load()
    with open(tmp_path / "complex.pdb", "w") as fh:
        PDBFile.writeFile(host_guest.topology, host_guest.positions * 10.0, fh)
    with pytest.raises(ValueError, match=r"complex.pdb with amber14-all.xml, implicit/obc2.xml: No template found "
                                         r".*needs parameters of its own: add a force-field XML for it"):
        load_inputs(pdb=tmp_path / "complex.pdb", forcefield=("amber14-all.xml", "implicit/obc2.xml"))


# --------------------------------------------------------------------------- plain MD


def test_generate_short_run(tmp_path):
    out = tmp_path / "run"
    meta = generate_md("alanine-dipeptide", out, replicas=2, time_ps=2.0, frame_interval_ps=0.1, chunk_frames=8,
                       equilibration_ps=0.2)
    assert meta["status"] == "complete" and meta["frames_per_replica"] == [20, 20]
    on_disk = read_metadata(out)
    for key in ("system", "source", "force_field", "temperature_k", "timestep_fs", "frame_interval_ps",
                "friction_per_ps", "platform", "seeds", "frames_per_replica", "wall_s", "ns_per_day", "versions"):
        assert key in on_disk, key
    assert on_disk["platform"]["name"] in ("CPU", "CUDA", "OpenCL", "Reference")
    assert on_disk["ns_per_day"] > 0 and on_disk["versions"]["openmm"]
    assert on_disk["seeds"] == [replica_seed(0, 0), replica_seed(0, 1)]
    assert (out / "topology.pdb").exists()

    # Chunks of 8, 8, 4 frames whose DCD headers make one continuous time axis.
    chunks = sorted((out / "replica_000").glob("chunk_*.dcd"))
    assert [c.name for c in chunks] == ["chunk_00000.dcd", "chunk_00001.dcd", "chunk_00002.dcd"]
    headers = [read_dcd_header(c) for c in chunks]
    assert [h["n_frames"] for h in headers] == [8, 8, 4]
    assert [h["first_step"] for h in headers] == [50, 450, 850] and {h["interval_steps"] for h in headers} == {50}
    assert headers[0]["timestep_ps"] == pytest.approx(0.002, rel=1e-5)
    traj = load_trajectory(out, 0)
    np.testing.assert_allclose(traj.time, 0.1 * np.arange(1, 21), rtol=1e-5)

    frames = load_frames(out, 1)
    assert frames.shape == (20, 22, 3) and frames.dtype == np.float32
    assert not np.array_equal(frames, load_frames(out, 0))  # replicas have their own seeds
    trajectories = list(iter_replica_trajectories(out))
    assert len(trajectories) == 2 and trajectories[1].n_frames == 20
    np.testing.assert_array_equal(trajectories[1].xyz, frames)
    assert not list(out.rglob("*.tmp"))


def _assert_same_as_reference(out: Path, reference: Path, n_frames: int) -> None:
    frames = load_frames(out, 0)
    assert frames.shape[0] == n_frames
    # No frame lost or written twice: consecutive frames always differ.
    assert np.all(np.abs(np.diff(frames, axis=0)).max(axis=(1, 2)) > 0)
    # The checkpoint carries the integrator's random state: same trajectory as without interruption.
    np.testing.assert_array_equal(frames, load_frames(reference, 0))


@pytest.mark.parametrize("damage", ["none", "orphan_chunk", "progress_behind"])
def test_stop_then_resume_matches_uninterrupted(tmp_path, small_reference, damage):
    out = tmp_path / "run"
    meta = generate_md("alanine-dipeptide", out, **SMALL, max_chunks=2)
    assert meta["status"] == "incomplete" and meta["frames_per_replica"] == [12]
    replica = out / "replica_000"
    if damage == "orphan_chunk":
        # Killed after a chunk's rename but before its checkpoint: the chunk is an orphan.
        (replica / "chunk_00002.dcd").write_bytes((replica / "chunk_00001.dcd").read_bytes())
        (replica / "chunk_00003.dcd.tmp").write_bytes(b"half a chunk")
    elif damage == "progress_behind":
        # Killed after the checkpoint was replaced but before progress.json was.
        (replica / "progress.json").write_text(json.dumps({"chunks": 1, "frames": 6, "step": 600}))
    np.testing.assert_array_equal(load_frames(out, 0), load_frames(small_reference, 0)[: 6 if damage == "progress_behind" else 12])
    meta = generate_md("alanine-dipeptide", out, **SMALL)
    assert meta["status"] == "complete" and meta["frames_per_replica"] == [30]
    assert len(meta["sessions"]) == 2
    _assert_same_as_reference(out, small_reference, 30)
    assert len(list(replica.glob("chunk_*.dcd"))) == 5 and not list(replica.glob("*.tmp"))


def test_a_checkpoint_cut_short_is_named_and_nothing_changes(tmp_path, file_contents):
    """OpenMM loads a checkpoint cut short without a word (zero velocities, lost random state): the resume
    refuses it, naming the file, before any frame is written; the record too stays as it was (it had taken the
    refused call's settings, so that an extension refused this way blocked the earlier command)."""

    out = tmp_path / "run"
    generate_md("alanine-dipeptide", out, **SMALL, max_chunks=2)
    checkpoint = out / "replica_000" / "checkpoint.chk"
    whole = checkpoint.read_bytes()
    for kept in (len(whole) // 3, int(0.8 * len(whole)), len(whole) - 1):
        checkpoint.write_bytes(whole[:kept])
        before = file_contents(out)
        with pytest.raises(DamagedRunFileError, match=rf"checkpoint\.chk is damaged: it holds {kept} bytes, where a "
                                                      rf"checkpoint of this run's System, integrator and platform "
                                                      rf"holds {len(whole)}"):
            generate_md("alanine-dipeptide", out, **SMALL)
        assert file_contents(out) == before

    # a finished run whose extension is refused for its checkpoint: once the file is restored, the earlier
    # command still finds its finished run
    finished = tmp_path / "finished"
    generate_md("alanine-dipeptide", finished, **{**SMALL, "time_ps": 1.2})
    checkpoint = finished / "replica_000" / "checkpoint.chk"
    whole = checkpoint.read_bytes()
    checkpoint.write_bytes(whole[:100])
    before = file_contents(finished)
    with pytest.raises(DamagedRunFileError, match=r"checkpoint\.chk is damaged"):
        generate_md("alanine-dipeptide", finished, **SMALL)
    assert file_contents(finished) == before
    checkpoint.write_bytes(whole)
    assert generate_md("alanine-dipeptide", finished, **{**SMALL, "time_ps": 1.2})["status"] == "complete"


def test_chunks_whose_checkpoint_is_gone_are_kept(tmp_path, small_reference, file_contents):
    """A replica with chunks but no checkpoint (deleted or moved by hand) had been taken for one killed before its
    first checkpoint and started afresh, deleting its frames: the resume refuses, naming the checkpoint, and
    changes nothing; with the checkpoint restored it goes on as before."""
    out = tmp_path / "run"
    generate_md("alanine-dipeptide", out, **SMALL, max_chunks=2)
    checkpoint = out / "replica_000" / "checkpoint.chk"
    whole = checkpoint.read_bytes()
    checkpoint.unlink()
    before = file_contents(out)
    with pytest.raises(DamagedRunFileError, match=r"checkpoint\.chk is missing, but .*replica_000 holds 2 chunk\(s\) "
                                                  r"of frames: .* starting it afresh would delete them"):
        generate_md("alanine-dipeptide", out, **SMALL)
    assert file_contents(out) == before
    checkpoint.write_bytes(whole)
    assert generate_md("alanine-dipeptide", out, **SMALL)["status"] == "complete"
    _assert_same_as_reference(out, small_reference, 30)


def test_a_damaged_replica_of_a_finished_run_is_regenerated_as_its_error_says(tmp_path):
    """The error for a finished run's damaged replica says to delete the replica and rerun: the rerun had refused
    the deleted replica for good, as its frames stayed in the record; now it is generated again, the same frames."""
    out, settings = tmp_path / "run", {**SMALL, "time_ps": 1.2, "replicas": 2}
    generate_md("alanine-dipeptide", out, **settings)
    reference = load_frames(out, 1)
    chunk = out / "replica_001" / "chunk_00000.dcd"
    chunk.write_bytes(chunk.read_bytes()[:-300])
    with pytest.raises(DamagedRunFileError, match=r"chunk_00000\.dcd is damaged: .* delete .*replica_001 and rerun "
                                                  r"the same command to regenerate this replica"):
        generate_md("alanine-dipeptide", out, **settings)
    import shutil

    shutil.rmtree(out / "replica_001")
    meta = generate_md("alanine-dipeptide", out, **settings)
    assert meta["status"] == "complete" and meta["frames_per_replica"] == [6, 6]
    np.testing.assert_array_equal(load_frames(out, 1), reference)


def test_a_chunk_cut_short_is_named_when_the_run_goes_on(tmp_path, file_contents):
    """A chunk cut short (a copy, a full disk) still has its header's frame count: resuming or extending the run
    names it before anything is written (it went on, with a silent gap in the data), and so does reading it."""
    from openmm_biomd.data.md import load_frames

    out = tmp_path / "run"
    generate_md("alanine-dipeptide", out, **SMALL, max_chunks=3)
    chunk = out / "replica_000" / "chunk_00001.dcd"
    chunk.write_bytes(chunk.read_bytes()[:-300])
    before = file_contents(out)
    message = r"chunk_00001.dcd is damaged: its header counts 6 frames of \d+ bytes, the file holds 4 whole ones"
    for time_ps in (SMALL["time_ps"], 2 * SMALL["time_ps"]):
        with pytest.raises(DamagedRunFileError, match=message):
            generate_md("alanine-dipeptide", out, **{**SMALL, "time_ps": time_ps})
        assert file_contents(out) == before
    with pytest.raises(DamagedRunFileError, match=message):
        load_frames(out, 0)


def test_a_run_pinned_to_a_core_makes_the_same_frames(tmp_path, small_reference):
    """``cpu=`` (``--cpu``): Contexts made and driven on one core, one thread; the frames are those of the
    unpinned single-thread run, the session records the core, and the caller's CPU mask is as it was."""
    from openmm_biomd.affinity import cpu_for

    mask = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    out = tmp_path / "pinned"
    meta = generate_md("alanine-dipeptide", out, **SMALL, cpu=cpu_for(0))
    assert (os.sched_getaffinity(0) if mask is not None else None) == mask
    assert meta["sessions"][-1]["cpu"] == cpu_for(0) and meta["platform"]["properties"]["Threads"] == "1"
    _assert_same_as_reference(out, small_reference, 30)


def test_extending_a_finished_run_continues_it(tmp_path, small_reference):
    out = tmp_path / "run"
    generate_md("alanine-dipeptide", out, **{**SMALL, "time_ps": 3.0})
    meta = generate_md("alanine-dipeptide", out, **SMALL)
    assert meta["frames_per_replica"] == [30]
    _assert_same_as_reference(out, small_reference, 30)


def test_a_finished_run_made_on_another_platform_is_used_as_is(tmp_path, small_reference):
    """GPU-made data on a CPU-only machine: a finished run needs no platform; extending it still does."""
    out = tmp_path / "run"
    generate_md("alanine-dipeptide", out, **SMALL)
    meta_path = out / "metadata.json"
    meta = json.loads(meta_path.read_text())
    # made on a GPU platform this machine lacks (a name no OpenMM has, so that the test holds on a GPU machine too)
    meta["platform"] = {"name": "ElsewhereGPU", "properties": {"Precision": "mixed"}}
    meta_path.write_text(json.dumps(meta))
    before = {p.name: p.stat().st_mtime_ns for p in (out / "replica_000").iterdir()}

    again = generate_md("alanine-dipeptide", out, **SMALL)

    assert again["platform"]["name"] == "ElsewhereGPU" and again["frames_per_replica"] == [30]
    assert {p.name: p.stat().st_mtime_ns for p in (out / "replica_000").iterdir()} == before
    with pytest.raises(ValueError, match="platform 'ElsewhereGPU' is not available here"):
        generate_md("alanine-dipeptide", out, **{**SMALL, "time_ps": 8.0})


def test_resume_with_different_settings_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    args = dict(time_ps=0.4, frame_interval_ps=0.2, equilibration_ps=0.0)
    generate_md("alanine-dipeptide", out, **args)
    with pytest.raises(RunMismatchError, match=r"different settings.*temperature_k: 300.0 on disk, 310.0 now"):
        generate_md("alanine-dipeptide", out, **args, temperature_k=310.0)
    with pytest.raises(RunMismatchError, match="system: 'alanine-dipeptide' on disk, 'host-guest' now"):
        generate_md("host-guest", out, **args)
    with pytest.raises(RunMismatchError, match="extended, not shortened"):
        generate_md("alanine-dipeptide", out, **{**args, "time_ps": 0.2})
    rc = main(["generate-data", "--system", "alanine-dipeptide", "--out", str(out), "--time", "0.4ps",
               "--frame-interval", "0.2ps", "--equilibration", "0ps", "--timestep", "1fs", "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "refusing to resume" in err and "timestep_fs: 2.0 on disk, 1.0 now" in err


def _cli(out: Path, settings: dict) -> list[str]:
    return [
        sys.executable, "-m", "openmm_biomd.cli", "generate-data", "--system", "alanine-dipeptide",
        "--out", str(out), "--time", f"{settings['time_ps']}ps", "--frame-interval", f"{settings['frame_interval_ps']}ps",
        "--chunk-frames", str(settings["chunk_frames"]), "--equilibration", f"{settings['equilibration_ps']}ps",
        "--seed", str(settings["seed"]), "--quiet",
    ]


def test_killed_run_resumes_without_losing_or_duplicating_frames(tmp_path):
    reference = tmp_path / "reference"
    generate_md("alanine-dipeptide", reference, **LONG)
    out = tmp_path / "killed"
    proc = subprocess.Popen(_cli(out, LONG), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # Once chunk 1 has its final name, chunk 0's checkpoint is on disk; the kill then lands
    # anywhere in chunk 1's checkpointing or chunk 2's frames (chunk 1 may become an orphan).
    second = out / "replica_000" / "chunk_00001.dcd"
    deadline = time.monotonic() + 120
    while not second.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    assert read_metadata(out)["status"] != "complete"
    done = load_frames(out, 0)
    assert len(done) in (20, 40)
    np.testing.assert_array_equal(done, load_frames(reference, 0)[: len(done)])

    result = subprocess.run(_cli(out, LONG), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["frames_per_replica"] == [200]
    _assert_same_as_reference(out, reference, 200)
    headers = [read_dcd_header(c) for c in sorted((out / "replica_000").glob("chunk_*.dcd"))]
    assert sum(h["n_frames"] for h in headers) == 200 and headers[-1]["first_step"] == 100 * (200 - 20 + 1)


def test_a_folder_of_another_command_or_of_the_user_is_refused(tmp_path, file_contents):
    """The user's own topology.pdb, or an umbrella folder's, had been kept as the run's (frames of 22 atoms beside a
    topology of 156); a plain-MD run's folder is not a dissociation campaign's either. Each is refused before
    anything is written."""
    from biomd_core.io.output_folder import OutputFolderError

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "topology.pdb").write_text("MY OWN PDB")
    umbrella = tmp_path / "umbrella"
    umbrella.mkdir()
    (umbrella / "topology.pdb").write_text("REMARK the umbrella's topology")
    (umbrella / ".biomd-output.json").write_text(json.dumps({"commands": ["umbrella"]}))
    for out, held in ((mine, "holds files not written by it"), (umbrella, "holds the output of `biomd umbrella`")):
        before = file_contents(out)
        with pytest.raises(OutputFolderError, match=f"`biomd generate-data` would overwrite topology.pdb in .*{held}"):
            generate_md("alanine-dipeptide", out, **SMALL)
        assert file_contents(out) == before
    plain = tmp_path / "plain"
    generate_md("alanine-dipeptide", plain, **{**SMALL, "time_ps": 0.4})
    before = file_contents(plain)
    with pytest.raises(OutputFolderError, match="`biomd generate-data --dissociation` would overwrite topology.pdb in "
                                                ".* which holds the output of `biomd generate-data`"):
        generate_dissociation("host-guest", plain, n_seeds=1, max_time_ps=1.0, frame_interval_ps=0.1)
    assert file_contents(plain) == before


def test_a_damaged_run_file_is_named_also_when_the_run_is_finished(tmp_path, file_contents):
    """The same call again on a finished run checks its chunks (a chunk cut short, garbage or gone had passed
    with exit 0); a killed run's damaged topology.pdb, made from the System, is written again."""
    out = tmp_path / "run"
    generate_md("alanine-dipeptide", out, **SMALL)
    replica = out / "replica_000"
    chunk = replica / "chunk_00001.dcd"
    whole = chunk.read_bytes()
    for damage, message in ((whole[:-300], r"chunk_00001.dcd is damaged: its header counts 6 frames"),
                            (b"garbage" * 50, r"chunk_00001.dcd is damaged: it is not a DCD file"),
                            (None, r"replica_000 is damaged: its chunks hold 24 frames, metadata.json records 30")):
        chunk.unlink() if damage is None else chunk.write_bytes(damage)
        before = file_contents(out)
        with pytest.raises(DamagedRunFileError, match=message + r".*delete .*replica_000 and rerun"):
            generate_md("alanine-dipeptide", out, **SMALL)
        assert file_contents(out) == before
    chunk.write_bytes(whole)
    assert generate_md("alanine-dipeptide", out, **SMALL)["status"] == "complete"

    killed = tmp_path / "killed"
    generate_md("alanine-dipeptide", killed, **SMALL, max_chunks=2)
    (killed / "topology.pdb").write_text("garbage")
    assert generate_md("alanine-dipeptide", killed, **SMALL)["status"] == "complete"
    assert load_trajectory(killed, 0).n_atoms == 22


def test_cli_resume_from_metadata(tmp_path):
    out = tmp_path / "run"
    assert main(["generate-data", "--system", "alanine-dipeptide", "--out", str(out), "--time", "0.4ps",
                 "--frame-interval", "0.2ps", "--equilibration", "0ps", "--quiet"]) == 0
    assert main(["generate-data", "--resume", str(out), "--time", "0.8ps", "--replicas", "2", "--quiet"]) == 0
    assert read_metadata(out)["frames_per_replica"] == [4, 4]


# --------------------------------------------------------------------------- metadynamics


def test_dissociation_by_metadynamics_on_host_guest(tmp_path, file_contents):
    from openmm_biomd.affinity import cpu_for

    out = tmp_path / "diss"
    kwargs = dict(
        n_seeds=2, max_time_ps=2.0, frame_interval_ps=0.1, height_kj_mol=50.0, bias_factor=20.0, sigma_nm=0.05,
        deposit_interval_ps=0.05, exit_distance_nm=0.3, equilibration_ps=0.1,
    )
    summary = generate_dissociation("host-guest", out, **kwargs, cpu=cpu_for(0))
    assert summary["status"] == "complete" and len(summary["results"]) == 2
    for key in ("settings", "ligand_atoms", "pocket_atoms", "seeds", "n_dissociated", "wall_s", "platform", "versions"):
        assert key in summary, key
    # made and driven on one core, one thread
    assert summary["cpu"] == cpu_for(0) and summary["platform"]["properties"]["Threads"] == "1"
    assert len(summary["ligand_atoms"]) == 30  # B2
    # The bias sits in the highest force group no force of the system uses.
    assert {r["bias_force_group"] for r in summary["results"]} == {31}
    for index, result in enumerate(summary["results"]):
        seed_dir = out / f"seed_{index:03d}"
        for key in ("dissociated", "time_to_dissociation_ps", "bound_cv_nm", "wall_s", "n_hills"):
            assert key in result, key
        assert result["n_hills"] > 0
        table = np.genfromtxt(seed_dir / "cv.csv", delimiter=",", names=True)
        assert len(table) == result["n_frames"] == read_dcd_header(seed_dir / "path.dcd")["n_frames"]
        assert table["time_ps"][0] == 0 and np.allclose(np.diff(table["time_ps"]), 0.1)
        assert np.all(np.isfinite(table["cv_nm"])) and table["bias_kj_mol"].max() > 0
        if result["dissociated"]:
            assert table["cv_nm"][-1] > result["bound_cv_nm"] + 0.3
            assert result["time_to_dissociation_ps"] == pytest.approx(table["time_ps"][-1])
        else:
            assert result["time_to_dissociation_ps"] is None and len(table) == 21
    assert summary["n_dissociated"] == sum(r["dissociated"] for r in summary["results"])
    # Same call again: finished seeds are kept, not rerun, and the record is left as it was (its wall time had
    # been overwritten by the call that ran nothing); different settings, or fewer seeds, are refused.
    recorded = (out / "summary.json").read_bytes()
    again = generate_dissociation("host-guest", out, **kwargs)
    assert again == summary and (out / "summary.json").read_bytes() == recorded
    with pytest.raises(RunMismatchError, match="height_kj_mol"):
        generate_dissociation("host-guest", out, **{**kwargs, "height_kj_mol": 5.0})
    with pytest.raises(RunMismatchError, match="n_seeds: 2 recorded, 1 now .* give at least 2"):
        generate_dissociation("host-guest", out, **{**kwargs, "n_seeds": 1})
    assert (out / "summary.json").read_bytes() == recorded
    # a finished seed's path cut short is named when the campaign grows (it was kept and went on into the data)
    path = out / "seed_001" / "path.dcd"
    whole = path.read_bytes()
    path.write_bytes(whole[:-500])
    with pytest.raises(DamagedRunFileError, match=r"seed_001/path.dcd is damaged: its header counts \d+ frames .*"
                                                  r"delete .*seed_001 and rerun"):
        generate_dissociation("host-guest", out, **{**kwargs, "n_seeds": 3})
    assert (out / "summary.json").read_bytes() == recorded and not (out / "seed_002").exists()
    # so is a CV table cut short or made non-numeric, also by the same call again (a rerun is how a user asks
    # whether a campaign is whole; one cut to 9 rows had gone on into the campaign's record)
    path.write_bytes(whole)
    table = out / "seed_000" / "cv.csv"
    rows = table.read_text().splitlines(keepends=True)
    n_frames = summary["results"][0]["n_frames"]
    kept = n_frames // 2
    columns = r"\['time_ps', 'step', 'cv_nm', 'bias_kj_mol'\]"
    for damaged, message in (
            ("".join(rows[:1 + kept]), rf"it holds {kept} rows, not {n_frames} \(one per frame of path.dcd\)"),
            ("".join(rows[:-1]) + "1,2,nan,4\n", rf"row {n_frames} holds a value that is not a finite number"),
            ("".join(rows[:-1]) + "1,2,3\n", "its rows cannot be read as 4 numbers each"),
            ("time,cv\n" + "".join(rows[1:3]), rf"its header is \['time', 'cv'\], not {columns}"),
            ("", rf"its header is \[''\], not {columns}")):
        table.write_text(damaged)
        for call in (kwargs, {**kwargs, "n_seeds": 3}):
            with pytest.raises(DamagedRunFileError, match=rf"seed_000/cv.csv is damaged: {message}.*delete "
                                                          r".*seed_000 and rerun"):
                generate_dissociation("host-guest", out, **call)
    assert (out / "summary.json").read_bytes() == recorded and not (out / "seed_002").exists()
    # its record deleted: a rerun at another height had kept these seeds under its own settings
    from biomd_core.io.output_folder import OutputFolderError

    table.write_text("".join(rows))
    (out / "summary.json").unlink()
    kept_files = file_contents(out)
    with pytest.raises(OutputFolderError, match=r"summary\.json is missing, but .* \(seed_000/result\.json, "
                                                 r"seed_001/result\.json\)"):
        generate_dissociation("host-guest", out, **{**kwargs, "height_kj_mol": 5.0})
    assert file_contents(out) == kept_files
    (out / "summary.json").write_bytes(recorded)
    # a seed's record emptied to {}: named before the campaign's record changes (it had been a bare KeyError,
    # "dissociated", once the summary had dropped that seed's record)
    result = out / "seed_001" / "result.json"
    kept_result = result.read_bytes()
    result.write_text("{}")
    for call in (kwargs, {**kwargs, "n_seeds": 3}):
        with pytest.raises(DamagedRunFileError, match=r"seed_001/result\.json is damaged: it lacks 'dissociated', "):
            generate_dissociation("host-guest", out, **call)
    assert (out / "summary.json").read_bytes() == recorded and not (out / "seed_002").exists()
    # as a reference for evaluation: every seed it planned, or it is named (a deleted one had been left out)
    from openmm_biomd.enhanced.path_metrics import campaign_paths

    result.unlink()
    with pytest.raises(DamagedRunFileError, match=r"seed_001/result\.json is damaged: it is missing, but the "
                                                  r"campaign's summary.json plans 2 seeds"):
        campaign_paths(out)
    result.write_bytes(kept_result)
    assert len(campaign_paths(out)) == summary["n_dissociated"]
    # its topology.pdb deleted: the finished campaign's rerun writes it again (it had passed the check)
    (out / "topology.pdb").unlink()
    assert generate_dissociation("host-guest", out, **kwargs) == summary
    assert (out / "topology.pdb").exists() and len(campaign_paths(out)) == summary["n_dissociated"]


def test_dissociation_keeps_unbiased_md_after_the_exit(tmp_path):
    from openmm_biomd.enhanced.path_metrics import campaign_paths

    out = tmp_path / "diss"
    # A strong bias and a low exit line: the guest leaves within the first ps.
    kwargs = dict(n_seeds=1, max_time_ps=5.0, frame_interval_ps=0.1, height_kj_mol=100.0, bias_factor=20.0,
                  sigma_nm=0.05, deposit_interval_ps=0.02, exit_distance_nm=0.15, equilibration_ps=0.1,
                  after_exit_ps=0.5, seed=3)
    summary = generate_dissociation("host-guest", out, **kwargs)
    result = summary["results"][0]
    assert result["dissociated"], "the test bias is meant to push the guest out within 5 ps"
    table = np.genfromtxt(out / "seed_000" / "cv.csv", delimiter=",", names=True)
    exit_frame = result["exit_frame"]
    # The exit is the first frame past the line; five more frames (0.5 ps) follow it, in the DCD too.
    assert table["cv_nm"][exit_frame] > result["exit_cv_nm"] >= table["cv_nm"][:exit_frame].max()
    assert result["n_frames"] == len(table) == exit_frame + 1 + 5 == read_dcd_header(out / "seed_000/path.dcd")["n_frames"]
    assert result["time_to_dissociation_ps"] == pytest.approx(table["time_ps"][exit_frame])
    assert result["simulated_ps"] == pytest.approx(table["time_ps"][exit_frame] + 0.5)
    assert np.allclose(np.diff(table["time_ps"]), 0.1)
    # Hills are counted up to the exit only (none is added after it).
    assert result["n_hills"] == round(table["time_ps"][exit_frame] / 0.02)
    # Reference paths stop at the exit.
    (path,) = campaign_paths(out)
    assert len(path) == exit_frame + 1
    # A campaign made before this setting existed counts as after_exit_ps = 0 when resumed.
    saved = json.loads((out / "summary.json").read_text())
    del saved["settings"]["after_exit_ps"]
    (out / "summary.json").write_text(json.dumps(saved))
    with pytest.raises(RunMismatchError, match="after_exit_ps: 0.0 on disk, 0.5 now"):
        generate_dissociation("host-guest", out, **kwargs)
    with pytest.raises(ValueError, match="whole number"):
        generate_dissociation("host-guest", tmp_path / "bad", **{**kwargs, "after_exit_ps": 0.25})
