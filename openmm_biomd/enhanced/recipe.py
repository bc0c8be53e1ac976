"""Reproducing the shipped unbinding weights (``biomd reproduce-weights host-guest``).

1. **Training data**: well-tempered metadynamics dissociation campaigns on the
   ligand–pocket centroid distance (:func:`~openmm_biomd.data.generate_dissociation`),
   strongly biased so that each seed leaves within ~100 ps; every seed is one
   training trajectory from the bound pose out of the pocket.
2. **Held-out campaign** (another master seed, never trained on): its frame-0
   bound poses are the evaluation's starting frames and its paths the
   reference paths for the path RMSD.
3. **Training** with ``examples/configs/host-guest-unbind-tiny.yaml``.
4. **Gate statistics** (decoupled-ligand energy, :func:`~.unbind.attach_unbind_gate_reference`)
   measured on every frame of the held-out paths and stored in the checkpoint.
5. **Evaluation**: ``attempts_per_start`` generated paths from each held-out
   start: Success@1, Success@10, time to the first path, path RMSD to the
   nearest held-out metadynamics path.

Every step resumes (the data and unbinding runs are resumable; training
resumes from its run directory).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..data import generate_dissociation
from .path_metrics import campaign_paths
from .unbind import attach_unbind_gate_reference


@dataclass(frozen=True)
class MetadynamicsPlan:
    """One dissociation campaign (see :func:`~openmm_biomd.data.generate_dissociation`)."""

    seed: int
    n_seeds: int
    max_time: str = "2ns"
    height_kj_mol: float = 5.0
    bias_factor: float = 30.0
    deposit_interval_ps: float = 0.5
    after_exit_ps: float = 0.0

    def kwargs(self) -> dict:
        from ..data.md import parse_time_ps

        return {"n_seeds": self.n_seeds, "max_time_ps": parse_time_ps(self.max_time), "seed": self.seed,
                "height_kj_mol": self.height_kj_mol, "bias_factor": self.bias_factor,
                "deposit_interval_ps": self.deposit_interval_ps, "after_exit_ps": self.after_exit_ps}


@dataclass(frozen=True)
class UnbindingRecipe:
    """How a shipped unbinding model is made."""

    name: str
    system: str
    train_campaigns: tuple[MetadynamicsPlan, ...]
    heldout_campaign: MetadynamicsPlan
    train_config: str
    #: further training stages, each fine-tuning the previous stage's weights (their ``init_from`` is replaced)
    finetune_configs: tuple[str, ...] = ()
    n_eval_starts: int = 2
    attempts_per_start: int = 10
    max_path_time_ps: float = 100.0
    margin_nm: float = 0.5
    notes: list[str] = field(default_factory=list)


def evaluate_unbinding(unbinder, starts: np.ndarray, references: list[np.ndarray], out: Path,
                       attempts_per_start: int, seed: int = 1) -> dict:
    """Generated paths from held-out starts → success, Success@k, timing, path RMSD to metadynamics.

    ``references`` are whole-system paths (:func:`campaign_paths`); they are compared on the modelled atoms.
    """
    from .path_metrics import unbinding_metrics
    from .unbind import UnbindSettings, unbind

    settings = UnbindSettings(**{**asdict(unbinder.settings), "attempts": attempts_per_start * len(starts),
                                 "seed": seed})
    unbinder.settings = settings
    summary = unbind(unbinder.loaded, unbinder.model, out, unbinder=unbinder, starts_nm=starts)
    metrics = unbinding_metrics(out, [ref[:, unbinder.modelled] for ref in references])
    metrics["path_rmsd_to_nearest_metad_nm"] = metrics.pop("path_rmsd_to_nearest_reference_nm")
    return {**metrics, "n_starts": int(len(starts)),
            "mean_wall_s_per_attempt": summary["generation_wall_s"] / max(summary["attempts"], 1),
            "sampler": f"{unbinder.generator.sampler.solver.describe()}, physics steering {settings.steering:g}",
            "gate_relaxation_steps": unbinder.gate.config.minimize_iterations,
            "gate_early_accept_steps": list(unbinder.gate.config.relaxation_stages[:-1])}


def reproduce_unbinding(recipe: UnbindingRecipe, root: Path, progress: bool = True, parallel_md: bool = False,
                        stop_after_training: bool = False) -> dict:
    """Run an :class:`UnbindingRecipe` into ``root``; returns the model card's facts, plus
    ``model_path`` and the rendered ``card``.

    ``parallel_md`` runs the campaigns (training and held-out) side by side, one process each.
    ``stop_after_training`` ends after the training and returns the facts so far (no ``quality``, no
    ``card``); a later call in the same ``root`` finds every campaign and stage finished (each resumes
    from its own files) and goes on to the gate statistics, the evaluation and the card.
    """
    from ..recipes import hardware, train_stages

    t0 = time.perf_counter()
    run_campaigns(recipe, root, parallel_md)
    md_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    model_path, steps, training = train_stages(recipe.name, recipe.train_config, recipe.finetune_configs, root,
                                               progress)
    train_s = time.perf_counter() - t0
    facts = {
        "name": recipe.name,
        "system": recipe.system,
        "train_config": " then ".join((recipe.train_config, *recipe.finetune_configs)),
        "training": {"steps": sum(steps), "steps_per_stage": steps, "wall_s_last_session": round(train_s, 1),
                     "samples_per_s": training.get("samples_per_s")},
        "md_generation_wall_s_last_session": round(md_s, 1),
        # this call's: a later call that finds the campaigns finished runs none (and says False)
        "md_in_parallel_last_session": parallel_md,
        "hardware": hardware(),
    }
    if stop_after_training:
        return {**facts, "model_path": str(model_path)}
    return measure_new_stages(recipe, facts, model_path, root)


def make_training_campaigns(recipe: UnbindingRecipe, root: Path) -> None:
    """Generate (or resume) the recipe's training campaigns into ``root/data/NAME-diss-SEED``."""
    for plan in recipe.train_campaigns:
        generate_dissociation(recipe.system, _campaign_dir(recipe, root, plan), **plan.kwargs())


def run_campaigns(recipe: UnbindingRecipe, root: Path, parallel: bool = False) -> None:
    """Generate (or resume) the training campaigns and the held-out one; with ``parallel`` side by side, one
    process each (a fresh interpreter per campaign: no forked OpenMM or CUDA state)."""
    if not parallel:
        make_training_campaigns(recipe, root)
        _heldout_campaign(recipe, root)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    jobs = [(_campaign_dir(recipe, root, plan), plan) for plan in recipe.train_campaigns]
    jobs.append((_heldout_dir(recipe, root), recipe.heldout_campaign))
    with ProcessPoolExecutor(len(jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_campaign, [recipe.system] * len(jobs), *zip(*jobs)))


def _campaign(system: str, out: Path, plan: MetadynamicsPlan) -> None:
    generate_dissociation(system, out, **plan.kwargs())


def _campaign_dir(recipe: UnbindingRecipe, root: Path, plan: MetadynamicsPlan) -> Path:
    return root / "data" / f"{recipe.name}-diss-{plan.seed}"


def _heldout_dir(recipe: UnbindingRecipe, root: Path) -> Path:
    return root / "data" / f"{recipe.name}-heldout"


def measure_new_stages(recipe: UnbindingRecipe, facts: dict, model_path: Path, root: Path) -> dict:
    """New weights' gate statistics (stored in ``model_path``) and quality, and their card.

    ``facts`` holds the training facts; the data, gate, quality and notes facts are set here.  Returns
    what :func:`write_unbinding_card` returns.
    """
    heldout_dir, heldout = _heldout_campaign(recipe, root)
    references = campaign_paths(heldout_dir)
    gate_reference = _measure_gate_reference(recipe, model_path, heldout_dir, references)
    facts = {
        **facts,
        "train_campaigns": [asdict(p) for p in recipe.train_campaigns],
        "heldout_campaign": heldout,
        "quality": measure_unbinding(recipe, model_path, references, root),
        "gate_reference": gate_reference,
        "notes": recipe.notes,
    }
    return write_unbinding_card(recipe, facts, model_path, root)


def reevaluate_unbinding(recipe: UnbindingRecipe, facts: dict, model_path: Path, root: Path) -> dict:
    """Measure installed weights again (new unbinding attempts from the held-out starts) and re-render
    their card; the training facts are kept, and so are the gate statistics stored in the weights unless
    the unbinding gate has changed since (another relaxation or energy model): then they are measured
    again on the held-out paths, into a copy of the weights in ``root/eval/NAME`` (what installing
    copies), the installed file untouched.  The held-out campaign is regenerated if missing (resumable,
    same seeds)."""
    heldout_dir, heldout = _heldout_campaign(recipe, root)
    references = campaign_paths(heldout_dir)
    remeasured_gate = not _gate_reference_current(recipe, model_path)
    if remeasured_gate:
        copy = root / "eval" / recipe.name / "model.safetensors"
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model_path, copy)
        model_path = copy
        facts = {**facts, "gate_reference": _measure_gate_reference(recipe, model_path, heldout_dir, references)}
    quality = measure_unbinding(recipe, model_path, references, root)
    said = (f"Quality re-measured on {time.strftime('%Y-%m-%d')} by `biomd reproduce-weights {recipe.name} "
            f"--reevaluate` (sampler {quality['sampler']}; gate relaxation {_relaxation_words(quality)}")
    history = facts.get("facts_history", "")
    if said not in history:  # a re-run of the same re-evaluation that day says it once
        changed = "; the gate had changed, so its statistics were measured again" if remeasured_gate else ""
        history = f"{history} {said}{changed}).".strip()
    facts = {**facts, "heldout_campaign": heldout, "notes": recipe.notes, "quality": quality,
             "facts_history": history}
    return write_unbinding_card(recipe, facts, model_path, root)


def _gate_reference_current(recipe: UnbindingRecipe, model_path: Path) -> bool:
    """Whether the weights store gate statistics measured with today's unbinding gate."""
    from biomd_core.io import load_model

    from ..data.systems import get_system
    from ..propagator.gate import EnergyReference
    from .unbind import UNBIND_GATE, Unbinder

    model = load_model(model_path)
    gate = Unbinder(get_system(recipe.system).load(), model,
                    gate_config=replace(UNBIND_GATE, check_energy=False)).gate
    stored = model.provenance.get("gate_reference", {}).get(gate.solute.key)
    relaxation = None if stored is None else EnergyReference.from_dict(stored).minimize_iterations
    return relaxation == UNBIND_GATE.minimize_iterations


def _measure_gate_reference(recipe: UnbindingRecipe, model_path: Path, heldout_dir: Path,
                            references: list[np.ndarray]) -> dict:
    """The unbinding gate's statistics on every frame of the held-out paths, stored in ``model_path``."""
    from ..data.systems import get_system

    if not references:
        raise RuntimeError(f"no seed of the held-out campaign {heldout_dir} left the pocket, so there is no start "
                           "or reference path to measure the weights with: give the recipe's held-out campaign "
                           "more seeds, a longer max_time or stronger hills")
    return attach_unbind_gate_reference(
        model_path, get_system(recipe.system).load(), np.concatenate(references),
        f"every frame of {len(references)} held-out metadynamics dissociation paths ({heldout_dir.name})").to_dict()


def measure_unbinding(recipe: UnbindingRecipe, model_path: Path, references: list[np.ndarray], root: Path) -> dict:
    """The card's quality facts: ``attempts_per_start`` gated paths from each of the first ``n_eval_starts``
    held-out bound poses (:func:`evaluate_unbinding`)."""
    from ..data.systems import get_system
    from .unbind import Unbinder, UnbindSettings

    starts = np.stack([ref[0] for ref in references[: recipe.n_eval_starts]])
    unbinder = Unbinder(get_system(recipe.system).load(), str(model_path),
                        settings=UnbindSettings(max_time_ps=recipe.max_path_time_ps, margin_nm=recipe.margin_nm))
    # one directory per weights, sampler and gate: a re-run of the same resumes, anything else never meets
    # these attempts
    sampling = json.dumps([asdict(unbinder.settings), asdict(unbinder.gate.config)], sort_keys=True)
    out = root / "eval" / recipe.name / f"unbind-{unbinder.model_hash[:12]}-{_short_hash(sampling)}"
    return evaluate_unbinding(unbinder, starts, references, out, recipe.attempts_per_start)


def _relaxation_words(quality: dict) -> str:
    """The gate relaxation a quality measurement used, in words (cards made before a field existed read
    as the gate of their day: 100 steps, no early acceptance)."""
    words = f"{quality.get('gate_relaxation_steps', 100)} L-BFGS steps"
    early = quality.get("gate_early_accept_steps") or []
    if early:
        words += f" (a frame passing every check after {' or '.join(map(str, early))} is accepted there)"
    return words


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def write_unbinding_card(recipe: UnbindingRecipe, facts: dict, model_path: Path, root: Path) -> dict:
    """Write ``card.json`` (the facts) and ``MODEL_CARD.md`` into ``root/eval/NAME``; returns the facts
    with ``model_path`` and ``card`` added (what :func:`~openmm_biomd.recipes.reproduce` installs)."""
    from biomd_core.training.run import load_run_config

    from ..recipes import REPO

    eval_dir = root / "eval" / recipe.name
    eval_dir.mkdir(parents=True, exist_ok=True)
    (eval_dir / "card.json").write_text(json.dumps(facts, indent=2, default=str))
    card = unbinding_model_card(facts, load_run_config(REPO / recipe.train_config))
    (eval_dir / "MODEL_CARD.md").write_text(card)
    return {**facts, "model_path": str(model_path), "card": card}


def _heldout_campaign(recipe: UnbindingRecipe, root: Path) -> tuple[Path, dict]:
    """Generate (or resume) the held-out campaign; returns its directory and its card facts."""
    heldout_dir = _heldout_dir(recipe, root)
    run = generate_dissociation(recipe.system, heldout_dir, **recipe.heldout_campaign.kwargs())
    return heldout_dir, {**asdict(recipe.heldout_campaign), "dissociated": run.get("n_dissociated")}


def unbinding_model_card(f: dict, config) -> str:
    from ..recipes import facts_history

    q, g, t = f["quality"], f["gate_reference"], config.model.time
    rmsd = q["path_rmsd_to_nearest_metad_nm"]

    def fmt(x, spec=".2f"):
        return "n/a" if x is None else format(x, spec)

    checks = {"Success@10 ≥ 90 %": (q.get("success_at_10") or 0) >= 0.9}
    failed = [k for k, ok in checks.items() if not ok]
    status = "all quality targets met" if not failed else f"not met: {'; '.join(failed)}"
    campaigns = "; ".join(f"master seed {c['seed']}: {c['n_seeds']} seeds" for c in f["train_campaigns"])
    c0 = f["train_campaigns"][0]
    after_exit = (f", then goes on for {c0['after_exit_ps']:g} ps of unbiased MD (no new hills)"
                  if c0.get("after_exit_ps") else "")
    return f"""# Model card: `{f['name']}` (ligand unbinding)

Status: {status}.

Load with `biomd_core.io.load_model("{f['name']}")`; use with `biomd unbind --system {f['system']}`.
Reproduce from scratch with `biomd reproduce-weights {f['name']} --install` (every step resumes).

## Model
- Preset `{config.model.preset}`, flow `{config.model.flow.parameterization}`, Δt = {t.frame_interval_ps} ps,
  coarse stride k = {t.coarse_stride} ({t.coarse_interval_ps} ps), history {t.history_frames}, block {t.block_frames}
  ({t.block_frames * t.coarse_interval_ps:g} ps per autoregressive block).
- Training config: `{f['train_config']}` ({f['training']['steps']} steps, seed {config.training.seed}).

## Data
- OpenMM well-tempered metadynamics on the guest–host centroid distance, bundled `{f['system']}` (CB7–B2,
  GAFF, OBC2 implicit solvent), 300 K, 2 fs; hills {c0['height_kj_mol']} kJ/mol, γ = {c0['bias_factor']},
  σ = 0.05 nm every {c0['deposit_interval_ps']} ps; each seed stops once the CV exceeds its bound value + 1 nm{after_exit}.
  Campaigns: {campaigns}. The model therefore learns *biased, accelerated* exits.
- Held-out campaign (master seed {f['heldout_campaign']['seed']}, {f['heldout_campaign']['n_seeds']} seeds):
  starting frames and reference paths for the evaluation below; never trained on.

## Training
- Hardware: {f['hardware']}. Wall time (last session): {f['training']['wall_s_last_session']} s;
  {f['training']['samples_per_s'] or 0:.1f} windows/s.

## Measured quality (`biomd unbind`, every frame through the physics gate)
| metric | value | target |
|---|---:|---|
| starting frames (held out) × attempts | {q['n_starts']} × {q['attempts'] // max(q['n_starts'], 1)} | — |
| Success@1 | {fmt(q['success_at_1'])} | — |
| Success@10 (unbiased estimator, mean over starts) | {fmt(q.get('success_at_10'))} | ≥ 0.90 |
| mean exit time of successful paths (ps) | {fmt(q['mean_exit_time_ps'], '.0f')} | — |
| wall time per attempt (s) | {fmt(q['mean_wall_s_per_attempt'], '.1f')} | — |
| path RMSD to the nearest held-out metadynamics path (nm; mean / median, n = {rmsd['n']}) | {fmt(rmsd['mean'])} / {fmt(rmsd['median'])} | — |
| gate re-draws / rejections | {q['gate_retries']} / {q['gate_rejections']} | — |

Sampler: {q.get('sampler', 'heun 10 steps, no steering')}; gate relaxation {_relaxation_words(q)}.

## Physics-gate statistics
Decoupled-ligand intramolecular energy after {g['minimize_iterations']} L-BFGS steps over {g['n_frames']} frames
({g['source']}): {g['mean']:.1f} ± {g['std']:.1f} kJ/mol (largest {g['maximum']:.1f}).
""" + ("\n## Notes\n" + "\n".join(f"- {n}" for n in f["notes"]) + "\n" if f["notes"] else "") + facts_history(f)
