"""Tests for biomd_core.featurize (topology -> SystemGraph).

The openmmtools test systems give real inputs; the tests themselves may import
OpenMM, the package under test must not.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import mdtraj as md
import numpy as np
import pytest

# Hard dependencies: a missing one must fail the suite, not skip it.
from openmmtools import testsystems  # noqa: E402
from rdkit import Chem  # noqa: E402
from rdkit.Chem import AllChem  # noqa: E402

from biomd_core.featurize import (
    ATOM_NAMES,
    CHEM_FEATURES,
    DEFAULT_VOCABULARIES,
    ELEMENTS,
    RESIDUE_NAMES,
    ROLE_INDEX,
    SystemGraph,
    Vocabularies,
    Vocabulary,
    featurize,
)

COL = {name: i for i, name in enumerate(CHEM_FEATURES)}
PROTEIN, LIGAND, SOLVENT = ROLE_INDEX["protein"], ROLE_INDEX["ligand"], ROLE_INDEX["solvent"]


# ---------------------------------------------------------------------------
# fixtures and helpers
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def alanine():
    return testsystems.AlanineDipeptideImplicit()


@pytest.fixture(scope="module")
def host_guest():
    return testsystems.HostGuestImplicit()


@pytest.fixture(scope="module")
def lysozyme():
    return testsystems.LysozymeImplicit()


@pytest.fixture(scope="module")
def dhfr():
    # ~23.5k atoms in explicit water; built once (about a second).
    return testsystems.DHFRExplicit()


def topology_from_rdkit(mol, resname="LIG", with_bonds=True):
    """mdtraj Topology (one residue) with the RDKit molecule's atoms and bonds, plus positions [n, 3] nm."""
    top = md.Topology()
    res = top.add_residue(resname, top.add_chain())
    atoms = [top.add_atom(f"{a.GetSymbol().upper()}{a.GetIdx() + 1}",
                          md.element.Element.getByAtomicNumber(a.GetAtomicNum()), res)
             for a in mol.GetAtoms()]
    if with_bonds:
        for b in mol.GetBonds():
            top.add_bond(atoms[b.GetBeginAtomIdx()], atoms[b.GetEndAtomIdx()])
    xyz = mol.GetConformer().GetPositions() / 10.0 if mol.GetNumConformers() else None
    return top, xyz


def embedded(smiles, seed=7):
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(mol, randomSeed=seed)
    mol.SetProp("_Name", smiles)
    return mol


def write_sdf(path, *mols):
    with Chem.SDWriter(str(path)) as writer:
        for m in mols:
            writer.write(m)
    return path


def assert_graphs_equal(a: SystemGraph, b: SystemGraph):
    assert a.fingerprint() == b.fingerprint()
    for name in ("atom_indices", "element", "atom_name", "residue_name", "role", "residue_index",
                 "chem", "bonds", "chiral_neighbors", "masses"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.n_total_atoms == b.n_total_atoms


# ---------------------------------------------------------------------------
# vocabularies
# ---------------------------------------------------------------------------

def test_vocabulary_round_trip_and_unknown():
    vocab = Vocabulary(["C", "N", "O"])
    assert vocab.to_list() == ["<unk>", "C", "N", "O"]
    assert len(vocab) == 4
    assert vocab.index("N") == 2 and vocab.index(" N ") == 2
    assert vocab.index("Xx") == 0
    np.testing.assert_array_equal(vocab.indices(["O", "??", "C"]), [3, 0, 1])
    again = Vocabulary.from_list(vocab.to_list())
    assert again == vocab and again.tokens == vocab.tokens
    with pytest.raises(ValueError, match="duplicate"):
        Vocabulary(["C", "C"])
    with pytest.raises(AttributeError):
        vocab.foo = 1


def test_vocabularies_dict_round_trip_is_strict():
    data = DEFAULT_VOCABULARIES.to_dict()
    assert Vocabularies.from_dict(data) == DEFAULT_VOCABULARIES
    with pytest.raises(ValueError, match="keys"):
        Vocabularies.from_dict({**data, "extra": ["x"]})


def test_default_vocabularies_cover_biomolecules():
    assert 35 <= len(ELEMENTS) <= 50
    assert len(ATOM_NAMES) >= 150
    for name in ("CA", "HB3", "OXT", "CH3", "HH31", "O5'", "H1", "OW"):
        assert name in ATOM_NAMES, name
    for name in ("ALA", "HIP", "CYX", "ACE", "NME", "DA", "U", "HOH", "NA", "CL"):
        assert name in RESIDUE_NAMES, name
    for symbol in ("H", "C", "Cl", "Br", "I", "Zn", "Mg", "Se", "B"):
        assert symbol in ELEMENTS, symbol


# ---------------------------------------------------------------------------
# openmmtools systems
# ---------------------------------------------------------------------------

def test_alanine_dipeptide(alanine):
    g = featurize(alanine.topology)
    assert g.n_atoms == g.n_total_atoms == 22
    assert g.n_bonds == 21
    assert (g.role == PROTEIN).all() and not g.ligand_mask.any()
    np.testing.assert_array_equal(g.residue_index, [0] * 6 + [1] * 10 + [2] * 6)
    assert (g.element > 0).all() and (g.atom_name > 0).all() and (g.residue_name > 0).all()
    # bonds: i < j, unique, sorted
    assert (g.bonds[:, 0] < g.bonds[:, 1]).all()
    assert np.array_equal(g.bonds, np.unique(g.bonds, axis=0))
    # CA (topology index 8) has N(6), HA(9), CB(10), C(14): first three by index
    ca = int(np.flatnonzero((g.atom_name_labels == "CA"))[0])
    np.testing.assert_array_equal(g.chiral_neighbors[ca], [6, 9, 10])
    has3 = np.bincount(g.bonds.ravel(), minlength=g.n_atoms) >= 3
    assert ((g.chiral_neighbors >= 0).all(1) == has3).all()
    assert abs(float(g.masses.sum()) - 144.17) < 0.05  # C6H12N2O2, Da
    # hydrogens: "other" hybridisation, degree 1; methyl C sp3; carbonyl C and O sp2; amide N sp2
    h = g.element_labels == "H"
    assert (g.chem[h, COL["hybridization_other"]] == 1).all() and (g.chem[h, COL["degree"]] == 1).all()
    carbonyl_c = (g.atom_name_labels == "C") & (g.residue_name_labels != "NME")
    assert (g.chem[carbonyl_c, COL["hybridization_sp2"]] == 1).all()
    assert (g.chem[g.atom_name_labels == "N", COL["hybridization_sp2"]] == 1).all()
    assert g.chem[g.atom_name_labels == "CB", COL["num_hydrogens"]][0] == 3
    assert g.chem[:, COL["in_ring"]].sum() == 0 and g.chem[:, COL["aromatic"]].sum() == 0


def test_openmm_and_mdtraj_topologies_give_identical_graphs(alanine, lysozyme, tmp_path):
    for system in (alanine, lysozyme):
        from_openmm = featurize(system.topology)
        from_mdtraj = featurize(md.Topology.from_openmm(system.topology))
        assert_graphs_equal(from_openmm, from_mdtraj)
    # a PDB file (bonds from mdtraj's residue templates) gives the same graph too
    from openmm.app import PDBFile

    pdb = tmp_path / "ala.pdb"
    with open(pdb, "w") as handle:
        PDBFile.writeFile(alanine.topology, alanine.positions, handle)
    assert_graphs_equal(featurize(alanine.topology), featurize(str(pdb)))


def test_host_guest_are_ligands_with_ring_chemistry(host_guest):
    g = featurize(host_guest.topology)
    assert g.n_atoms == 156 and g.ligand_mask.all()  # CB7 ("CUC", 126 atoms) + B2 (30 atoms)
    assert (g.residue_name == 0).all()  # neither residue name is in the vocabulary
    host = g.residue_name_labels == "CUC"
    heavy = g.element_labels != "H"
    assert host.sum() == 126
    # cucurbit[7]uril: every C and N is in a ring (the 14 carbonyl O are not); 14 urea C=O groups
    # and 28 amide-like N are sp2; no aromatic atoms (glycoluril rings are saturated); neutral.
    oxygen = g.element_labels == "O"
    assert (g.chem[host & heavy & ~oxygen, COL["in_ring"]] == 1).all()
    assert (g.chem[host & oxygen, COL["in_ring"]] == 0).all()
    assert g.chem[host, COL["hybridization_sp2"]].sum() == 14 + 14 + 28
    assert g.chem[host & (g.element_labels == "O"), COL["hybridization_sp2"]].all()
    assert g.chem[host, COL["aromatic"]].sum() == 0
    assert g.chem[:, COL["formal_charge"]].sum() == 0
    guest = ~host
    assert 0 < g.chem[guest, COL["in_ring"]].sum() < guest.sum()


def test_lysozyme_protein_and_pxylene(lysozyme):
    g = featurize(lysozyme.topology)
    assert g.n_atoms == 2621
    lig = g.ligand_mask
    assert set(g.residue_name_labels[lig]) == {"TMP"} and lig.sum() == 18  # p-xylene is named TMP
    assert (g.role[~lig] == PROTEIN).all()
    assert g.chem[lig, COL["aromatic"]].sum() == 6
    assert g.chem[lig, COL["hybridization_sp3"]].sum() == 2  # the two methyl carbons
    # protein aromatics from connectivity rules: 5 PHE + 6 TYR + 3 TRP + 1 HIS side chains
    aromatic = g.chem[~lig, COL["aromatic"]] == 1
    assert aromatic.sum() == 5 * 6 + 6 * 6 + 3 * 9 + 1 * 5
    assert set(g.residue_name_labels[~lig][aromatic]) == {"PHE", "TYR", "TRP", "HIS"}
    ring_res = set(g.residue_name_labels[~lig][g.chem[~lig, COL["in_ring"]] == 1])
    assert ring_res == {"PHE", "TYR", "TRP", "HIS", "PRO"}
    assert g.residue_index.max() == 162


def test_dhfr_selections(dhfr):
    top = dhfr.topology
    n_total = top.getNumAtoms()
    g = featurize(top)
    assert g.n_total_atoms == n_total == 23558
    assert g.n_atoms == 2489 and (g.role == PROTEIN).all()  # water excluded (this system has no ions)
    everything = featurize(top, selection="all")
    assert everything.n_atoms == n_total
    assert (everything.role == SOLVENT).sum() == 3 * 7023
    assert everything.fingerprint() != g.fingerprint()
    heavy = featurize(top, selection="heavy")
    assert (heavy.element_labels != "H").all() and heavy.n_atoms == (g.element_labels != "H").sum()
    # chemistry does not depend on the selection: heavy-atom degree still counts hydrogens
    np.testing.assert_array_equal(heavy.chem, g.chem[np.isin(g.atom_indices, heavy.atom_indices)])
    assert featurize(top, selection="protein+ligand").n_atoms == g.n_atoms
    ca = featurize(top, selection="name CA")
    assert ca.n_atoms == 159 and ca.n_bonds == 0 and (ca.chiral_neighbors == -1).all()
    np.testing.assert_array_equal(ca.residue_index, np.arange(159))
    picked = featurize(top, selection=np.array([5, 1, 3]))
    np.testing.assert_array_equal(picked.atom_indices, [1, 3, 5])
    with pytest.raises(ValueError, match="selects no atoms"):
        featurize(top, selection="resname XXX")
    with pytest.raises(ValueError, match="selects no atoms"):
        featurize(top, selection=np.zeros(0, dtype=int))
    with pytest.raises(ValueError, match="selection"):
        featurize(top, selection="this is not ((( a selection")


def test_to_torch_dtypes(alanine):
    import torch

    g = featurize(alanine.topology)
    t = g.to_torch()
    for name in ("atom_indices", "element", "atom_name", "residue_name", "role", "residue_index",
                 "bonds", "chiral_neighbors"):
        assert t[name].dtype == torch.int64, name
    assert t["chem"].dtype == torch.float32 and tuple(t["chem"].shape) == (22, len(CHEM_FEATURES))
    assert t["masses"].dtype == torch.float32 and t["ligand_mask"].dtype == torch.bool
    assert tuple(t["bonds"].shape) == (21, 2)
    with pytest.raises(ValueError):
        g.chem[0, 0] = 1.0  # read-only


def test_ligand_residues_override(alanine):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NME is bonded to ALA: perception caps that bond, no failure
        g = featurize(alanine.topology, ligand_residues=["NME"])
    assert (g.ligand_mask == (g.residue_name_labels == "NME")).all()
    with pytest.raises(ValueError, match="matches no residue"):
        featurize(alanine.topology, ligand_residues=["XYZ"])


# ---------------------------------------------------------------------------
# ligands no vocabulary has seen, SDF input, fallbacks
# ---------------------------------------------------------------------------

def test_unknown_ligand_featurises():
    # CH3-Te-CH2-B(OH)2 in a residue "XYZ" with atom names Q1..Qn: tellurium is not in the
    # element vocabulary, boron is; no name is.
    mol = Chem.AddHs(Chem.MolFromSmiles("C[Te]CB(O)O"))
    top = md.Topology()
    res = top.add_residue("XYZ", top.add_chain())
    atoms = [top.add_atom(f"Q{i + 1}", md.element.Element.getByAtomicNumber(a.GetAtomicNum()), res)
             for i, a in enumerate(mol.GetAtoms())]
    for b in mol.GetBonds():
        top.add_bond(atoms[b.GetBeginAtomIdx()], atoms[b.GetEndAtomIdx()])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # perception must work without falling back
        g = featurize(top)
    assert g.n_atoms == mol.GetNumAtoms() and g.ligand_mask.all()
    assert (g.atom_name == 0).all() and (g.residue_name == 0).all()
    assert g.element[g.element_labels == "Te"].tolist() == [0]
    assert (g.element[g.element_labels != "Te"] > 0).all()
    assert np.isfinite(g.chem).all() and g.chem[:, COL["aromatic"]].sum() == 0
    assert g.chem[g.element_labels == "B", COL["hybridization_sp2"]].tolist() == [1.0]


@pytest.mark.parametrize("smiles", [
    "CC(=O)[O-]", "C[N+](=O)[O-]", "NC(=[NH2+])N", "c1cc[nH+]cc1", "COP(=O)([O-])[O-]",
    "O=C([O-])c1ccccc1[O-]", "c1ccc2[nH]ccc2c1", "N#Cc1ccsc1", "CS(=O)(=O)N",
])
def test_perceived_chemistry_matches_rdkit(smiles):
    ref = Chem.AddHs(Chem.MolFromSmiles(smiles))
    top, _ = topology_from_rdkit(ref)
    g = featurize(top)
    np.testing.assert_array_equal(g.chem[:, COL["aromatic"]], [a.GetIsAromatic() for a in ref.GetAtoms()])
    assert g.chem[:, COL["formal_charge"]].sum() == Chem.GetFormalCharge(ref)
    n_h = [a.GetTotalNumHs(includeNeighbors=True) for a in ref.GetAtoms()]
    np.testing.assert_array_equal(g.chem[:, COL["num_hydrogens"]], n_h)


def test_ligand_from_sdf(tmp_path):
    pxylene = embedded("Cc1ccc(C)cc1")
    top, xyz = topology_from_rdkit(pxylene, "PXY")
    sdf = write_sdf(tmp_path / "pxylene.sdf", pxylene)
    g = featurize(top, ligand_sdf=sdf)
    assert g.ligand_mask.all() and g.chem[:, COL["aromatic"]].sum() == 6
    np.testing.assert_array_equal(g.chem, featurize(top).chem)  # perception agrees with the file

    # atom order in the file differs from the topology: matched by graph isomorphism
    order = np.random.default_rng(0).permutation(pxylene.GetNumAtoms())
    shuffled = Chem.RenumberAtoms(pxylene, [int(i) for i in order])
    g2 = featurize(top, ligand_sdf=write_sdf(tmp_path / "shuffled.sdf", shuffled))
    np.testing.assert_array_equal(g2.chem, g.chem)

    # a file without hydrogens matches the heavy-atom skeleton
    g3 = featurize(top, ligand_sdf=write_sdf(tmp_path / "heavy.sdf", Chem.RemoveHs(pxylene)))
    np.testing.assert_array_equal(g3.chem, g.chem)


def test_mismatched_sdf_raises(tmp_path):
    top, _ = topology_from_rdkit(embedded("Cc1ccc(C)cc1"), "PXY")
    sdf = write_sdf(tmp_path / "benzene.sdf", embedded("c1ccccc1"))
    with pytest.raises(ValueError, match=r"(?s)C6H6.*matches no ligand.*PXY.*C8H10.*different atoms"):
        featurize(top, ligand_sdf=sdf)
    # same atoms, different bonds (o-xylene vs p-xylene)
    sdf = write_sdf(tmp_path / "oxylene.sdf", embedded("Cc1ccccc1C"))
    with pytest.raises(ValueError, match="different bond graph"):
        featurize(top, ligand_sdf=sdf)
    # a file given for a topology without any ligand is an error too, not silently ignored
    water = md.Topology()
    res = water.add_residue("HOH", water.add_chain())
    o = water.add_atom("O", md.element.oxygen, res)
    for name in ("H1", "H2"):
        water.add_bond(o, water.add_atom(name, md.element.hydrogen, res))
    with pytest.raises(ValueError, match="no ligand atoms"):
        featurize(water, selection="all", ligand_sdf=sdf)


def test_missing_hydrogens_fall_back_with_warning_and_sdf_fixes_it(tmp_path):
    top, _ = topology_from_rdkit(Chem.MolFromSmiles("c1ccccc1C(=O)O"), "BZA")  # no hydrogens
    with pytest.warns(UserWarning, match="ligand_sdf"):
        g = featurize(top)
    assert np.isfinite(g.chem).all()
    assert g.chem[:, COL["formal_charge"]].sum() == 0
    # the advice works: an SDF with hydrogens matches the hydrogen-free topology
    sdf = write_sdf(tmp_path / "bza.sdf", embedded("c1ccccc1C(=O)O"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g = featurize(top, ligand_sdf=sdf)
    assert g.chem[:, COL["aromatic"]].sum() == 6
    assert g.chem[g.element_labels == "O", COL["hybridization_sp2"]].sum() >= 1


def test_bonds_inferred_from_coordinates():
    mol = embedded("Cc1ccc(C)cc1")
    bonded, xyz = topology_from_rdkit(mol, "PXY")
    bare, _ = topology_from_rdkit(mol, "PXY", with_bonds=False)
    with pytest.warns(UserWarning, match="no bonds"):
        g = featurize(bare, positions_nm=xyz)
    assert_graphs_equal(g, featurize(bonded))
    with pytest.warns(UserWarning) as record:
        g_bare = featurize(bare)  # no coordinates: warns, still featurises
    assert any("no bonds" in str(w.message) for w in record)
    assert g_bare.n_bonds == 0 and np.isfinite(g_bare.chem).all()


def test_hydrogens_attached_from_coordinates():
    mol = embedded("Cc1ccc(C)cc1")
    bonded, xyz = topology_from_rdkit(mol, "PXY")
    heavy_only = md.Topology()
    res = heavy_only.add_residue("PXY", heavy_only.add_chain())
    atoms = [heavy_only.add_atom(a.name, a.element, res) for a in bonded.atoms]
    for a, b in bonded.bonds:
        if a.element.symbol != "H" and b.element.symbol != "H":  # drop every X-H bond
            heavy_only.add_bond(atoms[a.index], atoms[b.index])
    with pytest.warns(UserWarning, match="hydrogen"):
        featurize(heavy_only)
    assert_graphs_equal(featurize(heavy_only, positions_nm=xyz), featurize(bonded))


def test_fingerprint_is_stable_and_vocabulary_independent(alanine):
    g = featurize(alanine.topology)
    small = Vocabularies(element=Vocabulary(["C"]), atom_name=Vocabulary([]), residue_name=Vocabulary([]))
    g_small = featurize(alanine.topology, vocabs=small)
    assert g_small.vocab_sizes == {"element": 2, "atom_name": 1, "residue_name": 1}
    assert (g_small.atom_name == 0).all()
    assert g_small.fingerprint() == g.fingerprint() == featurize(alanine.topology).fingerprint()
    assert len(g.fingerprint()) == 64
    assert featurize(alanine.topology, selection="heavy").fingerprint() != g.fingerprint()


def test_core_does_not_need_openmm():
    # mdtraj itself imports openmm.unit when it can, so block OpenMM outright: importing
    # biomd_core.featurize and featurising an mdtraj topology must still work.
    code = textwrap.dedent("""
        import sys
        import biomd_core.featurize
        assert "openmm" not in sys.modules, "importing biomd_core.featurize imported openmm"
        sys.modules["openmm"] = None  # any later "import openmm" raises ImportError
        import mdtraj as md
        from biomd_core.featurize import featurize
        top = md.Topology()
        res = top.add_residue("MOH", top.add_chain())
        c = top.add_atom("C1", md.element.carbon, res)
        o = top.add_atom("O1", md.element.oxygen, res)
        top.add_bond(c, o)
        top.add_bond(o, top.add_atom("HO", md.element.hydrogen, res))
        for i in range(3):
            top.add_bond(c, top.add_atom(f"H{i}", md.element.hydrogen, res))
        graph = featurize(top)
        assert graph.n_atoms == 6 and graph.ligand_mask.all()
    """)
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, env=env)
    assert result.returncode == 0, result.stderr


def test_pickle_round_trip(alanine):
    g = featurize(alanine.topology)
    again = pickle.loads(pickle.dumps(g))
    assert_graphs_equal(again, g)
    assert again.vocabs == g.vocabs
