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


_ADVICE = ("Fine-tune the model on MD of this system (`biomd train` with `init_from`), choose the atoms it "
           "knows with `selection=`, or pass allow_transfer=True (`biomd run --allow-transfer`) to use it anyway.")


def _unknown_atoms(graph) -> list[str]:
    fields = (("element", graph.element, graph.element_labels), ("atom name", graph.atom_name, graph.atom_name_labels),
              ("residue", graph.residue_name, graph.residue_name_labels))
    out = []
    for i in range(graph.n_atoms):
        # str(): the labels are numpy strings, whose repr under numpy 2 is "np.str_('CUC')"
        missing = [f"{what} {str(labels[i])!r}" for what, index, labels in fields if index[i] == 0]
        if missing:
            out.append(f"{graph.residue_name_labels[i]}:{graph.atom_name_labels[i]} ({', '.join(missing)})")
    return out


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
        shown = "; ".join(unknown[:8]) + (f"; … {len(unknown) - 8} more" if len(unknown) > 8 else "")
        raise TopologyMismatchError(
            f"the model's vocabularies do not know {len(unknown)} of the {graph.n_atoms} modelled atoms: {shown}. "
            + _ADVICE)
    if prints:
        sizes = sorted({int(s.get("n_atoms", 0)) for s in trained})
        residues = sorted(set(np.asarray(graph.residue_name_labels).tolist()))
        raise TopologyMismatchError(
            f"this simulation's modelled atoms ({graph.n_atoms} atoms; residues {', '.join(residues[:6])}"
            f"{'…' if len(residues) > 6 else ''}) match none of the {len(prints)} system(s) the model was "
            f"trained on (modelled atoms: {', '.join(map(str, sizes))}). " + _ADVICE)
