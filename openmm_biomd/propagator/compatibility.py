"""Refusing a model for a system it cannot serve.

Two rules, both overridable with ``allow_transfer=True`` (for example to try a
model before fine-tuning it):

1. every modelled atom's element, atom name and residue name must be in the
   model's vocabularies: an ``<unk>`` token means the model never saw that
   chemistry — unless the system is one the model was trained on (then the
   model learnt it with those very tokens, e.g. a ligand residue name outside
   the vocabulary);
2. a model whose provenance lists the systems it was trained on (shipped
   weights do) is only used on one of those systems, compared by
   :meth:`~biomd_core.featurize.SystemGraph.fingerprint` (raw names and bonds
   of the modelled atoms).
"""

from __future__ import annotations

from typing import Any

import numpy as np


class TopologyMismatchError(ValueError):
    """The simulation's modelled atoms do not match what the model was trained on."""


_ADVICE = ("Fine-tune the model on MD of this system (`biomd train` with `init_from`), or use it anyway with "
           "--allow-transfer (allow_transfer=True in Python; a GenerativePropagator's `selection=` can also limit the "
           "model to atoms it knows).")


def _unknown_atoms(graph) -> dict[str, list[str]]:
    """``{residue name: ["atom (what is unknown)", ...]}`` of the modelled atoms with an ``<unk>`` token."""
    fields = (("element", graph.element, graph.element_labels), ("atom name", graph.atom_name, graph.atom_name_labels),
              ("residue", graph.residue_name, graph.residue_name_labels))
    out: dict[str, list[str]] = {}
    for i in range(graph.n_atoms):
        # str(): the labels are numpy strings, whose repr under numpy 2 is "np.str_('CUC')"
        missing = [f"{what} {str(labels[i])!r}" for what, index, labels in fields if index[i] == 0]
        if missing:
            out.setdefault(str(graph.residue_name_labels[i]), []).append(
                f"{graph.atom_name_labels[i]} ({', '.join(missing)})")
    return out


def _describe_unknown(unknown: dict[str, list[str]]) -> str:
    """Residue by residue, fewest unknown atoms first (a renamed ligand before a large host), a few atoms each."""
    parts = []
    for residue, atoms in sorted(unknown.items(), key=lambda item: len(item[1])):
        shown = ", ".join(atoms[:3]) + (f", … {len(atoms) - 3} more" if len(atoms) > 3 else "")
        parts.append(f"residue {residue}: {len(atoms)} atom(s), e.g. {shown}")
    return "; ".join(parts)


def check_compatibility(model: Any, graph: Any, *, allow_transfer: bool = False) -> None:
    """Raise :class:`TopologyMismatchError` unless the model can serve ``graph`` (see the module docstring)."""
    if allow_transfer:
        return
    trained = model.provenance.get("data", {}).get("systems", [])
    prints = [s.get("fingerprint") for s in trained if s.get("fingerprint")]
    if graph.fingerprint() in prints:
        return
    unknown = _unknown_atoms(graph)
    if unknown:
        n_unknown = sum(len(atoms) for atoms in unknown.values())
        raise TopologyMismatchError(
            f"the model's vocabularies do not know {n_unknown} of the {graph.n_atoms} modelled atoms "
            f"({_describe_unknown(unknown)}). " + _ADVICE)
    if prints:
        sizes = sorted({int(s.get("n_atoms", 0)) for s in trained})
        residues = sorted(set(np.asarray(graph.residue_name_labels).tolist()))
        raise TopologyMismatchError(
            f"this simulation's modelled atoms ({graph.n_atoms} atoms; residues {', '.join(residues[:6])}"
            f"{'…' if len(residues) > 6 else ''}) match none of the {len(prints)} system(s) the model was "
            f"trained on (modelled atoms: {', '.join(map(str, sizes))}). " + _ADVICE)
