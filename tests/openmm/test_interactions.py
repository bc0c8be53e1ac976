"""Per-residue ligand–receptor interaction energies (``openmm_biomd.enhanced.interactions``).

Real OpenMM throughout: the numpy decomposition summed over residues must equal
OpenMM's own ``E(complex) − E(receptor) − E(ligand)`` from the NonbondedForce, on
the bundled CB7–B2 and T4L–p-xylene systems and on hand-built systems that
exercise exceptions, exclusions, parameter offsets, cutoffs, switching, periodic
images and PME.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import openmm
import pytest
from openmm import app, unit

from openmm_biomd.data.metadynamics import select_atoms
from openmm_biomd.data.systems import get_system
from openmm_biomd.enhanced.interactions import (
    ONE_4PI_EPS0,
    InteractionEnergies,
    add_arguments,
    gb_interaction_energy,
    main,
    openmm_interaction_energy,
    plot_interaction_heatmap,
    residue_interaction_energies,
    write_interactions,
)
from openmm_biomd.trajectory_io import write_dcd


def _close(decomposed: np.ndarray, reference: np.ndarray) -> None:
    """Equal to round-off: 1e-3 kJ/mol, or 1e-7 relative for clashing frames with huge energies."""
    np.testing.assert_allclose(decomposed, reference, rtol=1e-7, atol=1e-3)


def _coulomb_only(system: openmm.System) -> openmm.System:
    """A copy whose NonbondedForce has every ε zeroed (particles and exceptions): Coulomb alone."""
    out = openmm.XmlSerializer.clone(system)
    force = next(f for f in out.getForces() if isinstance(f, openmm.NonbondedForce))
    for i in range(force.getNumParticles()):
        q, s, _ = force.getParticleParameters(i)
        force.setParticleParameters(i, q, s, 0.0)
    for k in range(force.getNumExceptions()):
        i, j, qq, s, _ = force.getExceptionParameters(k)
        force.setExceptionParameters(k, i, j, qq, s, 0.0)
    return out


def _translated(x: np.ndarray, atoms: np.ndarray, direction: np.ndarray, shifts_nm) -> np.ndarray:
    """``[len(shifts), N, 3]`` nm: ``x`` with ``atoms`` moved by each shift along ``direction``."""
    unit_dir = direction / np.linalg.norm(direction)
    frames = np.repeat(x[None], len(shifts_nm), axis=0)
    for t, s in enumerate(shifts_nm):
        frames[t, atoms] += s * unit_dir
    return frames


# --------------------------------------------------------------------------- bundled systems


@pytest.fixture(scope="module")
def host_guest():
    """CB7–B2, briefly minimised so the guest sits in the cavity without the input's clash.

    Returns ``(loaded, bound [N, 3] nm, ligand indices, portal axis [3])``.
    """
    loaded = get_system("host-guest").load()
    reference = openmm.Platform.getPlatformByName("Reference")
    context = openmm.Context(loaded.system, openmm.VerletIntegrator(0.001), reference)
    context.setPositions(loaded.positions)
    openmm.LocalEnergyMinimizer.minimize(context, 1.0, 200)
    bound = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    ligand = select_atoms(loaded.topology, "resname B2")
    host = select_atoms(loaded.topology, "resname CUC")
    # CB7 is a flat ring: its thinnest principal axis runs through both portals.
    centred = bound[host] - bound[host].mean(0)
    axis = np.linalg.svd(centred, full_matrices=False)[2][-1]
    return loaded, np.ascontiguousarray(bound), ligand, axis


@pytest.fixture(scope="module")
def lysozyme():
    loaded = get_system("t4l-pxylene").load()
    return loaded, select_atoms(loaded.topology, "resname TMP")


def test_host_guest_sum_and_split_match_openmm(host_guest):
    loaded, bound, ligand, axis = host_guest
    frames = np.concatenate([loaded.positions[None], _translated(bound, ligand, axis, [0.0, 0.2, 1.0])])  # [4, N, 3]
    by_residue = residue_interaction_energies(loaded.system, loaded.topology, frames, "resname B2")
    by_atom = residue_interaction_energies(loaded.system, loaded.topology, frames, ligand, by="atom")
    reference = openmm_interaction_energy(loaded.system, frames, ligand)  # [4]
    assert by_residue.residue_labels == ["CUC1"] and by_atom.n_residues == 126
    _close(by_residue.summed_kj_mol(), reference)
    _close(by_atom.summed_kj_mol(), reference)
    # The Coulomb/LJ split is right too: OpenMM with every ε zeroed gives the Coulomb part.
    _close(by_residue.coulomb_kj_mol[:, 0], openmm_interaction_energy(_coulomb_only(loaded.system), frames, ligand))
    np.testing.assert_allclose(by_atom.coulomb_kj_mol.sum(1), by_residue.coulomb_kj_mol[:, 0], atol=1e-9)
    # In the minimised cavity the guest is held (strongly, by LJ and the carbonyl portals' charges).
    assert by_residue.total_kj_mol[1, 0] < -100.0
    assert by_residue.notes and "GBSAOBCForce" in by_residue.notes[0]


def test_host_guest_exit_path_lets_go_and_files(host_guest, tmp_path):
    loaded, bound, ligand, axis = host_guest
    shifts = np.linspace(0.0, 3.0, 13)
    frames = _translated(bound, ligand, axis, shifts)  # [13, N, 3] guest pulled out through a portal
    times = 5.0 * np.arange(len(shifts))
    energies = residue_interaction_energies(
        loaded.system, loaded.topology, frames, ligand, by="atom", times_ps=times, include_gb=True
    )
    total = energies.summed_kj_mol()
    assert total[0] < -100.0 and abs(total[-1]) < 0.05 * abs(total[0])
    # GB (not per residue): one finite value per frame, shrinking as the guest leaves.
    assert energies.gb_kj_mol.shape == (13,) and np.isfinite(energies.gb_kj_mol).all()
    assert abs(energies.gb_kj_mol[-1]) < abs(energies.gb_kj_mol[0])
    # The atoms that hold the guest hardest all let go somewhere along the path.
    releases = energies.release_frames()
    strongest = energies.residue_order(top=10)
    assert all(releases[c] is not None and 0 < releases[c] < 13 for c in strongest)
    assert all(energies.residue_labels[c].startswith("CUC1:") for c in strongest)

    summary = write_interactions(tmp_path / "out", energies, top=15)
    out = tmp_path / "out"
    rows = (out / "interactions.csv").read_text().splitlines()
    assert rows[0] == "frame,time_ps,residue,coulomb_kj_mol,lj_kj_mol,total_kj_mol"
    assert len(rows) == 1 + 13 * 126
    first = rows[1].split(",")
    assert first[:3] == ["0", "0", energies.residue_labels[0]]
    assert float(first[5]) == pytest.approx(energies.total_kj_mol[0, 0], abs=1e-5)
    saved = json.loads((out / "interactions.json").read_text())
    assert saved["n_frames"] == 13 and len(saved["residues"]) == 126
    top_row = saved["residues"][0]
    assert top_row["min_kj_mol"] == pytest.approx(energies.total_kj_mol.min())
    assert top_row["release_time_ps"] == pytest.approx(times[releases[strongest[0]]])
    assert saved["per_frame"]["gb_total_kj_mol"] == pytest.approx(energies.gb_kj_mol.tolist())
    assert "release_frame" in saved["release_rule"]
    png = (out / "interactions.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert summary["files"]["png"] == str(out / "interactions.png")


def test_t4l_sum_matches_openmm_and_vanishes_far_away(lysozyme):
    loaded, ligand = lysozyme
    x = loaded.positions
    protein = np.setdiff1d(np.arange(len(x)), ligand)
    exit_dir = x[ligand].mean(0) - x[protein].mean(0)
    frames = _translated(x, ligand, exit_dir, [0.0, 0.2, 1.0])  # [3, N, 3]
    energies = residue_interaction_energies(loaded.system, loaded.topology, frames, "resname TMP")
    assert energies.n_residues == 162 and energies.residue_labels[98] == "ALA99"  # L99A
    _close(energies.summed_kj_mol(), openmm_interaction_energy(loaded.system, frames, ligand))

    # The strongest binders in the crystal pose line the cavity.
    near = residue_interaction_energies(loaded.system, loaded.topology, frames[:1], ligand, near_nm=0.6)
    top5 = [energies.residue_labels[c] for c in energies.residue_order(top=5)]
    assert set(top5) <= set(near.residue_labels)
    cols = [energies.residue_labels.index(lab) for lab in near.residue_labels]
    np.testing.assert_allclose(near.total_kj_mol[0], energies.total_kj_mol[0, cols])

    far = residue_interaction_energies(
        loaded.system, loaded.topology, _translated(x, ligand, exit_dir, [10.0, 30.0]), ligand
    )
    assert np.abs(far.total_kj_mol).max() < 1e-2
    assert abs(far.summed_kj_mol()[1]) < abs(far.summed_kj_mol()[0]) < 0.1
    with pytest.raises(ValueError, match="beyond 10000 nm"):  # a blown-up frame gives no energies (were NaN)
        residue_interaction_energies(loaded.system, loaded.topology, np.full_like(frames[:1], 1e20), ligand)


# --------------------------------------------------------------------------- hand-built systems


def _toy(method: int, exception: bool = True, offsets: bool = False):
    """Ligand LIG (2 atoms) + receptor residues RA (3), RB (2) + one water; random but clash-free.

    The ligand–receptor pair (LIG 0, RA 2) carries an exception (its own chargeProd,
    σ, ε) and (LIG 1, RB 5) an exclusion, both 1.5 nm apart — beyond the 1.2 nm
    cutoff, which exceptions ignore.  Returns ``(system, topology, frames [2, 10, 3],
    boxes [2, 3, 3])``.
    """
    rng = np.random.default_rng(7)
    top = app.Topology()
    chain = top.addChain()
    spec = [("LIG", 2), ("RA", 3), ("RB", 2), ("HOH", 3)]
    for name, n in spec:
        res = top.addResidue(name, chain)
        for k in range(n):
            top.addAtom(f"{name[0]}{k}", app.element.carbon, res)
    n_atoms = top.getNumAtoms()
    system = openmm.System()
    force = openmm.NonbondedForce()
    for i in range(n_atoms):
        system.addParticle(12.0)
        force.addParticle(rng.uniform(-0.8, 0.8), rng.uniform(0.25, 0.35), rng.uniform(0.1, 1.0))
    force.addException(0, 1, 0.1, 0.3, 0.2)  # within the ligand: cancels in the difference
    if exception:
        force.addException(0, 2, 0.3, 0.25, 0.5)
        force.addException(1, 5, 0.0, 0.3, 0.0)
    force.setNonbondedMethod(method)
    force.setCutoffDistance(1.2)
    force.setUseSwitchingFunction(True)
    force.setSwitchingDistance(0.9)
    force.setUseDispersionCorrection(True)
    force.setReactionFieldDielectric(60.0)
    if offsets:
        force.addGlobalParameter("lam", 0.5)
        force.addParticleParameterOffset("lam", 0, 0.4, 0.0, 0.3)
        force.addParticleParameterOffset("lam", 5, -0.2, 0.01, 0.0)
        if exception:
            force.addExceptionParameterOffset("lam", 1, 0.2, 0.0, 0.1)
    system.addForce(force)
    boxes = np.array([np.diag([3.2, 3.3, 3.4]), [[3.3, 0, 0], [0.4, 3.2, 0], [-0.5, 0.6, 3.5]]])
    system.setDefaultPeriodicBoxVectors(*[openmm.Vec3(*v) for v in boxes[0]])
    frames = []
    for box in boxes:
        while True:
            # Spread over the whole box so some pairs meet only through a periodic image.
            x = rng.uniform(0.0, 1.0, (n_atoms, 3)) @ box
            x[2] = x[0] + np.array([1.5, 0.0, 0.0])
            x[5] = x[1] + np.array([0.0, 1.5, 0.0])
            # Clash-free also through periodic images (the nearest of the 27 neighbouring cells).
            shifts = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)]) @ box
            d = np.linalg.norm(x[:, None, None] - x[None, :, None] + shifts[None, None], axis=-1).min(-1)
            if (d + 10 * np.eye(n_atoms)).min() > 0.3:
                break
        frames.append(x)
    return system, top, np.asarray(frames), boxes


def _by_hand_nocutoff(system, frames, ligand, receptor) -> np.ndarray:
    """``[T]`` kJ/mol: explicit pair loop, exceptions looked up one by one (no cutoff)."""
    force = system.getForce(0)
    exc = {}
    for k in range(force.getNumExceptions()):
        i, j, qq, s, e = force.getExceptionParameters(k)
        exc[frozenset((i, j))] = (qq._value, s._value, e._value)
    out = np.zeros(len(frames))
    for t, x in enumerate(frames):
        for i in ligand:
            qi, si, ei = (v._value for v in force.getParticleParameters(int(i)))
            for j in receptor:
                qj, sj, ej = (v._value for v in force.getParticleParameters(int(j)))
                qq, s, e = exc.get(frozenset((int(i), int(j))), (qi * qj, 0.5 * (si + sj), np.sqrt(ei * ej)))
                r = np.linalg.norm(x[i] - x[j])
                out[t] += ONE_4PI_EPS0 * qq / r + 4 * e * ((s / r) ** 12 - (s / r) ** 6)
    return out


NB = openmm.NonbondedForce


@pytest.mark.parametrize(
    "method", [NB.NoCutoff, NB.CutoffNonPeriodic, NB.CutoffPeriodic, NB.PME, NB.LJPME],
    ids=["nocutoff", "cutoff", "periodic", "pme", "ljpme"],
)
@pytest.mark.parametrize("offsets", [False, True], ids=["plain", "offsets"])
def test_hand_built_matches_openmm(method, offsets):
    system, top, frames, boxes = _toy(method, offsets=offsets)
    ligand, receptor = [0, 1], [2, 3, 4, 5, 6]  # atoms 7-9 are the water
    energies = residue_interaction_energies(system, top, frames, [0, 1], box_vectors_nm=boxes)
    assert energies.residue_labels == ["RA2", "RB3"]  # water is solvent by default
    reference = openmm_interaction_energy(system, frames, ligand, receptor, box_vectors_nm=boxes)
    _close(energies.summed_kj_mol(), reference)
    assert np.abs(reference).max() > 1.0  # a real test, not 0 == 0
    # Asking for the water too: all non-ligand atoms, against the default partner set.
    with_water = residue_interaction_energies(system, top, frames, "resname LIG", residues=[1, 2, 3],
                                              box_vectors_nm=boxes)
    _close(with_water.summed_kj_mol(), openmm_interaction_energy(system, frames, ligand, box_vectors_nm=boxes))
    if method in (NB.PME, NB.LJPME):
        assert "reaction-field" in energies.notes[0]
        with pytest.raises(ValueError, match="lattice sum"):
            residue_interaction_energies(system, top, frames, ligand, long_range="refuse", box_vectors_nm=boxes)
    if method != NB.NoCutoff:
        assert any("dispersion correction" in n for n in energies.notes)
    if method == NB.NoCutoff and not offsets:
        _close(energies.summed_kj_mol(), _by_hand_nocutoff(system, frames, ligand, receptor))


def test_exceptions_override_the_pair():
    """The exception (LIG 0, RA 2) and exclusion (LIG 1, RB 5) change exactly those pairs' energies."""
    with_exc, top, frames, _ = _toy(NB.CutoffNonPeriodic)
    without, *_ = _toy(NB.CutoffNonPeriodic, exception=False)
    a = residue_interaction_energies(with_exc, top, frames, [0, 1])
    b = residue_interaction_energies(without, top, frames, [0, 1])
    x = frames
    r02 = np.linalg.norm(x[:, 2] - x[:, 0], axis=-1)  # 1.5 nm: beyond the cutoff
    sr6 = (0.25 / r02) ** 6
    exception_02 = ONE_4PI_EPS0 * 0.3 / r02 + 4 * 0.5 * (sr6 * sr6 - sr6)
    # Without the exception, pairs (0, 2) and (1, 5) at 1.5 nm lie beyond the cutoff: they add nothing.
    np.testing.assert_allclose(a.total_kj_mol[:, 0] - b.total_kj_mol[:, 0], exception_02, atol=1e-9)
    np.testing.assert_allclose(a.total_kj_mol[:, 1], b.total_kj_mol[:, 1], atol=1e-9)
    _close(a.summed_kj_mol(), openmm_interaction_energy(with_exc, frames, [0, 1], [2, 3, 4, 5, 6]))


def test_gb_cross_term_screens_coulomb_for_distant_ions():
    """Two ions 3 nm apart in OBC: the GB cross term cancels Coulomb down to Coulomb/ε_solvent."""
    top = app.Topology()
    chain = top.addChain()
    for name in ("LIG", "REC"):
        top.addAtom("X", app.element.sodium, top.addResidue(name, chain))
    system = openmm.System()
    nb, gb = openmm.NonbondedForce(), openmm.GBSAOBCForce()
    gb.setSurfaceAreaEnergy(0.0)
    for q in (1.0, -1.0):
        system.addParticle(23.0)
        nb.addParticle(q, 0.3, 0.1)
        gb.addParticle(q, 0.15, 0.8)
    system.addForce(nb)
    system.addForce(gb)
    frames = np.array([[[0.0, 0.0, 0.0], [3.0, 0.0, 0.0]]])
    energies = residue_interaction_energies(system, top, frames, [0], include_gb=True, gb_platform="Reference")
    coulomb = energies.coulomb_kj_mol[0, 0]
    assert coulomb == pytest.approx(-ONE_4PI_EPS0 / 3.0)
    assert energies.gb_kj_mol[0] == pytest.approx(-(1 - 1 / 78.3) * coulomb, rel=2e-3)
    # Without a GB force there is nothing to report.
    assert gb_interaction_energy(openmm.XmlSerializer.clone(system), frames, [0]) is not None
    system.removeForce(1)
    assert gb_interaction_energy(system, frames, [0]) is None


# --------------------------------------------------------------------------- release rule, plot


def test_release_rule_and_plot(tmp_path):
    series = np.array(
        [
            [-10.0, -9.0, -5.0, -0.5, -0.2, 0.05],  # lets go at frame 3
            [-10.0, -0.5, -5.0, -0.5, 0.0, 0.0],  # rebinds at frame 2: lets go at frame 3
            [-1.0, -1.0, -1.0, -1.0, -1.0, -1.0],  # never lets go
            [0.5, 1.0, 0.2, 0.0, 0.0, 0.0],  # never held
        ]
    ).T  # [T=6, R=4]
    energies = InteractionEnergies(
        coulomb_kj_mol=series, lj_kj_mol=np.zeros_like(series), residue_indices=np.arange(4),
        residue_labels=["A1", "B2", "C3", "D4"], ligand_atoms=np.array([0]), times_ps=2.0 * np.arange(6),
    )
    assert energies.release_frames() == [3, 3, None, None]
    assert list(energies.residue_order(top=2)) == [0, 1]
    rows = {r["residue"]: r for r in energies.summary()["residues"]}
    assert rows["A1"]["release_time_ps"] == 6.0 and rows["A1"]["holds"]
    assert rows["C3"]["release_frame"] is None and not rows["C3"]["holds"]  # -1 kJ/mol: weaker than kT
    assert rows["D4"]["release_frame"] is None
    with pytest.raises(ValueError, match="release_fraction"):
        energies.release_frames(1.5)
    path = plot_interaction_heatmap(energies, tmp_path / "map.png", top=3, rank="mean")
    assert path.read_bytes()[:4] == b"\x89PNG"


# --------------------------------------------------------------------------- command line


def test_cli_on_a_dcd(host_guest, tmp_path, capsys):
    loaded, bound, ligand, axis = host_guest
    frames = _translated(bound, ligand, axis, np.linspace(0.0, 2.5, 6))  # [6, N, 3]
    dcd = tmp_path / "path.dcd"
    write_dcd(dcd, loaded.topology, frames, frame_interval_ps=2.0)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = tmp_path / "interactions"
    args = parser.parse_args(
        ["--system", "host-guest", "--trajectory", str(dcd), "--by", "atom", "--top", "12", "--out", str(out)]
    )
    assert main(args) == 0
    digest = json.loads(capsys.readouterr().out)
    assert digest["n_frames"] == 6 and digest["n_residues"] == 126
    assert digest["openmm_check"] < 1e-3
    saved = json.loads((out / "interactions.json").read_text())
    assert saved["ligand_selection"] == "resname B2"  # the bundled system's ligand
    assert saved["per_frame"]["time_ps"] == pytest.approx([0.0, 2.0, 4.0, 6.0, 8.0, 10.0])
    assert saved["per_frame"]["gb_total_kj_mol"] is not None
    assert saved["openmm_check"]["frames"] == [0, 5]
    assert (out / "interactions.png").stat().st_size > 10_000
    assert len((out / "interactions.csv").read_text().splitlines()) == 1 + 6 * 126

    # mdtraj's DCD writer leaves a placeholder time step (1 AKMA unit): no times, said so, not 0.0489 ps apart
    import mdtraj

    placeholder = tmp_path / "mdtraj.dcd"
    mdtraj.Trajectory(frames.astype(np.float32), mdtraj.Topology.from_openmm(loaded.topology)).save_dcd(
        str(placeholder))
    quiet = tmp_path / "placeholder"
    with pytest.warns(UserWarning, match="header gives no time step: frames are reported by number"):
        assert main(parser.parse_args(["--system", "host-guest", "--trajectory", str(placeholder), "--by", "atom",
                                       "--check-frames", "0", "--out", str(quiet)])) == 0
    assert json.loads((quiet / "interactions.json").read_text())["per_frame"]["time_ps"] is None
    capsys.readouterr()

    # a value refused is refused before anything is written (the CSV of the earlier run had been overwritten)
    written = {f: f.read_bytes() for f in out.iterdir()}
    for fraction in ("2", "nan"):
        with pytest.raises(ValueError, match=f"--release-fraction must lie in \\(0, 1\\), got {fraction}"):
            main(parser.parse_args(["--system", "host-guest", "--trajectory", str(dcd), "--release-fraction",
                                    fraction, "--out", str(out)]))
    assert {f: f.read_bytes() for f in out.iterdir()} == written

    # a DCD cut short is refused (mdtraj read the whole frames left, without a word)
    cut_short = tmp_path / "cut_short.dcd"
    cut_short.write_bytes(dcd.read_bytes()[:-100])
    with pytest.raises(ValueError, match="cut_short.dcd is cut short: its header counts 6 frames .* holds 5 whole"):
        main(parser.parse_args(["--system", "host-guest", "--trajectory", str(cut_short), "--out", str(quiet)]))

    # Errors are clear: a trajectory of the wrong system, a selection that matches nothing.
    bad = parser.parse_args(["--system", "t4l-pxylene", "--trajectory", str(dcd), "--out", str(out)])
    with pytest.raises(ValueError, match="does not match the system"):
        main(bad)
    bad = parser.parse_args(["--system", "host-guest", "--trajectory", str(dcd), "--ligand", "resname XYZ",
                             "--out", str(out)])
    with pytest.raises(ValueError, match="matches no atom"):
        main(bad)
    for option, message in (("--near", "--near must be positive"), ("--frame-interval", "--frame-interval must be"),
                            ("--top", "--top must be at least 1"), ("--check-frames=-1", "--check-frames must be 0")):
        setting = option if "=" in option else f"{option}=0"  # (--top 0 had drawn an empty heat map, -1 a cut one;
        # --check-frames -1 had been read as 0)
        bad = parser.parse_args(["--system", "host-guest", "--trajectory", str(dcd), setting, "--out", str(out)])
        with pytest.raises(ValueError, match=message):
            main(bad)
    notes = tmp_path / "notes.dcd"
    notes.write_text("not a trajectory")
    with pytest.raises(ValueError, match="cannot read .*notes.dcd as a trajectory"):
        main(parser.parse_args(["--system", "host-guest", "--trajectory", str(notes), "--out", str(out)]))
    # The same atom count in another order (a trajectory of another build of the complex) gave energies of
    # nonsense; now its first frame is named, and nothing of the earlier output is touched.
    kept = (out / "interactions.json").read_bytes()
    shuffled = tmp_path / "shuffled.dcd"
    write_dcd(shuffled, loaded.topology, frames[:, np.random.default_rng(0).permutation(frames.shape[1])], 2.0)
    with pytest.raises(ValueError, match="frame 0 of the trajectory does not fit the system: atoms"):
        main(parser.parse_args(["--system", "host-guest", "--trajectory", str(shuffled), "--out", str(out)]))
    assert (out / "interactions.json").read_bytes() == kept
