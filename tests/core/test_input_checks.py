"""``biomd_core.io.dcd`` and ``biomd_core.featurize.bond_lengths``: inputs cut short, or not fitting their topology."""

from __future__ import annotations

import struct

import mdtraj
import numpy as np
import pytest

from biomd_core.io.dcd import dcd_cut_short


@pytest.fixture(params=[False, True], ids=["no cell", "unit cell"])
def written(tmp_path, request):
    """A 4-frame, 5-atom DCD written by mdtraj (with or without unit cells): ``(path, bytes)``."""
    top = mdtraj.Topology()
    residue = top.add_residue("X", top.add_chain())
    for _ in range(5):
        top.add_atom("C", mdtraj.element.carbon, residue)
    xyz = np.random.default_rng(0).normal(size=(4, 5, 3)).astype(np.float32)
    cells = dict(unitcell_lengths=np.full((4, 3), 3.0), unitcell_angles=np.full((4, 3), 90.0)) if request.param else {}
    path = tmp_path / "t.dcd"
    mdtraj.Trajectory(xyz, top, **cells).save_dcd(str(path))
    return path, path.read_bytes()


def test_whole_and_cut_short_files(written):
    path, whole = written
    assert dcd_cut_short(path) is None
    path.write_bytes(whole[:-7])
    assert dcd_cut_short(path).endswith("the file holds 3 whole ones and part of another")
    path.write_bytes(b"")
    assert dcd_cut_short(path) == "it is empty"
    for size in (60, 150):
        path.write_bytes(whole[:size])
        assert dcd_cut_short(path) == f"it ends inside its header ({size} bytes)"


def test_layouts_it_does_not_know_are_left_to_the_reader(written, tmp_path):
    path, whole = written
    for offset in (40, 52, 84):  # fixed atoms, a fourth dimension, an X-PLOR file (no CHARMM version)
        edited = bytearray(whole)
        edited[offset:offset + 4] = struct.pack("<i", 0 if offset == 84 else 3)
        path.write_bytes(bytes(edited[:-7]))  # cut short too: still not judged
        assert dcd_cut_short(path) is None
    other = tmp_path / "notes.dcd"
    other.write_text("not a trajectory at all\n")
    assert dcd_cut_short(other) is None


def test_bonds_that_do_not_fit_their_coordinates_are_named():
    from biomd_core.featurize.bond_lengths import check_bonds_fit

    frames = np.zeros((3, 3, 3))
    frames[:, 1, 0], frames[:, 2, 0] = 0.15, 0.30  # a chain of two 0.15 nm bonds
    bonds = np.array([[0, 1], [1, 2]])
    check_bonds_fit(frames, bonds, "chain")
    frames[2, 2, 0] = 0.8  # the last frame's second bond torn
    with pytest.raises(ValueError, match=r"frame 2 of the chain does not fit its topology: atoms 1 and 2 .* are "
                                         r"0.650 nm apart \(> 0.3 nm\)"):
        check_bonds_fit(frames, bonds, "chain")


def test_a_residue_named_for_other_atoms_is_refused(tmp_path):
    """ALA written as GLY: its CB gets no bond to CA from GLY's template (training had taken it without a word)."""
    from biomd_core.featurize import featurize
    from biomd_core.featurize.bond_lengths import check_residues_whole
    from openmm_biomd.data.systems import get_system

    loaded = get_system("alanine-dipeptide").load()
    traj = mdtraj.Trajectory(np.asarray(loaded.positions, np.float32)[None],
                             mdtraj.Topology.from_openmm(loaded.topology))
    traj.save_pdb(str(tmp_path / "ala.pdb"))
    ala = mdtraj.load(str(tmp_path / "ala.pdb"))
    check_residues_whole(featurize(ala), ala.topology, "alanine dipeptide")
    # a selection that cuts residues is not judged by them (the backbone's N and C alone are no residue)
    check_residues_whole(featurize(ala, selection="name N or name C"), ala.topology, "selection")
    (tmp_path / "gly.pdb").write_text((tmp_path / "ala.pdb").read_text().replace(" ALA ", " GLY "))
    gly = mdtraj.load(str(tmp_path / "gly.pdb"))
    with pytest.raises(ValueError, match=r"residue GLY 2 \(chain 0\) of the renamed falls into 2 pieces .*\(CB, HB1, "):
        check_residues_whole(featurize(gly), gly.topology, "renamed")
