"""``SystemGraph``: the per-atom features and bonds of the modelled atoms, and ``featurize``.

``featurize`` turns a topology (mdtraj, OpenMM, or a PDB path) into a
:class:`SystemGraph` of numpy arrays for the *modelled* atoms (by default the
solute: everything but water and ions). Everything is numpy so the graph can be
built, saved and compared without torch; :meth:`SystemGraph.to_torch` converts
it for the network.

OpenMM topologies are converted with ``mdtraj.Topology.from_openmm`` (mdtraj
imports OpenMM there, ``biomd_core`` never does).

Design choices:

* Roles come from residue names and composition (:mod:`.roles`); anything
  unknown is a ligand, so every topology featurises.
* Chemistry features are computed on the *full* bonded graph and then
  selected, so an atom's features do not depend on the selection (a carbon's
  hydrogen count is the same with ``selection="heavy"``). Non-ligand atoms get
  connectivity-rule features, ligands RDKit-perceived ones (:mod:`.ligand`).
* Coordinates are optional and only repair bonds a structure file left out
  (ligands without CONECT records, hydrogens the residue templates did not
  know), always with a warning.
* :meth:`SystemGraph.fingerprint` hashes raw names, not vocabulary indices, so
  it detects a topology/model mismatch even for tokens that map to ``<unk>``.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .ligand import N_CHEM_FEATURES, connectivity_features, ligand_chemistry
from .roles import ROLE_INDEX, ROLES, residue_role
from .vocab import DEFAULT_VOCABULARIES, Vocabularies

_LIGAND = ROLE_INDEX["ligand"]
_SOLVENT = ROLE_INDEX["solvent"]
_ION = ROLE_INDEX["ion"]
_PROTEIN = ROLE_INDEX["protein"]

_INT_FIELDS = ("atom_indices", "element", "atom_name", "residue_name", "role", "residue_index")


@dataclass(frozen=True, eq=False)
class SystemGraph:
    """Features of the modelled atoms of a molecular system (numpy, read-only).

    ``N`` is the number of modelled atoms, ``E`` the number of bonds between
    them, ``F = len(CHEM_FEATURES)``. Atoms are in topology order.

    Attributes
    ----------
    atom_indices : np.ndarray
        ``[N]`` int64, index of each modelled atom in the full topology (increasing).
    element, atom_name, residue_name : np.ndarray
        ``[N]`` int64 vocabulary indices (0 = ``<unk>``) into ``vocabs``.
    role : np.ndarray
        ``[N]`` int64 index into :data:`~biomd_core.featurize.ROLES`.
    residue_index : np.ndarray
        ``[N]`` int64, 0-based consecutive index of the residue among residues
        with modelled atoms.
    chem : np.ndarray
        ``[N, F]`` float32 chemistry features, columns :data:`CHEM_FEATURES`.
    bonds : np.ndarray
        ``[E, 2]`` int64 bonds with both atoms modelled, indices 0..N-1, ``i < j``,
        each once, sorted.
    chiral_neighbors : np.ndarray
        ``[N, 3]`` int64: for atoms with >= 3 modelled bonded neighbours, the first
        three neighbours in topology order (indices 0..N-1); -1 otherwise. The sign
        of the triple product of (neighbour - atom) vectors distinguishes mirror
        images.
    masses : np.ndarray
        ``[N]`` float32 atomic masses, Da (0 for virtual sites / unknown elements).
    element_labels, atom_name_labels, residue_name_labels : np.ndarray
        ``[N]`` str, the raw symbols and names (for messages, output files and
        :meth:`fingerprint`, which must not depend on the vocabularies).
    n_total_atoms : int
        Number of atoms in the full topology.
    vocabs : Vocabularies
        Vocabularies the index arrays refer to.
    """

    atom_indices: np.ndarray
    element: np.ndarray
    atom_name: np.ndarray
    residue_name: np.ndarray
    role: np.ndarray
    residue_index: np.ndarray
    chem: np.ndarray
    bonds: np.ndarray
    chiral_neighbors: np.ndarray
    masses: np.ndarray
    element_labels: np.ndarray
    atom_name_labels: np.ndarray
    residue_name_labels: np.ndarray
    n_total_atoms: int
    vocabs: Vocabularies = field(default=DEFAULT_VOCABULARIES)

    def __post_init__(self):
        n = len(self.atom_indices)
        casts = {**{k: np.int64 for k in _INT_FIELDS}, "chem": np.float32, "bonds": np.int64,
                 "chiral_neighbors": np.int64, "masses": np.float32}
        shapes = {**{k: (n,) for k in _INT_FIELDS}, "chem": (n, N_CHEM_FEATURES), "masses": (n,),
                  "chiral_neighbors": (n, 3), "element_labels": (n,), "atom_name_labels": (n,),
                  "residue_name_labels": (n,)}
        for name in casts.keys() | shapes.keys():
            arr = getattr(self, name)
            arr = np.array(arr, dtype=casts.get(name, str), copy=True)
            if name == "bonds":
                arr = arr.reshape(-1, 2)
            elif arr.shape != shapes[name]:
                raise ValueError(f"SystemGraph.{name} has shape {arr.shape}, expected {shapes[name]}")
            arr.setflags(write=False)  # frozen means frozen: the arrays too
            object.__setattr__(self, name, arr)
        if len(self.bonds) and (self.bonds.min() < 0 or self.bonds.max() >= n):
            raise ValueError("SystemGraph.bonds refers to atoms outside 0..N-1")

    # -- sizes and masks --------------------------------------------------
    @property
    def n_atoms(self) -> int:
        """Number of modelled atoms ``N``."""
        return len(self.atom_indices)

    @property
    def n_bonds(self) -> int:
        """Number of bonds ``E`` between modelled atoms."""
        return len(self.bonds)

    @property
    def ligand_mask(self) -> np.ndarray:
        """``[N]`` bool, atoms with the ligand role."""
        return self.role == _LIGAND

    @property
    def vocab_sizes(self) -> dict[str, int]:
        """Embedding-table sizes of the vocabularies used."""
        return self.vocabs.sizes

    # -- conversion -------------------------------------------------------
    def to_torch(self, device: Any = None) -> dict[str, Any]:
        """The arrays as torch tensors (int64 indices, float32 features).

        Returns
        -------
        dict[str, torch.Tensor]
            ``atom_indices, element, atom_name, residue_name, role,
            residue_index`` ``[N]`` int64; ``chem`` ``[N, F]`` float32; ``bonds``
            ``[E, 2]`` int64; ``chiral_neighbors`` ``[N, 3]`` int64; ``masses``
            ``[N]`` float32 (Da); ``ligand_mask`` ``[N]`` bool.
        """
        import torch

        out = {k: torch.as_tensor(np.array(getattr(self, k)), dtype=torch.int64, device=device)
               for k in (*_INT_FIELDS, "bonds", "chiral_neighbors")}
        out["chem"] = torch.as_tensor(np.array(self.chem), dtype=torch.float32, device=device)
        out["masses"] = torch.as_tensor(np.array(self.masses), dtype=torch.float32, device=device)
        out["ligand_mask"] = torch.as_tensor(np.array(self.ligand_mask), dtype=torch.bool, device=device)
        return out

    def fingerprint(self) -> str:
        """Stable sha256 hex digest of elements, atom names, residue names and bonds.

        Independent of the vocabularies and of atoms outside the selection, so a
        model trained on a solute can be checked against a topology with a
        different amount of water.
        """
        h = hashlib.sha256(b"biomd-systemgraph-v1\n")
        h.update(f"{self.n_atoms}\n".encode())
        for e, a, r in zip(self.element_labels.tolist(), self.atom_name_labels.tolist(),
                           self.residue_name_labels.tolist()):
            h.update(f"{e}|{a}|{r}\n".encode())
        h.update(np.ascontiguousarray(self.bonds, dtype="<i8").tobytes())
        return h.hexdigest()

    def __repr__(self) -> str:
        counts = np.bincount(self.role, minlength=len(ROLES))
        roles = ", ".join(f"{ROLES[i]}={c}" for i, c in enumerate(counts) if c)
        return (f"SystemGraph(n_atoms={self.n_atoms} of {self.n_total_atoms}, n_bonds={self.n_bonds}, "
                f"residues={int(self.residue_index.max()) + 1 if self.n_atoms else 0}, {roles})")


# ---------------------------------------------------------------------------
# Topology input
# ---------------------------------------------------------------------------

def _load_topology(topology: Any, positions_nm: Any):
    """mdtraj Topology and optional positions ``[n, 3]`` nm from any supported input."""
    import mdtraj as md

    positions = None
    if isinstance(topology, (str, os.PathLike)):
        traj = md.load(os.fspath(topology))  # PDB: standard bonds + CONECT records
        topology, positions = traj.topology, traj.xyz[0]
    elif isinstance(topology, md.Trajectory):
        topology, positions = topology.topology, topology.xyz[0]
    elif not isinstance(topology, md.Topology):
        if callable(getattr(topology, "atoms", None)) and callable(getattr(topology, "bonds", None)):
            topology = md.Topology.from_openmm(topology)  # an openmm.app.Topology (duck-typed)
        else:
            raise TypeError("featurize needs an mdtraj.Topology, an openmm.app.Topology, an "
                            f"mdtraj.Trajectory or a path to a structure file, got {type(topology)!r}")
    if positions_nm is not None:
        positions = np.asarray(positions_nm, dtype=np.float64)
        if positions.shape != (topology.n_atoms, 3):
            raise ValueError(f"positions_nm has shape {positions.shape}, expected ({topology.n_atoms}, 3) "
                             "(numpy, nm, one row per topology atom)")
    return topology, (None if positions is None else np.asarray(positions, dtype=np.float64))


@dataclass
class _AtomTable:
    """Flat per-atom arrays of the full topology (internal)."""

    symbols: list[str | None]
    atomic_numbers: np.ndarray   # [n] int64, 0 unknown / virtual site
    masses: np.ndarray           # [n] float64 Da
    names: list[str]
    res_names: list[str]         # per residue
    res_of: np.ndarray           # [n] int64 topology residue index
    bonds: np.ndarray            # [E, 2] int64, i < j, unique, sorted

    @property
    def n(self) -> int:
        return len(self.names)


def _atom_table(top) -> _AtomTable:
    symbols, z, masses, names, res_of = [], [], [], [], []
    for atom in top.atoms:
        el = atom.element
        real = el is not None and getattr(el, "atomic_number", 0) > 0
        symbols.append(el.symbol if real else None)
        z.append(el.atomic_number if real else 0)
        masses.append(el.mass if real else 0.0)
        names.append(atom.name.strip())
        res_of.append(atom.residue.index)
    bonds = np.array([(a.index, b.index) for a, b in top.bonds], dtype=np.int64).reshape(-1, 2)
    return _AtomTable(symbols, np.array(z, dtype=np.int64), np.array(masses, dtype=np.float64), names,
                      [r.name.strip() for r in top.residues], np.array(res_of, dtype=np.int64),
                      _normalise_bonds(bonds))


def _normalise_bonds(bonds: np.ndarray) -> np.ndarray:
    """``[E, 2]`` with i < j, no self-bonds, no duplicates, sorted."""
    bonds = np.sort(np.asarray(bonds, dtype=np.int64).reshape(-1, 2), axis=1)
    bonds = bonds[bonds[:, 0] != bonds[:, 1]]
    return np.unique(bonds, axis=0) if len(bonds) else bonds


# ---------------------------------------------------------------------------
# Roles and bond repair
# ---------------------------------------------------------------------------

def _residue_roles(table: _AtomTable, ligand_residues: Sequence[str | int] | None) -> np.ndarray:
    """``[n_residues]`` role index per residue, with ``ligand_residues`` forced to ligand."""
    n_res = len(table.res_names)
    members: list[list[str | None]] = [[] for _ in range(n_res)]
    for r, sym in zip(table.res_of.tolist(), table.symbols):
        members[r].append(sym)
    roles = np.array([residue_role(name, els) for name, els in zip(table.res_names, members)], dtype=np.int64)
    if ligand_residues is not None:
        names = np.array(table.res_names, dtype=object)
        for item in ([ligand_residues] if isinstance(ligand_residues, (str, int)) else ligand_residues):
            hit = (np.array([int(item)]) if isinstance(item, (int, np.integer))
                   else np.flatnonzero(names == str(item).strip()))
            if len(hit) == 0 or hit.max() >= n_res or hit.min() < 0:
                raise ValueError(f"ligand_residues entry {item!r} matches no residue (give residue names or "
                                 f"0-based residue indices < {n_res}); residue names present: "
                                 f"{sorted(set(table.res_names))[:30]}")
            roles[hit] = _LIGAND
    return roles


def _repair_bonds(table: _AtomTable, atom_role: np.ndarray, positions: np.ndarray | None) -> np.ndarray:
    """Add bonds a structure file left out, from coordinates when we have them.

    Two cases matter for MD inputs read from PDB files: ligand residues without
    CONECT records (no bonds at all) and hydrogens whose names the standard
    residue templates did not know (no bond). Without coordinates we can only warn.
    """
    bonds = table.bonds
    degree = np.bincount(bonds.ravel(), minlength=table.n)
    res_size = np.bincount(table.res_of)
    new: list[np.ndarray] = []

    # 1. multi-atom ligand residues with no bond at all
    lig_res = np.unique(table.res_of[(atom_role == _LIGAND) & (res_size[table.res_of] > 1)])
    res_deg = np.bincount(table.res_of, weights=degree, minlength=len(res_size))
    bare = [r for r in lig_res.tolist() if res_deg[r] == 0]
    for r in bare:
        atoms = np.flatnonzero(table.res_of == r)
        if positions is None:
            warnings.warn(f"ligand residue {table.res_names[r]} (index {r}) has no bonds and no coordinates "
                          "were given to infer them; pass positions_nm, a PDB with CONECT records, or an "
                          "OpenMM topology", stacklevel=3)
            continue
        inferred = _bonds_from_distances(atoms, table.atomic_numbers, positions)
        warnings.warn(f"ligand residue {table.res_names[r]} (index {r}) had no bonds; inferred "
                      f"{len(inferred)} from interatomic distances (check them, or give CONECT records)",
                      stacklevel=3)
        new.append(inferred)
    if new:
        bonds = _normalise_bonds(np.concatenate([bonds, *new]))
        degree = np.bincount(bonds.ravel(), minlength=table.n)

    # 2. hydrogens without a bond (in residues of more than one atom)
    lonely = np.flatnonzero((table.atomic_numbers == 1) & (degree == 0) & (res_size[table.res_of] > 1))
    if len(lonely):
        if positions is None:
            warnings.warn(f"{len(lonely)} hydrogen(s) have no bond (first: {table.names[lonely[0]]} in "
                          f"{table.res_names[table.res_of[lonely[0]]]}); pass positions_nm to attach them "
                          "to their nearest heavy atom", stacklevel=3)
        else:
            extra = _attach_hydrogens(lonely, table, positions)
            bonds = _normalise_bonds(np.concatenate([bonds, extra]))
    return bonds


def _attach_hydrogens(h_atoms: np.ndarray, table: _AtomTable, positions: np.ndarray) -> np.ndarray:
    """``[k, 2]`` bonds from each H to the nearest heavy atom of its residue (within 0.15 nm)."""
    out = []
    heavy = np.flatnonzero(table.atomic_numbers > 1)
    order = np.argsort(table.res_of[heavy], kind="stable")
    heavy_by_res = heavy[order]
    bounds = np.searchsorted(table.res_of[heavy_by_res], np.arange(len(table.res_names) + 1))
    for h in h_atoms.tolist():
        r = table.res_of[h]
        cand = heavy_by_res[bounds[r]:bounds[r + 1]]
        if len(cand) == 0:
            continue
        d = np.linalg.norm(positions[cand] - positions[h], axis=1)
        if d.min() < 0.15:
            out.append((h, int(cand[np.argmin(d)])))
    if len(out) < len(h_atoms):
        warnings.warn(f"{len(h_atoms) - len(out)} hydrogen(s) have no bond and no heavy atom of their "
                      "residue within 0.15 nm", stacklevel=4)
    return np.array(out, dtype=np.int64).reshape(-1, 2)


def _bonds_from_distances(atoms: np.ndarray, atomic_numbers: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Bonds where distance < r_cov(i) + r_cov(j) + 0.045 nm (Open Babel's rule)."""
    from .ligand import _import_rdkit

    Chem, _ = _import_rdkit()
    table = Chem.GetPeriodicTable()
    z = atomic_numbers[atoms]
    radius = np.array([table.GetRcovalent(int(a)) / 10.0 if a > 0 else 0.0 for a in z])  # Angstrom -> nm
    xyz = positions[atoms]
    dist = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
    ok = (dist < radius[:, None] + radius[None] + 0.045) & (dist > 0.04)
    i, j = np.nonzero(np.triu(ok, 1))
    return np.stack([atoms[i], atoms[j]], axis=1)


# ---------------------------------------------------------------------------
# Selection
# ---------------------------------------------------------------------------

def _solute(ctx) -> np.ndarray:
    return (ctx["role"] != _SOLVENT) & (ctx["role"] != _ION)


#: Named selections -> boolean mask over the full topology.
SELECTIONS: dict[str, Callable[[dict], np.ndarray]] = {
    "all": lambda ctx: np.ones(len(ctx["role"]), dtype=bool),
    "solute": _solute,
    "protein+ligand": lambda ctx: (ctx["role"] == _PROTEIN) | (ctx["role"] == _LIGAND),
    "heavy": lambda ctx: _solute(ctx) & (ctx["atomic_numbers"] != 1),
}


def _resolve_selection(selection: Any, top, role: np.ndarray, atomic_numbers: np.ndarray) -> np.ndarray:
    """Sorted ``[N]`` int64 topology indices of the modelled atoms."""
    n = len(role)
    if isinstance(selection, str):
        if selection in SELECTIONS:
            idx = np.flatnonzero(SELECTIONS[selection]({"role": role, "atomic_numbers": atomic_numbers}))
        else:
            try:
                idx = np.asarray(top.select(selection), dtype=np.int64)
            except Exception as exc:  # mdtraj raises its own parse errors
                raise ValueError(f"bad selection {selection!r}: not one of {sorted(SELECTIONS)} and not a "
                                 f"valid mdtraj selection ({exc})") from exc
    else:
        arr = np.asarray(selection)
        if arr.dtype == bool:
            if arr.shape != (n,):
                raise ValueError(f"boolean selection has shape {arr.shape}, expected ({n},)")
            idx = np.flatnonzero(arr)
        elif arr.ndim == 1 and (arr.size == 0 or np.issubdtype(arr.dtype, np.integer)):
            idx = arr.astype(np.int64)
            if len(idx) and (idx.min() < 0 or idx.max() >= n):
                raise ValueError(f"selection indices must lie in 0..{n - 1}")
            if len(np.unique(idx)) != len(idx):
                raise ValueError("selection indices contain duplicates")
        else:
            raise TypeError("selection must be a name, an mdtraj selection string, integer indices or a "
                            f"boolean mask, got {type(selection)!r}")
    idx = np.unique(idx)  # modelled atoms stay in topology order
    if len(idx) == 0:
        raise ValueError(f"selection {selection!r} selects no atoms (topology has {n} atoms, roles present: "
                         f"{sorted({ROLES[r] for r in np.unique(role).tolist()})})")
    return idx


# ---------------------------------------------------------------------------
# Assembly
# ---------------------------------------------------------------------------

def _chiral_neighbors(n: int, bonds: np.ndarray) -> np.ndarray:
    """``[n, 3]`` first three neighbours (ascending index) of atoms with >= 3 neighbours, else -1."""
    out = np.full((n, 3), -1, dtype=np.int64)
    if len(bonds) == 0:
        return out
    src = np.concatenate([bonds[:, 0], bonds[:, 1]])
    dst = np.concatenate([bonds[:, 1], bonds[:, 0]])
    order = np.lexsort((dst, src))
    dst = dst[order]
    counts = np.bincount(src, minlength=n)
    starts = np.cumsum(counts) - counts
    centres = np.flatnonzero(counts >= 3)
    out[centres] = dst[starts[centres, None] + np.arange(3)]
    return out


def featurize(topology: Any, *, selection: Any = "solute", ligand_sdf: Any = None,
              ligand_residues: Sequence[str | int] | None = None, positions_nm: np.ndarray | None = None,
              vocabs: Vocabularies | None = None) -> SystemGraph:
    """Build the :class:`SystemGraph` of a molecular system.

    Parameters
    ----------
    topology
        An ``mdtraj.Topology``, an ``openmm.app.Topology`` (anything with
        ``atoms()`` and ``bonds()`` methods), an ``mdtraj.Trajectory`` (frame 0
        gives positions) or a path to a structure file such as a PDB (loaded with
        mdtraj, which adds standard-residue bonds and reads CONECT records).
    selection
        Modelled atoms: ``"solute"`` (default; all but water and ions), ``"all"``,
        ``"protein+ligand"``, ``"heavy"`` (solute heavy atoms), any other string
        as an mdtraj selection, or integer indices / a boolean mask over the
        topology's atoms. Indices are sorted and must be unique.
    ligand_sdf
        SDF/mol/mol2 path, RDKit molecule, or a list of them, giving bond orders
        and charges of ligands. Each file molecule is matched to every ligand
        molecule of the topology with the same atoms and bond graph; a file
        molecule that matches none raises ``ValueError``. Unmatched ligands get
        their bond orders perceived from connectivity.
    ligand_residues
        Residue names or 0-based residue indices to treat as ligand whatever
        their name (e.g. a modified amino acid or a cofactor with a clashing name).
    positions_nm
        ``[n_total_atoms, 3]`` float, nm. Only used to repair missing bonds
        (ligands without CONECT records, unnamed hydrogens); chemistry comes
        from bonds alone.
    vocabs
        Vocabularies to index names with (a checkpoint's saved ones);
        default :data:`~biomd_core.featurize.DEFAULT_VOCABULARIES`.

    Returns
    -------
    SystemGraph

    Raises
    ------
    ValueError
        If the selection selects no atoms, ``ligand_residues`` names no residue,
        or a ``ligand_sdf`` molecule matches no ligand.
    """
    vocabs = vocabs or DEFAULT_VOCABULARIES
    top, positions = _load_topology(topology, positions_nm)
    table = _atom_table(top)
    atom_role = _residue_roles(table, ligand_residues)[table.res_of]
    bonds_all = _repair_bonds(table, atom_role, positions)
    sel = _resolve_selection(selection, top, atom_role, table.atomic_numbers)

    # Chemistry on the full graph, so it does not depend on the selection (degree
    # and H count of a heavy atom are the same with selection="heavy").
    is_lig = atom_role == _LIGAND
    same_res = table.res_of[bonds_all[:, 0]] == table.res_of[bonds_all[:, 1]]
    ring_bonds = bonds_all[same_res | (is_lig[bonds_all[:, 0]] & is_lig[bonds_all[:, 1]])]
    chem = connectivity_features(table.atomic_numbers, bonds_all, ring_bonds)
    res_names = np.array(table.res_names, dtype=object)

    def describe(idx: np.ndarray) -> str:
        names = list(dict.fromkeys(res_names[np.unique(table.res_of[idx])].tolist()))
        return f"{'+'.join(names[:5])}{'+...' if len(names) > 5 else ''} (atoms {int(idx[0])}..{int(idx[-1])})"

    chem = ligand_chemistry(table.atomic_numbers, bonds_all, np.flatnonzero(is_lig), chem,
                            describe=describe, ligand_sdf=ligand_sdf, only_atoms=sel)

    remap = np.full(table.n, -1, dtype=np.int64)
    remap[sel] = np.arange(len(sel))
    kept = bonds_all[(remap[bonds_all[:, 0]] >= 0) & (remap[bonds_all[:, 1]] >= 0)]
    bonds = _normalise_bonds(remap[kept])  # remap is monotonic, so i < j and order survive
    symbols = [table.symbols[i] or "" for i in sel.tolist()]
    names = [table.names[i] for i in sel.tolist()]
    rnames = res_names[table.res_of[sel]].tolist()
    return SystemGraph(
        atom_indices=sel,
        element=vocabs.element.indices(symbols),
        atom_name=vocabs.atom_name.indices(names),
        residue_name=vocabs.residue_name.indices(rnames),
        role=atom_role[sel],
        residue_index=np.unique(table.res_of[sel], return_inverse=True)[1].reshape(-1),
        chem=chem[sel],
        bonds=bonds,
        chiral_neighbors=_chiral_neighbors(len(sel), bonds),
        masses=table.masses[sel],
        element_labels=np.array(symbols, dtype=str),
        atom_name_labels=np.array(names, dtype=str),
        residue_name_labels=np.array(rnames, dtype=str),
        n_total_atoms=table.n,
        vocabs=vocabs,
    )
