"""``biomd_core.io.dcd``: a DCD cut short is told from a whole one by its header, whoever wrote it."""

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
