"""Per-atom chemistry features (aromaticity, hybridisation, charge, rings, H count, degree).

Two sources fill the ``chem`` array ``[N, F]`` of a
:class:`~biomd_core.featurize.SystemGraph` (columns named by :data:`CHEM_FEATURES`):

1. **Connectivity rules, every atom** (:func:`connectivity_features`). MD
   topologies carry every hydrogen, so an atom's bonded degree tells its
   hybridisation: C with 4/3/2 neighbours is sp3/sp2/sp; three-coordinate N and
   two-coordinate O are sp2 when next to an unsaturated atom (amides,
   guanidinium, phenol, ester) and sp3 otherwise; terminal O/S (C=O, S=O) are
   sp2; S, P and halogens are sp3; hydrogens, metals and unknown elements are
   "other". Rings made only of sp2 atoms (and lone-pair donors such as a
   thiophene S) are aromatic, which recovers the aromatic side chains (PHE, TYR,
   TRP, HIS) and nucleobases without residue templates; as a rule it also calls
   quinone-like rings aromatic, which RDKit would not. Formal charge
   is left 0 for polymer atoms: the residue name (LYS, ASP, HIP, ...) already
   tells the network the protonation state. Rings are searched only along
   intra-residue bonds and ligand-ligand bonds, so a disulfide does not turn the
   whole backbone between two cysteines into a "ring".

2. **Ligand perception, ligand atoms** (:func:`ligand_chemistry`), which
   overwrites aromatic / hybridisation / formal charge with RDKit's values
   (in-ring, H count and degree always come from the topology graph, so they
   mean the same thing for every atom). Bond orders come from

   * a user-given SDF/mol2 (``ligand_sdf``), matched to each ligand molecule of
     the topology by element order or, failing that, by graph isomorphism; or
   * our own perception from elements + bonds alone: every heavy atom's free
     valence is its usual valence minus its bonded degree (all H present), and
     a small integer programme (scipy's HiGHS ``milp``) places double/triple
     bonds to use up the free valences, allowing N+ (nitro, amidinium,
     pyridinium) at a small cost and leaving O-/N-/halide anions where a free
     valence stays unused (carboxylate, phosphate, sulfonate). The result is
     sanitised by RDKit, which then perceives aromaticity and hybridisation.

   We do **not** use ``rdkit.Chem.rdDetermineBonds.DetermineBondOrders``: it
   needs only connectivity (coordinates would only add chirality), but it
   enumerates every valence combination and did not finish within 10 minutes on
   the 126-atom cucurbit[7]uril host of openmmtools' ``HostGuestImplicit``
   (28 nitrogens with two candidate valences each). Coordinates are therefore
   not needed for ligand chemistry at all; ``featurize`` uses them only to
   repair missing bonds.

   When perception fails (missing hydrogens, exotic valences, RDKit sanitisation
   error) the molecule keeps the connectivity-rule features and a warning says
   to pass ``ligand_sdf``.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from typing import Any, Iterable, Sequence

import numpy as np

#: Names of the columns of ``SystemGraph.chem`` (float32).
CHEM_FEATURES: tuple[str, ...] = (
    "aromatic",              # 0/1
    "hybridization_sp",      # one-hot over (sp, sp2, sp3, other)
    "hybridization_sp2",
    "hybridization_sp3",
    "hybridization_other",   # s (hydrogen), sp3d, sp3d2, unspecified, metals, unknown
    "formal_charge",         # elementary charges
    "in_ring",               # 0/1
    "num_hydrogens",         # bonded hydrogens (count)
    "degree",                # bonded neighbours in the full topology (count)
)
N_CHEM_FEATURES = len(CHEM_FEATURES)
_COL = {name: i for i, name in enumerate(CHEM_FEATURES)}
_HYB_COLS = {"sp": _COL["hybridization_sp"], "sp2": _COL["hybridization_sp2"],
             "sp3": _COL["hybridization_sp3"], "other": _COL["hybridization_other"]}

_RDKIT_HINT = ("RDKit is needed for ligand chemistry features: "
               "pip install rdkit  (or conda install -c conda-forge rdkit)")
_SDF_HINT = ("pass ligand_sdf=<SDF or mol2 file with the ligand's bond orders and charges, "
             "same atoms as the topology> to featurize")

# Atomic numbers of metals: bonds to them are coordination bonds, left out of
# valence bookkeeping (a heme nitrogen bonded to Fe is still a pyrrole N).
_METALS = frozenset(
    [3, 4, 11, 12, 13, 19, 20, 31, 37, 38, 49, 50, 55, 56, 81, 82, 83, 87, 88]
    + list(range(21, 31)) + list(range(39, 49)) + list(range(57, 81)) + list(range(89, 113)))


def _import_rdkit():
    try:
        from rdkit import Chem, RDLogger
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(_RDKIT_HINT) from exc
    return Chem, RDLogger


# ---------------------------------------------------------------------------
# Graph helpers
# ---------------------------------------------------------------------------

def _csr(n: int, bonds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Adjacency of an undirected graph: offsets ``[n+1]``, neighbours ``[2E]``, bond ids ``[2E]``."""
    src = np.concatenate([bonds[:, 0], bonds[:, 1]])
    dst = np.concatenate([bonds[:, 1], bonds[:, 0]])
    eid = np.concatenate([np.arange(len(bonds)), np.arange(len(bonds))])
    order = np.lexsort((dst, src))
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=n), out=offsets[1:])
    return offsets, dst[order], eid[order]


def ring_bond_mask(n_atoms: int, bonds: np.ndarray) -> np.ndarray:
    """Bonds lying on a cycle of the graph (the bonds that are not bridges).

    Tarjan's bridge search, iterative so deep chains do not hit Python's
    recursion limit; O(atoms + bonds).

    Parameters
    ----------
    n_atoms
        Number of graph nodes.
    bonds
        ``[E, 2]`` int, each bond once.

    Returns
    -------
    np.ndarray
        ``[E]`` bool.
    """
    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    in_ring = np.zeros(len(bonds), dtype=bool)
    if len(bonds) == 0:
        return in_ring
    offsets, nbrs, eids = _csr(n_atoms, bonds)
    off, nb, ed = offsets.tolist(), nbrs.tolist(), eids.tolist()
    disc = [-1] * n_atoms
    low = [0] * n_atoms
    timer = 0
    for root in np.unique(bonds).tolist():
        if disc[root] != -1:
            continue
        disc[root] = low[root] = timer
        timer += 1
        stack = [[root, -1, -1, off[root]]]  # node, parent, bond to parent, next adjacency slot
        while stack:
            top = stack[-1]
            v, parent, up_bond, pos = top
            if pos < off[v + 1]:
                top[3] += 1
                w, e = nb[pos], ed[pos]
                if e == up_bond:
                    continue
                if disc[w] == -1:
                    disc[w] = low[w] = timer
                    timer += 1
                    stack.append([w, v, e, off[w]])
                else:
                    low[v] = min(low[v], disc[w])
                    in_ring[e] = True  # a non-tree bond always closes a cycle
            else:
                stack.pop()
                if parent != -1:
                    low[parent] = min(low[parent], low[v])
                    if low[v] <= disc[parent]:
                        in_ring[up_bond] = True  # v's subtree reaches back above v: not a bridge
    return in_ring


def ring_atom_mask(n_atoms: int, bonds: np.ndarray) -> np.ndarray:
    """``[n_atoms]`` bool, atoms with at least one ring bond (see :func:`ring_bond_mask`)."""
    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    mask = np.zeros(n_atoms, dtype=bool)
    mask[bonds[ring_bond_mask(n_atoms, bonds)].ravel()] = True
    return mask


def connected_components(n_atoms: int, bonds: np.ndarray, nodes: np.ndarray) -> list[np.ndarray]:
    """Connected components of the sub-graph induced by ``nodes``.

    Returns a list of sorted ``[k]`` int64 index arrays, ordered by their first atom.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as _cc

    nodes = np.asarray(nodes, dtype=np.int64)
    if len(nodes) == 0:
        return []
    keep = np.zeros(n_atoms, dtype=bool)
    keep[nodes] = True
    sub = bonds[keep[bonds[:, 0]] & keep[bonds[:, 1]]] if len(bonds) else bonds.reshape(0, 2)
    local = np.full(n_atoms, -1, dtype=np.int64)
    local[nodes] = np.arange(len(nodes))
    k = len(nodes)
    graph = coo_matrix((np.ones(len(sub)), (local[sub[:, 0]], local[sub[:, 1]])), shape=(k, k))
    _, labels = _cc(graph, directed=False)
    comps = [nodes[labels == lab] for lab in np.unique(labels)]
    return sorted(comps, key=lambda c: int(c[0]))


# ---------------------------------------------------------------------------
# 1. Connectivity rules (all atoms)
# ---------------------------------------------------------------------------

def connectivity_features(atomic_numbers: np.ndarray, bonds: np.ndarray,
                          ring_bonds: np.ndarray | None = None) -> np.ndarray:
    """Chemistry features from elements and bonds only (no bond orders).

    Parameters
    ----------
    atomic_numbers
        ``[n]`` int, 0 for unknown elements and virtual sites.
    bonds
        ``[E, 2]`` int, all bonds of the topology (each once).
    ring_bonds
        ``[E', 2]`` int, the bonds searched for rings (default: ``bonds``).

    Returns
    -------
    np.ndarray
        ``[n, F]`` float32 in :data:`CHEM_FEATURES` order; formal charge is 0.
    """
    z = np.asarray(atomic_numbers, dtype=np.int64)
    n = len(z)
    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    ring_bonds = bonds if ring_bonds is None else np.asarray(ring_bonds, dtype=np.int64).reshape(-1, 2)
    i, j = bonds[:, 0], bonds[:, 1]
    degree = np.bincount(bonds.ravel(), minlength=n)
    num_h = np.bincount(i, weights=(z[j] == 1), minlength=n) + np.bincount(j, weights=(z[i] == 1), minlength=n)

    # "Unsaturated" atoms carry a pi bond when all hydrogens are present.
    # (terminal O/S count: they make nitro and sulfonyl neighbours look like RDKit's.)
    unsat = (((z == 6) | (z == 14)) & ((degree == 2) | (degree == 3))) | ((z == 7) & (degree == 2)) \
        | (((z == 8) | (z == 16)) & (degree == 1))
    nbr_unsat = (np.bincount(i, weights=unsat[j], minlength=n) + np.bincount(j, weights=unsat[i], minlength=n)) > 0

    hyb = np.full(n, "other", dtype=object)
    c_like = (z == 6) | (z == 14)
    hyb[c_like & (degree == 4)] = "sp3"
    hyb[c_like & (degree == 3)] = "sp2"
    hyb[c_like & (degree == 2)] = "sp"
    nitrogen = z == 7
    hyb[nitrogen & (degree == 4)] = "sp3"
    hyb[nitrogen & (degree == 3)] = np.where(nbr_unsat[nitrogen & (degree == 3)], "sp2", "sp3")
    hyb[nitrogen & (degree == 2)] = "sp2"
    hyb[nitrogen & (degree == 1)] = "sp"
    chalcogen = (z == 8) | (z == 16) | (z == 34) | (z == 52)
    hyb[chalcogen & (degree >= 1)] = "sp3"
    hyb[chalcogen & (degree == 1)] = "sp2"  # C=O, S=O, P=O, C=S, carboxylate
    hyb[(z == 8) & (degree == 2) & nbr_unsat] = "sp2"  # phenol, ester, furan (conjugated lone pair)
    hyb[(z == 15) | (z == 33) | (z == 9) | (z == 17) | (z == 35) | (z == 53)] = "sp3"
    hyb[(z == 5) & (degree == 3)] = "sp2"
    hyb[(z == 5) & (degree == 4)] = "sp3"

    in_ring = ring_atom_mask(n, ring_bonds)
    # Aromatic: rings made only of sp2 atoms and lone-pair donors next to them
    # (thiophene S); found as the rings of that sub-graph.
    pi = (hyb == "sp2") | (chalcogen & (degree == 2) & nbr_unsat)
    pi_ring_bonds = ring_bonds[pi[ring_bonds[:, 0]] & pi[ring_bonds[:, 1]]]
    aromatic = ring_atom_mask(n, pi_ring_bonds) & in_ring
    hyb[aromatic] = "sp2"

    out = np.zeros((n, N_CHEM_FEATURES), dtype=np.float32)
    out[:, _COL["aromatic"]] = aromatic
    for name, col in _HYB_COLS.items():
        out[:, col] = hyb == name
    out[:, _COL["in_ring"]] = in_ring
    out[:, _COL["num_hydrogens"]] = num_h
    out[:, _COL["degree"]] = degree
    return out


# ---------------------------------------------------------------------------
# 2a. Bond-order perception (ligand molecules without an SDF)
# ---------------------------------------------------------------------------

class PerceptionError(RuntimeError):
    """Bond orders of a ligand could not be assigned from its connectivity."""


def _valence(z: int, d: int) -> tuple[int, int] | None:
    """(free valence, fixed formal charge) of element ``z`` with ``d`` non-metal bonds.

    None when the combination is not handled (the molecule then falls back to
    connectivity features).
    """
    if z == 1:
        return (0, 0) if d == 1 else None
    if z == 5:
        return (3 - d, 0) if d <= 3 else ((0, -1) if d == 4 else None)
    if z in (6, 14):
        return (4 - d, 0) if d <= 4 else None
    if z == 7:
        return (3 - d, 0) if d <= 3 else ((0, 1) if d == 4 else None)
    if z == 8:
        return (2 - d, 0) if d <= 2 else ((0, 1) if d == 3 else None)
    if z == 9:
        return (1 - d, 0) if d <= 1 else None
    if z in (15, 33):
        return {0: (3, 0), 1: (2, 0), 2: (1, 0), 3: (0, 0), 4: (1, 0), 5: (0, 0), 6: (0, -1)}.get(d)
    if z in (16, 34, 52):
        return {0: (2, 0), 1: (1, 0), 2: (0, 0), 3: (1, 0), 4: (2, 0), 6: (0, 0)}.get(d)
    if z in (17, 35, 53):
        return {0: (1, 0), 1: (0, 0), 3: (2, 0), 4: (3, 0)}.get(d)
    return None


def _leftover_charge(z: int, d: int, r: int) -> int | None:
    """Formal charge of an atom left with ``r`` unused free valences (None: unexplained)."""
    if r == 0:
        return 0
    if r == 1 and z in (8, 16, 34, 52) and d <= 1:
        return -1  # carboxylate, phenoxide, thiolate, phosphate/sulfonate O-
    if r == 1 and z == 7 and d <= 2:
        return -1  # deprotonated sulfonamide, tetrazolide
    if r == 1 and z in (9, 17, 35, 53) and d == 0:
        return -1  # halide
    if r == 1 and ((z in (16, 34, 52) and d == 3) or (z in (15, 33) and d == 4)):
        return 1  # sulfonium, phosphonium
    if r == 2 and z in (16, 34, 52) and d == 4:
        return 0  # S(IV) with four single bonds
    if z == 5:
        return 0  # electron-deficient boron keeps an empty p orbital
    return None


def assign_bond_orders(atomic_numbers: Sequence[int], bonds: np.ndarray,
                       n_external: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Bond orders and formal charges of one molecule from connectivity (all H present).

    Solves a small integer programme: each bond gets 0-2 extra orders; every heavy
    atom should use up its free valence (penalty 100 per unused valence where
    that leaves a sensible ion, 10^4 elsewhere); a neutral N may take one
    extra bond as N+ (penalty 1); ring pi bonds get a 10^-3 bonus to break ties
    towards aromatic Kekule structures. Unused valences that
    are chemically sensible become anions (:func:`_leftover_charge`).

    Parameters
    ----------
    atomic_numbers
        ``[k]`` atomic numbers (no metals).
    bonds
        ``[m, 2]`` local bonds (each once).
    n_external
        ``[k]`` single bonds each atom has to atoms outside the molecule.

    Returns
    -------
    orders, charges
        ``[m]`` int bond orders (1-3) and ``[k]`` int formal charges.

    Raises
    ------
    PerceptionError
        If an atom has a valence we do not handle or a free valence stays unused
        on an atom where that means missing hydrogens (e.g. carbon).
    """
    from scipy.optimize import Bounds, LinearConstraint, milp

    z = np.asarray(atomic_numbers, dtype=np.int64)
    k = len(z)
    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    degree = np.bincount(bonds.ravel(), minlength=k) + np.asarray(n_external, dtype=np.int64)
    free = np.zeros(k, dtype=np.int64)
    charge = np.zeros(k, dtype=np.int64)
    for a in range(k):
        val = _valence(int(z[a]), int(degree[a]))
        if val is None:
            raise PerceptionError(f"unsupported valence: element Z={z[a]} with {degree[a]} bonds")
        free[a], charge[a] = val
    # N that may become N+ with one more bond (nitro, amidinium, azide, pyridinium)
    promotable = (z == 7) & (charge == 0) & ((degree == 2) | (degree == 3))
    cap = free + promotable
    cand = np.flatnonzero((cap[bonds[:, 0]] > 0) & (cap[bonds[:, 1]] > 0)) if len(bonds) else np.zeros(0, int)
    extra = np.zeros(len(bonds), dtype=np.int64)
    leftover = free.copy()
    if len(cand):
        m, p = len(cand), int(promotable.sum())
        prom_idx = np.flatnonzero(promotable)
        # variables: [x_e (m) | y_i promotion (p) | r_i unused valence (k)]
        a_mat = np.zeros((k, m + p + k))
        a_mat[bonds[cand, 0], np.arange(m)] = 1.0
        a_mat[bonds[cand, 1], np.arange(m)] = 1.0
        a_mat[prom_idx, m + np.arange(p)] = -1.0
        a_mat[np.arange(k), m + p + np.arange(k)] = 1.0
        upper = np.concatenate([np.minimum(np.minimum(cap[bonds[cand, 0]], cap[bonds[cand, 1]]), 2),
                                np.ones(p), free + 1]).astype(float)
        # An unused valence costs 100 where it makes a sensible ion (O-, N-, S+) and
        # 10^4 where it does not (carbon), so e.g. phenoxide keeps its charge on O.
        explainable = np.array([_leftover_charge(int(z[a]), int(degree[a]), 1) is not None for a in range(k)])
        # Among equally good answers prefer pi bonds inside rings (a tiny bonus), so
        # e.g. salicylate comes out aromatic rather than quinoid.
        ring_bonus = -1e-3 * ring_bond_mask(k, bonds)[cand]
        cost = np.concatenate([ring_bonus, np.ones(p), np.where(explainable, 100.0, 1e4)])
        res = milp(cost, constraints=LinearConstraint(a_mat, free, free),
                   integrality=np.ones(m + p + k), bounds=Bounds(np.zeros(m + p + k), upper))
        if res.x is None:
            raise PerceptionError(f"bond-order assignment failed: {res.message}")
        sol = np.rint(res.x).astype(np.int64)
        extra[cand] = sol[:m]
        charge[prom_idx] += sol[m:m + p]
        leftover = sol[m + p:]
    for a in np.flatnonzero(leftover):
        q = _leftover_charge(int(z[a]), int(degree[a]), int(leftover[a]))
        if q is None:
            raise PerceptionError(
                f"{leftover[a]} unsatisfied valence(s) on atom {a} (Z={z[a]}, {degree[a]} bonds); "
                "are hydrogens missing from the topology?")
        charge[a] += q
    return 1 + extra, charge


def _rdkit_features(mol, rows: Iterable[int]) -> np.ndarray:
    """aromatic / hybridisation / charge columns for atoms ``rows`` of a sanitised RDKit mol."""
    Chem, _ = _import_rdkit()
    hyb_map = {Chem.HybridizationType.SP: "sp", Chem.HybridizationType.SP2: "sp2",
               Chem.HybridizationType.SP3: "sp3"}
    rows = list(rows)
    out = np.zeros((len(rows), N_CHEM_FEATURES), dtype=np.float32)
    for r, idx in enumerate(rows):
        atom = mol.GetAtomWithIdx(int(idx))
        out[r, _COL["aromatic"]] = atom.GetIsAromatic()
        out[r, _HYB_COLS[hyb_map.get(atom.GetHybridization(), "other")]] = 1.0
        out[r, _COL["formal_charge"]] = atom.GetFormalCharge()
    return out


def perceive_molecule(atomic_numbers: np.ndarray, bonds: np.ndarray, component: np.ndarray):
    """Build a sanitised RDKit molecule for one ligand molecule of a topology.

    Parameters
    ----------
    atomic_numbers
        ``[n_total]`` atomic numbers of the whole topology.
    bonds
        ``[E, 2]`` all topology bonds.
    component
        ``[k]`` sorted topology indices of the molecule's atoms.

    Returns
    -------
    mol, atoms
        The RDKit molecule (with an H cap for each bond leaving the molecule,
        appended after the real atoms) and the ``[k']`` topology indices of its
        first ``k'`` atoms (metal atoms are left out).
    """
    Chem, RDLogger = _import_rdkit()
    z_all = np.asarray(atomic_numbers, dtype=np.int64)
    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    component = np.asarray(component, dtype=np.int64)
    is_metal = np.isin(z_all, list(_METALS))
    atoms = component[~is_metal[component]]
    if np.any(z_all[atoms] == 0):
        raise PerceptionError("unknown element / virtual site in the molecule")
    local = np.full(len(z_all), -1, dtype=np.int64)
    local[atoms] = np.arange(len(atoms))
    non_metal_bonds = bonds[~is_metal[bonds[:, 0]] & ~is_metal[bonds[:, 1]]]
    a_in = local[non_metal_bonds[:, 0]] >= 0
    b_in = local[non_metal_bonds[:, 1]] >= 0
    internal = local[non_metal_bonds[a_in & b_in]]
    # bonds leaving the molecule (covalent ligand, modified residue): one H cap each
    ext_owner = np.concatenate([local[non_metal_bonds[a_in & ~b_in, 0]], local[non_metal_bonds[~a_in & b_in, 1]]])
    n_external = np.bincount(ext_owner, minlength=len(atoms))
    orders, charges = assign_bond_orders(z_all[atoms], internal, n_external)

    mol = Chem.RWMol()
    for zz, q in zip(z_all[atoms].tolist(), charges.tolist()):
        atom = Chem.Atom(int(zz))
        atom.SetFormalCharge(int(q))
        atom.SetNoImplicit(True)  # every hydrogen is an explicit atom of the topology
        mol.AddAtom(atom)
    bond_types = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}
    for (a, b), order in zip(internal.tolist(), orders.tolist()):
        mol.AddBond(int(a), int(b), bond_types[int(order)])
    for owner in ext_owner.tolist():
        cap = Chem.Atom(1)
        cap.SetNoImplicit(True)
        mol.AddBond(int(owner), mol.AddAtom(cap), Chem.BondType.SINGLE)
    mol = mol.GetMol()
    RDLogger.DisableLog("rdApp.*")  # failures are reported by our own warning
    try:
        Chem.SanitizeMol(mol)
    except Exception as exc:  # RDKit raises several exception types
        raise PerceptionError(f"RDKit sanitisation failed: {exc}") from exc
    finally:
        RDLogger.EnableLog("rdApp.*")
    return mol, atoms


# ---------------------------------------------------------------------------
# 2b. User-given ligand files
# ---------------------------------------------------------------------------

def read_ligand_file(source: Any) -> list:
    """RDKit molecules (hydrogens kept) from an SDF/mol/mol2 path, an RDKit Mol or a list of them."""
    Chem, _ = _import_rdkit()
    if isinstance(source, Chem.Mol):
        return [source]
    if isinstance(source, (list, tuple)):
        return [m for item in source for m in read_ligand_file(item)]
    path = os.fspath(source)
    if not os.path.exists(path):
        raise FileNotFoundError(f"ligand file not found: {path}")
    ext = os.path.splitext(path)[1].lower()
    if ext in (".sdf", ".sd"):
        mols = list(Chem.SDMolSupplier(path, removeHs=False))
    elif ext == ".mol":
        mols = [Chem.MolFromMolFile(path, removeHs=False)]
    elif ext == ".mol2":
        mols = [Chem.MolFromMol2File(path, removeHs=False)]
    else:
        raise ValueError(f"ligand file {path!r}: unsupported extension {ext!r} (use .sdf, .mol or .mol2)")
    bad = [i for i, m in enumerate(mols) if m is None]
    if bad or not mols:
        raise ValueError(f"RDKit could not read molecule(s) {bad or [0]} of {path!r}; "
                         "check the file (valences, charges, aromaticity)")
    return mols


def _formula(symbols: Iterable[str]) -> str:
    """Hill formula, e.g. ``C8H10``."""
    counts = Counter(symbols)
    order = [e for e in ("C", "H") if e in counts] + sorted(e for e in counts if e not in ("C", "H"))
    return "".join(f"{e}{counts[e] if counts[e] > 1 else ''}" for e in order)


def _skeleton(z: Sequence[int], bonds: Iterable[tuple[int, int]]):
    """RDKit molecule with elements and single bonds only (for isomorphism tests)."""
    Chem, _ = _import_rdkit()
    mol = Chem.RWMol()
    for zz in z:
        atom = Chem.Atom(int(zz))
        atom.SetNoImplicit(True)
        mol.AddAtom(atom)
    for a, b in bonds:
        mol.AddBond(int(a), int(b), Chem.BondType.SINGLE)
    mol = mol.GetMol()
    mol.UpdatePropertyCache(strict=False)
    Chem.FastFindRings(mol)
    return mol


def match_molecule(mol, z_comp: np.ndarray, bonds_comp: np.ndarray) -> tuple[np.ndarray | None, str]:
    """Map a topology molecule's atoms onto a file molecule's atoms.

    Parameters
    ----------
    mol
        RDKit molecule from the ligand file.
    z_comp
        ``[k]`` atomic numbers of the topology molecule (topology order).
    bonds_comp
        ``[m, 2]`` its bonds in local indices.

    Returns
    -------
    mapping, reason
        ``mapping[i]`` is the file atom for topology atom ``i`` (-1 for a
        hydrogen when the file has no hydrogens), or None and a sentence saying
        what did not match.
    """
    z_mol = np.array([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=np.int64)
    bonds_mol = np.array([[b.GetBeginAtomIdx(), b.GetEndAtomIdx()] for b in mol.GetBonds()],
                         dtype=np.int64).reshape(-1, 2)
    keep = np.ones(len(z_comp), dtype=bool)
    if len(z_mol) != len(z_comp) and not np.any(z_mol == 1) and np.any(z_comp == 1):
        keep = z_comp != 1  # file without hydrogens: match the heavy-atom skeleton
    sub = np.flatnonzero(keep)
    local = np.full(len(z_comp), -1, dtype=np.int64)
    local[sub] = np.arange(len(sub))
    sub_bonds = local[bonds_comp[keep[bonds_comp[:, 0]] & keep[bonds_comp[:, 1]]]] if len(bonds_comp) else bonds_comp
    z_sub = z_comp[sub]
    if len(z_sub) != len(z_mol) or Counter(z_sub.tolist()) != Counter(z_mol.tolist()):
        return None, "different atoms"
    norm = lambda b: {tuple(sorted(p)) for p in np.asarray(b).tolist()}  # noqa: E731
    mapping = None
    if np.array_equal(z_sub, z_mol) and norm(sub_bonds) == norm(bonds_mol):
        mapping = np.arange(len(sub))  # same atom order: the common case when both come from one file
    else:
        if len(sub_bonds) != len(bonds_mol):
            return None, f"same atoms but {len(sub_bonds)} bonds in the topology vs {len(bonds_mol)} in the file"
        hit = _skeleton(z_sub, sub_bonds).GetSubstructMatch(_skeleton(z_mol, bonds_mol))
        if not hit:
            return None, "same atoms and bond count but a different bond graph"
        mapping = np.empty(len(sub), dtype=np.int64)
        mapping[np.asarray(hit)] = np.arange(len(hit))  # hit[file atom] = topology atom
    full = np.full(len(z_comp), -1, dtype=np.int64)
    full[sub] = mapping
    return full, ""


# ---------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------

def ligand_chemistry(atomic_numbers: np.ndarray, bonds: np.ndarray, ligand_atoms: np.ndarray,
                     base: np.ndarray, *, describe=None, ligand_sdf: Any = None,
                     only_atoms: np.ndarray | None = None) -> np.ndarray:
    """Overwrite aromatic / hybridisation / formal charge of ligand atoms with RDKit values.

    Parameters
    ----------
    atomic_numbers
        ``[n_total]`` atomic numbers (0 unknown).
    bonds
        ``[E, 2]`` all bonds of the topology.
    ligand_atoms
        ``[L]`` topology indices of atoms with the ligand role.
    base
        ``[n_total, F]`` float32 connectivity features (:func:`connectivity_features`);
        not modified.
    describe
        ``describe(atom_indices) -> str`` naming a molecule in messages
        (e.g. its residue names).
    ligand_sdf
        Path(s) or RDKit molecule(s) with the ligands' bond orders; see module docs.
    only_atoms
        If given, molecules without any of these atoms are skipped (not modelled).

    Returns
    -------
    np.ndarray
        ``[n_total, F]`` float32, a modified copy of ``base``.

    Raises
    ------
    ValueError
        If a molecule from ``ligand_sdf`` matches no ligand molecule of the topology.
    """
    out = base.copy()
    ligand_atoms = np.asarray(ligand_atoms, dtype=np.int64)
    if len(ligand_atoms) == 0 and ligand_sdf is None:
        return out  # (with a file and no ligand we go on, to raise a clear error below)
    z = np.asarray(atomic_numbers, dtype=np.int64)
    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    describe = describe or (lambda idx: f"atoms {int(idx[0])}..{int(idx[-1])}")
    comps = connected_components(len(z), bonds, ligand_atoms)
    overwrite = [_COL["aromatic"], *_HYB_COLS.values(), _COL["formal_charge"]]

    done = np.zeros(len(comps), dtype=bool)
    if ligand_sdf is not None:
        for c_i, mol, mapping in _match_files(read_ligand_file(ligand_sdf), z, bonds, comps, describe):
            if done[c_i]:
                continue  # an earlier file molecule already described this one
            comp, rows = comps[c_i], mapping >= 0
            out[np.ix_(comp[rows], overwrite)] = _rdkit_features(mol, mapping[rows])[:, overwrite]
            done[c_i] = True

    wanted = None
    if only_atoms is not None:
        wanted = np.zeros(len(z), dtype=bool)
        wanted[np.asarray(only_atoms, dtype=np.int64)] = True
    failures = []
    for c_i, comp in enumerate(comps):
        if done[c_i] or (wanted is not None and not wanted[comp].any()):
            continue
        if len(comp) == 1:
            continue  # an isolated atom (ion, noble gas, particle): no bond orders to perceive
        try:
            mol, atoms = perceive_molecule(z, bonds, comp)
        except PerceptionError as exc:
            failures.append(f"{describe(comp)} {_formula(_sym(z[comp]))}: {exc}")
            continue
        out[np.ix_(atoms, overwrite)] = _rdkit_features(mol, range(len(atoms)))[:, overwrite]
    if failures:  # one warning per call, not one per molecule
        more = f"\n  ... and {len(failures) - 5} more" if len(failures) > 5 else ""
        warnings.warn(
            f"Could not perceive bond orders of {len(failures)} ligand molecule(s):\n  "
            + "\n  ".join(failures[:5]) + more
            + f"\nThey keep connectivity-only features (no bond-order aromaticity, no formal charges); "
            f"{_SDF_HINT}.", stacklevel=3)
    return out


def _match_files(mols: list, z: np.ndarray, bonds: np.ndarray, comps: list[np.ndarray], describe):
    """Yield ``(component index, file molecule, mapping)`` for every match.

    A file molecule is applied to every topology molecule it matches (several
    copies of one ligand need one entry); one that matches none is an error.
    """
    comp_of = np.full(len(z), -1, dtype=np.int64)
    local = np.full(len(z), -1, dtype=np.int64)
    for c_i, comp in enumerate(comps):
        comp_of[comp] = c_i
        local[comp] = np.arange(len(comp))
    same = (comp_of[bonds[:, 0]] >= 0) & (comp_of[bonds[:, 0]] == comp_of[bonds[:, 1]])
    owner = comp_of[bonds[same, 0]]
    comp_bonds = [local[bonds[same][owner == c_i]] for c_i in range(len(comps))]
    Chem, _ = _import_rdkit()
    for m_i, mol in enumerate(mols):
        reasons = []
        heavy_mol = None
        for c_i, comp in enumerate(comps):
            use = mol
            if not np.any(z[comp] == 1) and any(a.GetAtomicNum() == 1 for a in mol.GetAtoms()):
                # hydrogen-free topology (e.g. a PDB ligand): match the file's heavy atoms;
                # RemoveHs keeps aromaticity, charges and hybridisation of the rest
                heavy_mol = Chem.RemoveHs(mol) if heavy_mol is None else heavy_mol
                use = heavy_mol
            mapping, why = match_molecule(use, z[comp], comp_bonds[c_i])
            if mapping is None:
                reasons.append(f"  - {describe(comp)}: {len(comp)} atoms {_formula(_sym(z[comp]))} ({why})")
            else:
                yield c_i, use, mapping
        if len(reasons) == len(comps):
            symbols = _sym([a.GetAtomicNum() for a in mol.GetAtoms()])
            name = mol.GetProp("_Name").strip() if mol.HasProp("_Name") else ""
            found = "\n".join(reasons) if reasons else "  (none: the topology has no ligand atoms)"
            raise ValueError(
                f"ligand_sdf molecule {name or '#' + str(m_i)} ({len(symbols)} atoms, {_formula(symbols)}) "
                f"matches no ligand molecule of the topology. Ligand molecules found:\n{found}\n"
                "The file must hold the same atoms, with all hydrogens or none, and the same bonds "
                "(the atom order may differ).")


def _sym(atomic_numbers: Iterable[int]) -> list[str]:
    """Element symbols for atomic numbers (``?`` for 0)."""
    Chem, _ = _import_rdkit()
    table = Chem.GetPeriodicTable()
    return [table.GetElementSymbol(int(a)) if a > 0 else "?" for a in atomic_numbers]
