"""Shipped weights load by name, are small, and each has a model card with its measured quality."""

from __future__ import annotations

import pytest

from biomd_core.io import load_model
from biomd_core.io.checkpoint import WEIGHTS_DIR, shipped_models

SHIPPED = shipped_models()


def test_alanine_dipeptide_is_shipped():
    assert "alanine-dipeptide" in SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_loads_and_has_a_card(name):
    path = WEIGHTS_DIR / f"{name}.safetensors"
    assert path.stat().st_size < 20 * 2**20
    model = load_model(name)
    assert model.provenance.get("data"), "provenance must record the training data"
    card = (WEIGHTS_DIR / f"{name}.md").read_text()
    for section in ("## Data", "## Training", "## Measured quality", "Status:"):
        assert section in card
    if name == "alanine-dipeptide":  # equilibrium dynamics: #3's coarse-step target (the unbinding model's
        assert model.config.time.coarse_interval_ps >= 100.0  # exits last ~50 ps: its step is 5 ps)


def test_host_guest_unbinding_model_is_shipped_with_its_gate_statistics():
    assert "host-guest" in SHIPPED
    model = load_model("host-guest")
    (stats,) = model.provenance["gate_reference"].values()
    # measured with the unbinding gate's relaxation (openmm_biomd.enhanced.unbind.UNBIND_GATE: 300 L-BFGS steps)
    assert stats["minimize_iterations"] == 300 and stats["n_frames"] > 100
    assert "Success@10" in (WEIGHTS_DIR / "host-guest.md").read_text()


@pytest.mark.parametrize("name", SHIPPED)
def test_a_card_is_what_the_recipe_renders_from_its_facts(name):
    """The card's numbers come from its facts file (what ``--reevaluate`` updates), never typed in by hand."""
    import json

    from biomd_core.training.run import load_run_config
    from openmm_biomd.enhanced.recipe import unbinding_model_card
    from openmm_biomd.recipes import RECIPES, REPO, _unbinding_recipes, model_card

    facts = json.loads((WEIGHTS_DIR / f"{name}.card.json").read_text())
    unbinding = _unbinding_recipes()
    if name in unbinding:
        rendered = unbinding_model_card(facts, load_run_config(REPO / unbinding[name].train_config))
    else:
        rendered = model_card(facts, load_run_config(REPO / RECIPES[name].train_config), RECIPES[name])
    assert rendered == (WEIGHTS_DIR / f"{name}.md").read_text()
    assert load_model(name).provenance["gate_reference"][facts["gate_reference"]["key"]] == facts["gate_reference"]
