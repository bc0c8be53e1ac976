"""``benchmarks/gpu_session.py``'s sizing and the recipe it ran: the committed T4L recipe and config are what it made.

The GPU session itself needs a GPU; what it decided from its measurements does not, and must match what
``biomd reproduce-weights t4l-pxylene`` runs, or the shipped weights could not be reproduced.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _gpu_session():
    spec = importlib.util.spec_from_file_location("gpu_session", REPO / "benchmarks" / "gpu_session.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_h200_measurements_size_the_plan_that_was_run():
    session = _gpu_session()
    recorded = json.loads((REPO / "benchmarks/results/gpu_session_h200.json").read_text())["first_call"]["plan"]
    plan = session.size_plan(recorded["rate_each_ns_day"], recorded["windows_per_s"], md_budget_s=100.0,
                             train_budget_s=120.0, batch=4, scale=1.0)
    assert plan == {"time_ps": recorded["time_ps"], "steps": recorded["steps"]} == {"time_ps": 400, "steps": 1000}
    # small rates still give a trainable run (a coarse window needs 21 frames) and a few steps
    assert session.size_plan(1.0, 0.1, 100.0, 120.0, 4, 1.0) == {"time_ps": 30, "steps": 20}


def test_the_committed_recipe_and_config_are_what_the_session_ran(tmp_path):
    from biomd_core.training.run import load_run_config
    from openmm_biomd.recipes import RECIPES, _plans

    session = _gpu_session()
    shipped = RECIPES["t4l-pxylene"]
    config = REPO / shipped.train_config
    assert _plans(session.sized_recipe("t4l-pxylene", 400, config)) == _plans(shipped)

    written = tmp_path / "examples" / "configs" / config.name
    runs = tmp_path / "runs" / "data"
    session.write_config(written, [runs / "t4l-pxylene", *[runs / f"t4l-pxylene-seed{s}" for s in (300, 400, 500)]],
                         steps=1000, batch=4)
    assert written.read_text() == config.read_text()
    assert load_run_config(config).training.steps == 1000
