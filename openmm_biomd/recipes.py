"""Recipes that reproduce the shipped weights from scratch: ``biomd reproduce-weights NAME``.

A recipe generates the training MD and an independent reference MD (other
seeds), trains with a config from ``examples/configs/``, samples pure
generative rollouts, evaluates them against the reference, and writes a model
card.  Every step resumes where it stopped, so a killed reproduction is
simply run again.  ``--install`` copies the weights and card into
``biomd_core/weights/`` (what ``load_model(NAME)`` finds); ``--reevaluate`` measures the
installed weights again, ``--extend`` trains only stages a recipe gained since the installed
weights were made, starting from them.  Unbinding models
(``host-guest``) follow :mod:`openmm_biomd.enhanced.recipe` instead: metadynamics
exits as data, held-out exits for the evaluation.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class MDPlan:
    replicas: int
    time: str
    frame_interval: str
    seed: int
    #: MD after minimisation before the first frame (a settings change: a run resumes only with the same)
    equilibration: str = "10ps"


@dataclass(frozen=True)
class WeightsRecipe:
    """How one shipped model is made."""

    name: str
    system: str
    train_data: MDPlan
    reference_data: MDPlan
    train_config: str
    #: more training MD for later stages, each into ``data/NAME-seedSEED`` (see :func:`extra_data_dir`)
    extra_train_data: tuple[MDPlan, ...] = ()
    #: further training stages, each fine-tuning the previous stage's weights (their ``init_from`` is replaced)
    finetune_configs: tuple[str, ...] = ()
    sample_time: str = "10ns"
    sample_replicas: int = 4
    #: frames (of the rollouts and of the reference) minimised for the energy comparison
    energy_frames: int = 40
    #: whether issue #3's alanine-dipeptide targets (Ramachandran JSD, bond geometry, coarse step) apply;
    #: otherwise the card reports the same measurements without targets
    quality_targets: bool = True
    notes: list[str] = field(default_factory=list)


RECIPES = {
    "alanine-dipeptide": WeightsRecipe(
        name="alanine-dipeptide",
        system="alanine-dipeptide",
        train_data=MDPlan(replicas=2, time="5ns", frame_interval="1ps", seed=100),
        reference_data=MDPlan(replicas=2, time="5ns", frame_interval="1ps", seed=200),
        extra_train_data=(
            MDPlan(replicas=2, time="5ns", frame_interval="1ps", seed=300),
            MDPlan(replicas=2, time="5ns", frame_interval="1ps", seed=400),
        ),
        train_config="examples/configs/alanine-dipeptide-tiny.yaml",
        finetune_configs=(
            "examples/configs/alanine-dipeptide-tiny-stage2.yaml",
            "examples/configs/alanine-dipeptide-tiny-stage3.yaml",
            "examples/configs/alanine-dipeptide-tiny-stage4.yaml",
        ),
        notes=[
            "Trained on the CPU of the project's 2-core machine (no GPU was available): a `tiny` (0.45 M "
            "parameter) model, 10,000 steps on 5 ps-strided frames of 2 × 5 ns, then 10,000 more on every 1 ps "
            "phase of them, then 18,000 more on 3× the MD (seeds 100, 300, 400; one trajectory held out for the "
            "validation loss), then 14,000 more on the same MD at half the learning rate with the coarse "
            "autoregressive task drawn twice as often. Rollout Ramachandran JSD (heun, 20 steps): 0.143 after "
            "stage 1, 0.122 after stage 2, 0.102 after stage 3 (4 × 5 ns each, seed 1); over the 4 × 10 ns "
            "evaluation 0.092 after stage 3 and 0.085 after stage 4 (below). The validation loss stayed at 0.318 "
            "through stage 4: the tiny model is near its capacity. The map under-populates αR (8.5 % of frames "
            "against 11.7 % in the reference MD) and over-populates αL (1.4 % against 0.3 %). More MD and a "
            "larger model (`examples/configs/alanine-dipeptide-small-gpu.yaml`) are the next step.",
            "Bond geometry: the raw network output has 0.2 % of frames (16 of 8,004) with a bond more than "
            "0.5 Å off (0.68 Å at most), all of them bonds to hydrogen (methyl C–H mostly). The system "
            "constrains those bonds (`HBonds`), and the sampler projects every generated frame onto the "
            "constraints as MD does, which removes them; the largest remaining deviation is a heavy-atom bond "
            "(0.35 Å; heavy-atom bond MAE 0.035 Å). Inside OpenMM every frame also goes through the "
            "propagator's physics gate, which relaxes, checks and re-draws frames.",
            "Stages 1–2 hold out no validation trajectory (25 % of 2 trajectories rounds to none); quality is "
            "measured against the independent reference MD above in any case.",
        ],
    ),
    "t4l-pxylene": WeightsRecipe(
        name="t4l-pxylene",
        system="t4l-pxylene",
        # Made on one GPU (an H200) in one call of a few minutes: benchmarks/gpu_session.py sized the MD
        # and the training to the rates it measured there (the config records the steps); the four
        # training runs and the reference ran side by side (`--parallel-md`). On a CPU (0.6–1 ns/day per
        # core) this is days of MD.
        train_data=MDPlan(replicas=1, time="400ps", frame_interval="1ps", seed=100),
        extra_train_data=tuple(MDPlan(replicas=1, time="400ps", frame_interval="1ps", seed=seed)
                               for seed in (300, 400, 500)),
        reference_data=MDPlan(replicas=1, time="400ps", frame_interval="1ps", seed=200),
        train_config="examples/configs/t4l-pxylene-tiny-gpu.yaml",
        # evaluated on the project's 2-core CPU (the GPU call ended before its evaluation did)
        sample_time="50ps",
        sample_replicas=2,
        energy_frames=10,
        quality_targets=False,
        notes=[
            "**Not usable for generation yet: what one GPU call of a few minutes could make.** The MD and the "
            "training ran on an NVIDIA H200 (`benchmarks/gpu_session.py`: 4 × 400 ps of training MD and the "
            "400 ps reference side by side at 305–329 ns/day each, then 1,000 steps of the `tiny` model at 54 "
            "windows/s in 74 s, bf16 autocast; validation velocity loss 0.76 → 0.113 on the held-out run). The "
            "evaluation ran on the project's 2-core CPU (the GPU time ended first), where T4L rollouts run at "
            "~5 ns/day (1,915 ns/day on the H200).",
            "Against the CPU-made placeholder these weights replaced (25 ps of MD, 150 steps): bond-length MAE "
            "0.38 → 0.17 Å, protein RMSF Pearson r 0.12 → 0.62, ligand RMSF r −0.18 → 0.61, Ramachandran JSD "
            "0.64 → 0.46 (the MD floor is now 0.08, from 400 ps of reference instead of 15 ps). Still far off: "
            "bonds up to 7 Å out in some frame, the ligand overlapping the protein in every frame and its own "
            "atoms in most, energies that do not come down in a 50-step minimisation. The propagator's gate, "
            "given each of the 100 generated frames of the evaluation rollouts, refused all 100 at its first "
            "check (in each a heavy-atom bond 0.1–0.2 nm too long), so inside OpenMM it falls back to plain MD: "
            "nothing breaks, nothing is gained.",
            "What would make it usable: far more training (the alanine model needed ~50,000 steps; this one had "
            "1,000) on more MD (ns per run), which on a GPU is hours, not minutes. A larger model does not fit: "
            "the `small` preset needs 124 GiB in bf16 at batch 4 on this 2,621-atom system and does not fit "
            "in float32 on a 141 GB GPU (BENCHMARKS.md), because the sparse attention materialises every "
            "atom's neighbours per frame; a fused neighbour-attention kernel comes first.",
        ],
    ),
}


def _md(recipe: WeightsRecipe, plan: MDPlan, out: Path) -> dict:
    from .data import generate_md, parse_time_ps

    return generate_md(
        recipe.system, out, time_ps=parse_time_ps(plan.time), frame_interval_ps=parse_time_ps(plan.frame_interval),
        replicas=plan.replicas, seed=plan.seed, chunk_frames=500, equilibration_ps=parse_time_ps(plan.equilibration),
    )


def extra_data_dir(root: Path, name: str, plan: MDPlan) -> Path:
    """Where a recipe's extra training MD goes (the stage configs read it from there)."""
    return root / "data" / f"{name}-seed{plan.seed}"


def hardware() -> str:
    import torch

    cpu = f"{os.cpu_count()}-core {platform.machine()} CPU"
    return f"{cpu}, CUDA {torch.cuda.get_device_name()}" if torch.cuda.is_available() else cpu


def _unbinding_recipes() -> dict:
    """Recipes of unbinding models (:mod:`openmm_biomd.enhanced.recipe`)."""
    from .enhanced.recipe import MetadynamicsPlan, UnbindingRecipe

    return {
        "host-guest": UnbindingRecipe(
            name="host-guest",
            system="host-guest",
            # 25 ps after each exit: exits at every position of a training window (data/metadynamics.py)
            # master seeds 3 and 4 (stage 4's data) came later: 2 is the held-out campaign's
            train_campaigns=tuple(MetadynamicsPlan(seed=s, n_seeds=12, after_exit_ps=25.0) for s in (0, 1, 3, 4)),
            heldout_campaign=MetadynamicsPlan(seed=2, n_seeds=10),
            train_config="examples/configs/host-guest-unbind-tiny.yaml",
            finetune_configs=("examples/configs/host-guest-unbind-tiny-stage2.yaml",
                              "examples/configs/host-guest-unbind-tiny-stage3.yaml",
                              "examples/configs/host-guest-unbind-tiny-stage4.yaml"),
            notes=[
                "Trained on the CPU of the project's 2-core machine (no GPU was available in this task): "
                "24 strongly biased metadynamics exits of ~30–100 ps each (a small data set), a `tiny` model, "
                "1,500 + 2,000 steps of batch 4 on the paths cut at their exits (validation velocity loss "
                "0.105 → 0.082), then 2,000 steps (stage 3) on the same 24 seeds run again with 25 ps of "
                "unbiased MD kept after each exit (validation velocity loss on those data 0.121 → 0.106). "
                "Stage 4 (added 2026-12-07): 6,000 steps of batch 4 at lr 3·10⁻⁴ on twice the data, 48 seeds "
                "(master seeds 0, 1, 3 and 4, each with 25 ps after its exit). When first trained, against the "
                "stage-3 weights on the same held-out starts and attempt seeds, interleaved twice (2 × 20 "
                "attempts): 151 / 149 re-drawn pieces against 176 / 196, 2.9 s per attempt against 3.2–3.5 s, "
                "19 / 20 of 20 left against 17 / 18 (BENCHMARKS.md, unbinding section). In "
                "benchmarks/bench_unbind.py after installing: 3.7 s per attempt (stage 3 the day before: 3.6 s), 19 "
                "(17) of 20 left, 151 (176) re-draws: fewer failed attempts, no faster per attempt.",
                "Why stage 3: when every path ends at its exit, the exit is always the last frame of a "
                "training window and no window starts from a guest that has left. The stage-2 model learnt an "
                "exit only at a block's last position (in ungated 100 ps rollouts the mean guest distance rose "
                "at each block's last frame and fell back at the next block's first), and the gate, which keeps "
                "the passing start of a refused block, cut those frames off: 0 of 20 gated attempts left the "
                "host. After stage 3, 11 of 20 did (3 of 10 and 8 of 10 from the two held-out starts).",
                "Quality is still what limits it. Unsteered, three raw generated frames in four fail the gate "
                "(mostly a guest atom inside the host's wall; with the stage-2 model most overlaps were inside "
                "the generated guest itself, its rigid cage collapsing): 8 of 20 attempts stopped at the gate "
                "(three blocks in a row without a passing frame) and 11 of 20 left, with 642 pieces re-drawn. "
                "`biomd unbind` therefore steers the sampler (biomd_core.sampling.steering: overlaps, bond lengths "
                "and stereocentres of the predicted frame) and relaxes each frame 300 L-BFGS steps instead of 100: "
                "all 20 leave with 132 re-draws (Heun 10 steps), but the steered paths lie further from the "
                "metadynamics paths (path RMSD 0.63 nm against 0.43 nm unsteered with the earlier 100-step gate, "
                "0.65 against 0.54 nm in a same-run comparison in benchmarks/bench_steering.py; the held-out "
                "metadynamics paths are 0.36 nm from each other). Since 2026-12-01 the sampler takes 6 Heun steps "
                "instead of 10 and the gate accepts a frame after 100 of its 300 steps when it passes every check "
                "there. Early acceptance alone: 61 instead of 100 ms per gated frame over 285 generated frames, "
                "with the same verdict for every frame. 6 against 10 steps, both with early acceptance, the same 20 "
                "attempt seeds on the same day: 8.5 s per attempt (7.8 s in an identical run) against 12.5 s, "
                "20 against 19 of 20 leave, path RMSD 0.58 against 0.57 nm. With the gate's frames relaxed on "
                "two threads (the same paths, bit for bit) 7.5 s per attempt (measured then). Since 2026-12-02 "
                "the sampler is ab2 in 6 steps (one network evaluation a step: 6 per window instead of Heun's "
                "11), the network evaluates faster on the CPU, and a block's interpolation stops at its first "
                "coarse frame past the exit; the same 20 attempt seeds in one run (benchmarks/bench_sampler.py): "
                "3.7 s per attempt against 5.1 s with Heun 6 steps, 20 of 20 leave either way, more re-draws "
                "(159 against 119, most of them bonds off by > 0.15 nm before the relaxation), path RMSD 0.60 / "
                "0.57 nm against 0.58 / 0.57 (mean / median). "
                "The gate's vacuum relaxation also pulls an accepted guest back "
                "towards the host (0.03–0.06 nm after 100 steps, measured with the stage-2 model), a drag every "
                "generated exit has to overcome. A GPU-trained `small` model on many more paths is the next step.",
                "The data are biased dynamics: generated paths are fast, metadynamics-like exits, not unbiased "
                "kinetics. Use them as seeds for umbrella sampling or metadynamics walkers, which restore "
                "the physics.",
            ],
        ),
    }


def reproduce(name: str, root: str | Path = "runs", install: bool = False, progress: bool = True,
              parallel_md: bool = False, stop_after_training: bool = False) -> dict:
    """Run a recipe end to end into ``root``; returns the model card's facts.

    ``parallel_md`` runs the recipe's MD plans side by side, one process each: for CPU cores or several
    GPUs (on one H200, five T4L runs together were no faster than one: BENCHMARKS.md).
    ``stop_after_training`` ends after the training (see :func:`reproduce_recipe` and
    :func:`~openmm_biomd.enhanced.recipe.reproduce_unbinding`), so there is nothing to ``install`` yet.
    """
    if install and stop_after_training:
        raise ValueError("--install needs the evaluated weights and their card, which --stop-after-training does "
                         "not make: install with the later run that evaluates them")
    root = Path(root)
    unbinding = _unbinding_recipes()
    if name in unbinding:
        from .enhanced.recipe import reproduce_unbinding

        result = reproduce_unbinding(unbinding[name], root, progress, parallel_md, stop_after_training)
        return result if stop_after_training else _install_unbinding(result, install)
    return reproduce_recipe(_recipe(name, unbinding), root, install, progress, parallel_md, stop_after_training)


def reproduce_recipe(recipe: WeightsRecipe, root: Path, install: bool = False, progress: bool = True,
                     parallel_md: bool = False, stop_after_training: bool = False) -> dict:
    """:func:`reproduce` for a recipe object: MD, training, gate statistics, evaluation, card.

    Data and training are recorded in ``root/eval/NAME/training-facts.json`` once the training is done.
    A later call with the same recipe finds that record and the weights, and goes on from there without
    the training MD: so a model can be trained on one machine (a GPU) and evaluated on another by copying
    ``root/train/NAME*``, ``root/data/NAME-reference`` and that file (``stop_after_training`` ends the
    first machine's part; the returned facts then have no quality measurements).
    """
    from .propagator.calibration import attach_gate_reference

    facts = _trained(recipe, root)
    trained_here = facts is None
    if trained_here:
        facts = _prepare_and_train(recipe, root, progress, parallel_md)
    if stop_after_training:
        return facts
    ref_dir = _reference_dir(root, recipe.name)
    if not trained_here:  # trained earlier or elsewhere: the reference MD may still have to be made (resumable)
        facts["reference_data"]["ns_total"] = _ns(_md(recipe, recipe.reference_data, ref_dir))
    model_path = root / facts.pop("model_path")
    gate_reference = attach_gate_reference(model_path, recipe.system, ref_dir)
    facts = {
        **facts,
        "gate_reference": gate_reference.to_dict(),
        **evaluate_weights(recipe, model_path, ref_dir, root / "eval" / recipe.name),
        "evaluation_hardware": hardware(),
    }
    return _write_card(recipe, facts, model_path, root, install)


def _plans(recipe: WeightsRecipe) -> dict:
    """What a training record must match to be reused: the recipe's MD plans and configs."""
    return {"train_data": recipe.train_data.__dict__, "extra_train_data": [p.__dict__ for p in recipe.extra_train_data],
            "reference_data": recipe.reference_data.__dict__, "train_config": recipe.train_config,
            "finetune_configs": list(recipe.finetune_configs)}


def _training_record(root: Path, name: str) -> Path:
    return root / "eval" / name / "training-facts.json"


def _trained(recipe: WeightsRecipe, root: Path) -> dict | None:
    """The facts of a finished training of this very recipe in ``root``, or None (train then)."""
    from .data.md import DamagedRunFileError, read_json

    path = _training_record(root, recipe.name)
    if not path.exists():
        return None
    try:
        record = read_json(path)
    except DamagedRunFileError as exc:  # only a record of finished work: redoing it resumes every finished step
        warnings.warn(f"{exc} It is written again: the MD and training steps resume from their own files.",
                      stacklevel=2)
        return None
    facts = record.get("facts") if isinstance(record, dict) else None
    if not isinstance(facts, dict) or record.get("plans") != json.loads(json.dumps(_plans(recipe))) \
            or not (root / str(facts.get("model_path"))).is_file():
        return None  # not a record, another recipe's, or the weights are gone: train again (each step resumes)
    return facts


def _prepare_and_train(recipe: WeightsRecipe, root: Path, progress: bool, parallel_md: bool) -> dict:
    """Training MD, reference MD and the training stages; records and returns the facts so far."""
    data_dir, ref_dir = root / "data" / recipe.name, _reference_dir(root, recipe.name)
    jobs = [(recipe.train_data, data_dir), *[(plan, extra_data_dir(root, recipe.name, plan))
                                            for plan in recipe.extra_train_data], (recipe.reference_data, ref_dir)]
    t0 = time.perf_counter()
    if parallel_md:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: a fresh interpreter per plan (no forked OpenMM or CUDA state)
        with ProcessPoolExecutor(len(jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
            metas = list(pool.map(_md, [recipe] * len(jobs), *zip(*jobs)))
    else:
        metas = [_md(recipe, plan, out) for plan, out in jobs]
    md_s = time.perf_counter() - t0
    train_meta, extra_metas, ref_meta = metas[0], metas[1:-1], metas[-1]

    t0 = time.perf_counter()
    model_path, steps, summary = train_stages(recipe.name, recipe.train_config, recipe.finetune_configs, root, progress)
    train_s = time.perf_counter() - t0
    facts = {
        "name": recipe.name,
        "system": recipe.system,
        "train_data": {**recipe.train_data.__dict__, "ns_total": _ns(train_meta)},
        "extra_train_data": [{**plan.__dict__, "ns_total": _ns(meta)} for plan, meta in zip(recipe.extra_train_data, extra_metas)],
        "reference_data": {**recipe.reference_data.__dict__, "ns_total": _ns(ref_meta)},
        "train_config": " then ".join((recipe.train_config, *recipe.finetune_configs)),
        "training": {"steps": sum(steps), "steps_per_stage": steps, "wall_s_last_session": round(train_s, 1),
                     "samples_per_s": summary["samples_per_s"]},
        "md_generation_wall_s_last_session": round(md_s, 1),
        "md_ns_per_day": {str(out.name): meta.get("ns_per_day") for (_, out), meta in zip(jobs, metas)},
        "md_in_parallel": parallel_md,
        "hardware": hardware(),
        "model_path": str(model_path.relative_to(root)),  # relative: the record travels with root
    }
    record = _training_record(root, recipe.name)
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"plans": _plans(recipe), "facts": facts}, indent=2, default=str) + "\n")
    return facts


def reevaluate(name: str, root: str | Path = "runs", install: bool = False) -> dict:
    """Measure the *installed* weights again and rewrite their card.

    For a change in sampling or evaluation that leaves the weights alone.  An equilibrium model gets
    new rollouts evaluated against its reference MD; an unbinding model new gated attempts from its
    held-out starts.  The reference MD or held-out campaign is regenerated if missing (resumable, same
    seeds); the training facts are kept from the installed ``NAME.card.json``.  Returns the updated facts.
    """
    root = Path(root)
    unbinding = _unbinding_recipes()
    recipe = unbinding.get(name) or _recipe(name, unbinding)  # a clear error for an unknown name
    model_path, facts = _installed(name)
    if name in unbinding:
        from .enhanced.recipe import reevaluate_unbinding

        return _install_unbinding(reevaluate_unbinding(recipe, facts, model_path, root), install)
    ref_dir = _reference_dir(root, name)
    facts["reference_data"]["ns_total"] = _ns(_md(recipe, recipe.reference_data, ref_dir))
    facts.update(evaluate_weights(recipe, model_path, ref_dir, root / "eval" / name))
    return _write_card(recipe, facts, model_path, root, install)


def extend(name: str, root: str | Path = "runs", install: bool = False, progress: bool = True) -> dict:
    """Train the recipe's stages that the *installed* weights lack, starting from them, and measure the result.

    For a recipe that gained a fine-tuning stage: instead of retraining every stage from scratch, the
    installed weights (the output of the stages their card lists) are copied to that stage's run
    directory and the new stages continue from there.  The earlier stages' training facts are kept
    from the installed ``NAME.card.json``; the new weights get a new gate reference and a new
    evaluation (rollouts for an equilibrium model, gated unbinding attempts for an unbinding model).
    The card is rewritten (installed with ``install``).  Returns the new facts.
    """
    from .propagator.calibration import attach_gate_reference

    root = Path(root)
    unbinding = _unbinding_recipes()
    recipe = unbinding.get(name) or _recipe(name, unbinding)  # a clear error for an unknown name
    installed, facts = _installed(name)
    stages = (recipe.train_config, *recipe.finetune_configs)
    if name in unbinding:
        from .enhanced.recipe import make_training_campaigns, measure_new_stages

        model_path, facts = _train_new_stages(name, stages, installed, facts, root, progress,
                                              lambda: make_training_campaigns(recipe, root))
        return _install_unbinding(measure_new_stages(recipe, facts, model_path, root), install)

    ref_dir = _reference_dir(root, name)

    def prepare_data() -> None:  # what the stages read, and the evaluation's reference (resumable generation)
        _md(recipe, recipe.train_data, root / "data" / name)
        for plan in recipe.extra_train_data:
            _md(recipe, plan, extra_data_dir(root, name, plan))
        _md(recipe, recipe.reference_data, ref_dir)

    model_path, facts = _train_new_stages(name, stages, installed, facts, root, progress, prepare_data)
    facts["gate_reference"] = attach_gate_reference(model_path, recipe.system, ref_dir).to_dict()
    facts.update(evaluate_weights(recipe, model_path, ref_dir, root / "eval" / name))
    return _write_card(recipe, facts, model_path, root, install)


def _train_new_stages(name: str, stages: tuple[str, ...], installed: Path, facts: dict, root: Path, progress: bool,
                      prepare_data) -> tuple[Path, dict]:
    """The stages of ``stages`` the installed weights lack, trained from them (see :func:`extend`).

    ``prepare_data()`` makes (or resumes) the data the stages read; it runs only once the stages are
    known to be missing.  Returns the final weights and ``facts`` with the training facts, the training
    configs, the hardware and the history updated.
    """
    done = len(facts["training"]["steps_per_stage"])
    if done >= len(stages):
        raise ValueError(f"the installed {name} weights already have all {len(stages)} stages of the recipe; "
                         "add a stage to its finetune_configs first")
    prepare_data()
    model_path = _installed_as_stage(name, done, installed, root)

    new_steps, wall = [], 0.0
    for stage in range(done + 1, len(stages) + 1):
        model_path, summary = _finetune_stage(name, stage, stages[stage - 1], model_path, root, progress)
        new_steps.append(summary["steps"])
        wall += summary["wall_s_this_session"]  # the stage's own record: a finished stage is not retrained
    training = facts["training"]
    training["steps_per_stage"] = [*training["steps_per_stage"], *new_steps]
    training["steps"] = sum(training["steps_per_stage"])
    training["wall_s_last_session"], training["samples_per_s"] = round(wall, 1), summary["samples_per_s"]
    added = f"stage{'s' if len(new_steps) > 1 else ''} {', '.join(str(k) for k in range(done + 1, len(stages) + 1))}"
    if training.get("wall_time_note"):
        training["wall_time_note"] += (f" Then {added}: {sum(new_steps):,} steps in {wall:.0f} s "
                                       f"({summary['samples_per_s'] or 0:.0f} windows/s), {time.strftime('%Y-%m-%d')}.")
    facts["train_config"] = " then ".join(stages)
    facts["hardware"] = hardware()
    facts["facts_history"] = (facts.get("facts_history", "") + f" {added[0].upper()}{added[1:]} added on "
                              f"{time.strftime('%Y-%m-%d')} by `biomd reproduce-weights {name} --extend`, starting "
                              f"from the installed stage-{done} weights; the measured quality re-measured then.").strip()
    return model_path, facts


def _weights_dir() -> Path:
    """Where shipped weights live (what ``load_model(NAME)`` finds)."""
    return REPO / "biomd_core" / "weights"


def _installed(name: str) -> tuple[Path, dict]:
    """The installed weights' file and their card's facts (``NAME.safetensors``, ``NAME.card.json``)."""
    facts_file = _weights_dir() / f"{name}.card.json"
    if not facts_file.exists():
        raise FileNotFoundError(f"{facts_file} is missing: re-evaluating or extending keeps the installed card's "
                                f"training facts; run `biomd reproduce-weights {name}` to make everything from scratch")
    from .data.md import read_json

    remedy = (f"Restore it from the repository (`git checkout -- {facts_file}`), or run "
              f"`biomd reproduce-weights {name}` to make everything from scratch.")
    facts = read_json(facts_file, remedy=remedy)
    if not isinstance(facts, dict):
        raise ValueError(f"{facts_file} is damaged: it is not a JSON object. {remedy}")
    return _weights_dir() / f"{name}.safetensors", facts


def _installed_as_stage(name: str, stage: int, installed: Path, root: Path) -> Path:
    """Stage ``stage``'s weights for a continuation: the installed file, copied into the run directory
    where a from-scratch reproduction puts that stage's output (installing later overwrites the
    installed file).  An existing different file there is refused."""
    from biomd_core.io import load_model

    target = root / "train" / (name if stage == 1 else f"{name}-stage{stage}") / "model.safetensors"
    if target.exists():
        if load_model(target).weights_hash() != load_model(installed).weights_hash():
            raise ValueError(f"{target} holds other weights than the installed {name}; move it away to "
                             "continue from the installed weights")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(installed, target)
    return target


def evaluate_weights(recipe: WeightsRecipe, model_path: Path, ref_dir: Path, eval_dir: Path) -> dict:
    """Rollouts of ``model_path`` and their evaluation against ``ref_dir``: the card's measured facts.

    Returns ``sampling`` (the rollouts' summary), ``quality`` (:func:`~.evaluate.run_evaluate`) and
    ``raw_geometry`` (bond errors of the same rollouts without the constraint projection).
    """
    from .evaluate import EvaluateRequest, geometry_evaluation, run_evaluate
    from .sample import SampleRequest, run_sample

    def rollouts(constraints: str, out: Path) -> dict:
        return run_sample(SampleRequest(model=str(model_path), system=recipe.system, time=recipe.sample_time,
                                        replicas=recipe.sample_replicas, seed=1, constraints=constraints), out)

    sample = rollouts("auto", eval_dir / "samples")
    quality = run_evaluate(EvaluateRequest(generated=str(eval_dir / "samples"), reference=str(ref_dir),
                                           energy_frames=recipe.energy_frames), eval_dir / "evaluation")
    # the same rollouts without the projection onto constrained bond lengths: what the network puts out
    rollouts("none", eval_dir / "samples-raw")
    return {
        "sampling": {k: sample[k] for k in ("simulated_ps", "simulated_ps_all_replicas", "wall_s", "ns_per_day",
                                             "replicas", "solver", "ode_steps", "constraints")},
        "quality": quality,
        "raw_geometry": geometry_evaluation(eval_dir / "samples-raw", ref_dir),
    }


def _write_card(recipe: WeightsRecipe, facts: dict, model_path: Path, root: Path, install: bool) -> dict:
    from biomd_core.training.run import load_run_config

    eval_dir = root / "eval" / recipe.name
    eval_dir.mkdir(parents=True, exist_ok=True)
    (eval_dir / "card.json").write_text(json.dumps(facts, indent=2, default=str))
    card = model_card(facts, load_run_config(REPO / recipe.train_config), recipe)
    (eval_dir / "MODEL_CARD.md").write_text(card)
    if install:
        _install(recipe.name, model_path, card, facts)
    return facts


def _recipe(name: str, unbinding: dict) -> WeightsRecipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise KeyError(f"no weights recipe {name!r}; recipes: {sorted([*RECIPES, *unbinding])}") from None


def _reference_dir(root: Path, name: str) -> Path:
    return root / "data" / f"{name}-reference"


def _install_unbinding(result: dict, install: bool) -> dict:
    """Install an unbinding recipe's result (facts + ``model_path`` + ``card``); returns the facts."""
    facts = {k: v for k, v in result.items() if k not in ("model_path", "card")}
    if install:
        _install(facts["name"], Path(result["model_path"]), result["card"], facts)
    return facts


def _install(name: str, model_path: Path, card: str, facts: dict | None = None) -> None:
    """Copy weights and card (and the card's facts, which :func:`reevaluate` reads) into the package."""
    weights = _weights_dir()
    weights.mkdir(exist_ok=True)
    target = weights / f"{name}.safetensors"
    if Path(model_path).resolve() != target.resolve():
        shutil.copyfile(model_path, target)
    (weights / f"{name}.md").write_text(card)
    if facts is not None:
        (weights / f"{name}.card.json").write_text(json.dumps(facts, indent=2, default=str) + "\n")


def train_stages(name: str, train_config: str, finetune_configs: tuple[str, ...], root: Path,
                 progress: bool) -> tuple[Path, list[int], dict]:
    """Train ``root/train/NAME`` with ``train_config``, then each fine-tune stage in ``root/train/NAME-stageK``.

    Each stage starts from the previous stage's weights (its config's ``init_from`` is replaced when
    ``root`` is not the configs' ``runs/``).  Returns the final weights, steps per stage and the last
    stage's training summary.
    """
    from biomd_core.training.run import load_run_config, run_training

    model_path = root / "train" / name / "model.safetensors"
    summary = run_training(load_run_config(REPO / train_config), model_path.parent, progress=progress)
    steps = [summary["steps"]]
    for stage, stage_config in enumerate(finetune_configs, start=2):
        model_path, summary = _finetune_stage(name, stage, stage_config, model_path, root, progress)
        steps.append(summary["steps"])
    return model_path, steps, summary


def _finetune_stage(name: str, stage: int, stage_config: str, previous: Path, root: Path,
                    progress: bool) -> tuple[Path, dict]:
    """Train stage ``stage`` (config ``stage_config``) from the weights ``previous`` into
    ``root/train/NAME-stageK``; returns its weights and training summary."""
    from biomd_core.training.run import load_run_config, run_training

    stage_dir = root / "train" / f"{name}-stage{stage}"
    config = load_run_config(REPO / stage_config)
    if Path(config.init_from).resolve() != previous.resolve():
        config = replace(config, init_from=str(previous.resolve()))
    return stage_dir / "model.safetensors", run_training(config, stage_dir, progress=progress)


def _ns(meta: dict) -> float:
    frames = sum(meta.get("frames_per_replica", []))
    return frames * float(meta["frame_interval_ps"]) / 1000.0


def _extra_data_line(f: dict) -> str:
    extra = f.get("extra_train_data") or []
    if not extra:
        return ""
    parts = [f"{e['replicas']} × {e['time']} (master seed {e['seed']})" for e in extra]
    total = f["train_data"]["ns_total"] + sum(e["ns_total"] for e in extra)
    return f"; also {' and '.join(parts)}, same settings: {total:.1f} ns in all"


def _md_rate_line(f: dict) -> str:
    """The MD's speed, where the facts record it (runs side by side: each run's own rate)."""
    rates = [r for r in (f.get("md_ns_per_day") or {}).values() if r]
    if not rates:
        return ""
    side = (f" per run, {len(rates)} runs side by side ({sum(rates):,.0f} ns/day in all)"
            if f.get("md_in_parallel") else "")
    return f"\n- MD speed on the training hardware: {min(rates):,.0f}–{max(rates):,.0f} ns/day{side}."


def _evaluated_on(f: dict) -> str:
    """Where the rollouts ran, when that differs from the training hardware."""
    where = f.get("evaluation_hardware")
    return f" on {where}" if where and where != f.get("hardware") else ""


def _training_time_line(training: dict) -> str:
    """The card's training wall time: ``wall_time_note`` when stages ran in several sessions (the
    recipe then only saw the last one), else the last session's seconds and throughput."""
    if training.get("wall_time_note"):
        return training["wall_time_note"]
    return (f"Wall time (last session): {training['wall_s_last_session']} s; "
            f"{training['samples_per_s'] or 0:.1f} windows/s.")


def _duration(ps: float) -> str:
    """``"10.0 ns"`` from 1 ns up, ``"60 ps"`` below (the T4L data are ps-scale)."""
    return f"{ps / 1000:.1f} ns" if ps >= 1000 else f"{ps:.0f} ps"


def _replicas(n: int) -> str:
    return f"{n} replica" + ("s" if n != 1 else "")


def _quality_rows(q: dict, raw_geometry: dict, coarse_ps: float, targets: bool) -> list[tuple[str, str, str]]:
    """(metric, value, target) rows of the card's quality table; rows a system has no value for
    (ligand rows of a peptide) are left out, targets shown only where the recipe has them."""

    def fmt(value, spec: str = ".3f") -> str:
        return format(value, spec) if isinstance(value, (int, float)) else "n/a"

    rows = [
        ("Ramachandran JSD vs reference MD", fmt(q.get("ramachandran_jsd")), "≤ 0.10"),
        ("Ramachandran JSD, MD half vs MD half (floor)", fmt(q.get("ramachandran_jsd_md_floor")), "—"),
        ("TICA JSD", fmt(q.get("tica_jsd")), "—"),
        ("bond-length MAE (Å)", fmt(q.get("bond_mae_A")), "≤ 0.1"),
        ("largest bond deviation in any frame (Å)", fmt(q.get("bond_max_dev_A")), "≤ 0.5"),
        ("angle MAE (deg)", fmt(q.get("angle_mae_deg"), ".2f"), "—"),
        ("protein RMSF Pearson r", fmt(q.get("protein_rmsf_pearson_r")), "—"),
    ]
    rows += [(label, fmt(q[key]), "—") for key, label in (
        ("ligand_rmsf_pearson_r", "ligand RMSF Pearson r"),
        ("ligand_clash_score", "intra-ligand clash score"),
        ("protein_ligand_clash_score", "protein–ligand clash score"),
    ) if key in q]
    rows += [
        ("mean energy after 50-step minimisation, generated (kJ/mol)", fmt(q.get("energy_generated_mean_kj_mol"), ".1f"), "—"),
        ("mean energy after 50-step minimisation, reference (kJ/mol)", fmt(q.get("energy_reference_mean_kj_mol"), ".1f"), "—"),
        ("coarse step (ps)", f"{coarse_ps:.0f}", "≥ 100"),
        ("raw network output: bond-length MAE (Å)", fmt(raw_geometry.get("bond_mae_A")), "—"),
        ("raw network output: largest bond deviation in any frame (Å)", fmt(raw_geometry.get("bond_max_dev_A")), "—"),
    ]
    return rows if targets else [(metric, value, "—") for metric, value, _ in rows]


def model_card(f: dict, config, recipe: WeightsRecipe) -> str:
    """The model card (markdown) of an equilibrium-dynamics model, rendered from its facts ``f``."""
    from .data.systems import get_system

    q = f["quality"]
    g = f["gate_reference"]
    t = config.model.time
    bundled = get_system(f["system"])
    if recipe.quality_targets:
        checks = {
            "Ramachandran JSD ≤ 0.10": q.get("ramachandran_jsd", float("inf")) <= 0.10,
            "bond-length MAE ≤ 0.1 Å": q.get("bond_mae_A", float("inf")) <= 0.1,
            "no bond off by more than 0.5 Å": q.get("bond_max_dev_A", float("inf")) <= 0.5,
            "coarse step ≥ 100 ps": t.coarse_interval_ps >= 100.0,
        }
        failed = [name for name, ok in checks.items() if not ok]
        status = (
            "all quality targets met" if not failed
            else f"**{len(checks) - len(failed)} of {len(checks)} quality targets met**; not met: {'; '.join(failed)}"
        )
    else:
        status = "no quality targets are set for this system; the table reports what was measured"
    rows = "\n".join(f"| {metric} | {value} | {target} |" for metric, value, target in
                     _quality_rows(q, f.get("raw_geometry") or {}, t.coarse_interval_ps, recipe.quality_targets))
    train, ref, sampling = f["train_data"], f["reference_data"], f["sampling"]
    return f"""# Model card: `{f['name']}`

Status: {status}.

Load with `biomd_core.io.load_model("{f['name']}")`. Reproduce from scratch with
`biomd reproduce-weights {f['name']} --install` (every step resumes if interrupted).

## Model
- Preset `{config.model.preset}`, flow parameterisation `{config.model.flow.parameterization}`,
  frame interval Δt = {t.frame_interval_ps} ps, coarse stride k = {t.coarse_stride}
  (one coarse step = {t.coarse_interval_ps} ps), history {t.history_frames}, block {t.block_frames}.
- Training config: `{f['train_config']}` ({f['training']['steps']} steps, seed {config.training.seed}).

## Data
- Training MD: OpenMM, bundled system `{f['system']}` ({bundled.source}; {bundled.force_field}),
  {_replicas(train['replicas'])} × {train['time']}, frames every {train['frame_interval']},
  master seed {train['seed']}: {_duration(train['ns_total'] * 1000)}{_extra_data_line(f)}.
- Reference MD (never seen in training): {_replicas(ref['replicas'])} × {ref['time']},
  master seed {ref['seed']}: {_duration(ref['ns_total'] * 1000)}.{_md_rate_line(f)}

## Training
- Hardware: {f['hardware']}. {_training_time_line(f['training'])}

## Measured quality (pure generative rollouts, no OpenMM relaxation)
Rollouts (`biomd sample`, seed 1, {sampling.get('solver', 'heun')} {sampling.get('ode_steps', 20)} steps): {_replicas(sampling['replicas'])} × {_duration(sampling['simulated_ps'])}
= {_duration(sampling['simulated_ps_all_replicas'])}, generated at {sampling['ns_per_day']:.0f} ns/day{_evaluated_on(f)}.
Every generated frame is projected onto the system's constrained bond lengths (its `HBonds`
constraints, as an MD integrator does each step; `--constraints none` turns this off); the last rows
give the raw network output of the same rollouts for comparison.

| metric | value | target |
|---|---:|---|
{rows}

## Physics-gate statistics
Stored in the checkpoint's provenance (`gate_reference`) for `GenerativePropagator`: the intramolecular
energy of the modelled atoms after {g['minimize_iterations']} L-BFGS steps over {g['n_frames']} evenly spaced
reference-MD frames: {g['mean']:.1f} ± {g['std']:.1f} kJ/mol (largest {g['maximum']:.1f}).
""" + ("\n## Notes\n" + "\n".join(f"- {n}" for n in recipe.notes) + "\n" if recipe.notes else "") + facts_history(f)


def facts_history(f: dict) -> str:
    """The card's closing section on where its numbers come from, when the facts file says (``facts_history``)."""
    return f"\n## Where these numbers come from\n{f['facts_history']}\n" if f.get("facts_history") else ""
