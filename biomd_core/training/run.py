"""``biomd train --config FILE``: a whole training run, resumable.

The run directory holds ``config.json`` (the run config), ``metrics.jsonl``
(one JSON object per logged step, validation included), ``checkpoints/``
(see :mod:`~biomd_core.training.checkpointing`), and at the end
``model.safetensors`` (EMA weights when enabled) and ``summary.json``.
Running the same command again resumes from the latest checkpoint; a
different config in an existing run directory is refused.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import ConfigError, ModelConfig, TrainingConfig, differences, from_dict, require_at_least, to_dict
from ..data.trajectories import DataSpec, load_dataset
from ..io.checkpoint import load_model, save_model
from ..io.json_lines import DamagedLogError, read_json_lines
from ..io.output_folder import abandon_output_folder, claim_output_folder, json_with_keys
from . import checkpointing, distributed
from .trainer import Trainer

#: the files and folders a training run writes into its folder (claimed with biomd_core.io.output_folder)
TRAIN_OUTPUTS = ("config.json", "metrics.jsonl", "checkpoints", "model.safetensors", "summary.json")


@dataclass(frozen=True)
class RunConfig:
    """A training run.

    Attributes
    ----------
    model : architecture, flow and time grid of a new model (ignored keys are errors)
    init_from : checkpoint path or shipped model name to fine-tune; its
        architecture, time grid and vocabularies are kept
    training : optimisation settings
    data : one entry per system
    validation_fraction : share of each system's trajectories held out (by trajectory)
    log_every, validate_every, checkpoint_every : in steps
    device : ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``
    amp : bfloat16 autocast on CUDA
    amp_on_cpu : the same autocast when training on the CPU (bfloat16 matmuls there are slower on most
        CPUs; it exists so that the mixed-precision path can be tested and used without a GPU)
    objective : when fine-tuning, flow settings of the training objective to change from the
        checkpoint's (only :data:`OBJECTIVE_KEYS`: they shape the loss, not the network or how it samples)
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    init_from: str = ""
    training: TrainingConfig = field(default_factory=TrainingConfig)
    data: tuple[DataSpec, ...] = ()
    validation_fraction: float = 0.1
    log_every: int = 10
    validate_every: int = 200
    checkpoint_every: int = 200
    device: str = "auto"
    amp: bool = True
    amp_on_cpu: bool = False
    objective: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 <= self.validation_fraction < 1.0:  # (at least one trajectory of each system is trained on)
            raise ConfigError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")
        if self.device not in TRAINING_DEVICES:
            raise ConfigError(f"device must be one of {', '.join(TRAINING_DEVICES)}, got {self.device!r} "
                              "(several GPUs: launch with torchrun, one process per GPU, and device: cuda)")
        require_at_least([(name, getattr(self, name), 1) for name in ("log_every", "validate_every", "checkpoint_every")],
                         ConfigError)


#: What a run config's ``device`` may say (each rank of a ``torchrun`` launch takes the GPU of its LOCAL_RANK).
TRAINING_DEVICES = ("auto", "cpu", "cuda")


#: ``FlowConfig`` settings a fine-tuning run may change: loss weights and how τ is drawn in training.
#: (``parameterization`` and ``coord_scale_nm`` define what the network predicts and stay the checkpoint's.)
OBJECTIVE_KEYS = (
    "tau_sampling", "per_atom_tau_prob", "sync_tau_prob", "known_frame_prob", "bond_weight", "clash_weight",
    "centroid_weight", "clash_distance_nm",
)


def load_run_config(path: str | Path) -> RunConfig:
    """Read a YAML/JSON run config strictly; relative data and ``init_from`` paths are relative to the file.

    ``model: {preset: small}`` without a ``network`` section takes the preset's
    network; ``init_from`` (fine-tuning) and ``model`` together are an error.
    """
    import yaml

    from ..model.presets import get_preset

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a run config is a mapping of sections")
    if raw.get("init_from") and "model" in raw:
        raise ConfigError(
            f"{path}: fine-tuning (init_from) keeps the checkpoint's model; remove the model section "
            f"(an `objective` section may change {', '.join(OBJECTIVE_KEYS)})"
        )
    _check_objective(path, raw)
    model = raw.get("model")
    if isinstance(model, dict) and "network" not in model:
        try:
            raw["model"] = {**model, "network": to_dict(get_preset(model.get("preset", "tiny")))}
        except KeyError as exc:
            raise ConfigError(f"{path}: {exc.args[0]}") from None
    config = from_dict(RunConfig, raw)
    if not config.data:
        raise ConfigError(f"{path}: the run config lists no data")
    base = path.resolve().parent

    def rel(p: str) -> str:
        return p if not p or Path(p).is_absolute() else str(base / p)

    specs = tuple(
        DataSpec(**{**spec.__dict__, "trajectories": tuple(rel(t) for t in spec.trajectories),
                    "topology": rel(spec.topology), "ligand_sdf": rel(spec.ligand_sdf)})
        for spec in config.data
    )
    init_from = config.init_from
    if init_from and (base / init_from).exists():  # a path beside the config; else a shipped name
        init_from = rel(init_from)
    return RunConfig(**{**config.__dict__, "data": specs, "init_from": init_from})


def _check_objective(path: Path, raw: dict) -> None:
    objective = raw.get("objective")
    if not objective:
        return
    if not raw.get("init_from"):
        raise ConfigError(f"{path}: `objective` changes a fine-tuned checkpoint's loss; for a new model set "
                          "these keys in model.flow")
    if not isinstance(objective, dict):
        raise ConfigError(f"{path}: `objective` is a mapping of flow settings")
    unknown = sorted(set(objective) - set(OBJECTIVE_KEYS))
    if unknown:
        raise ConfigError(f"{path}: objective.{unknown[0]} cannot change when fine-tuning; "
                          f"allowed: {', '.join(OBJECTIVE_KEYS)}")


def build_model(config: RunConfig):
    """A new model, or the ``init_from`` checkpoint for fine-tuning (with ``objective`` applied)."""
    from dataclasses import replace

    from ..config import FlowConfig
    from ..featurize import DEFAULT_VOCABULARIES
    from ..io.checkpoint import load_model
    from ..model.biomd import BioMDModel

    if config.init_from:
        model = load_model(config.init_from)
        model.provenance = {**model.provenance, "fine_tuned_from": config.init_from}
        if config.objective:
            flow = from_dict(FlowConfig, {**to_dict(model.config.flow), **config.objective}, "objective")
            model.config = replace(model.config, flow=flow)
            model.provenance["objective_changed"] = dict(config.objective)
        return model
    torch.manual_seed(config.training.seed)
    return BioMDModel(config.model, DEFAULT_VOCABULARIES)


def run_training(config: RunConfig, out_dir: str | Path, progress: bool = True) -> dict:
    """Train (or resume) into ``out_dir``; returns the summary."""
    from ..model.system import batch_systems

    out = Path(out_dir)
    ctx = distributed.setup(config.device)
    try:
        created = not out.exists()
        marked = _check_run_dir(out, config, ctx)
        try:
            model = build_model(config)
            data = load_dataset(
                list(config.data), model.time.frame_interval_ps, config.validation_fraction,
                config.training.seed, vocabs=model.vocabs,
            )
        except BaseException:  # a config refused for its model or data leaves no run folder, nor a claim, behind
            if ctx.is_main:
                abandon_output_folder(out, "train", created, marked)
            raise
        if ctx.is_main:
            _record_config(out, config)
        model.provenance = {**model.provenance, "data": data.provenance, "training": to_dict(config.training)}
        trainer = Trainer(
            model, batch_systems(data.graphs), data.train, config.training, data.validation, ctx, config.amp,
            amp_on_cpu=config.amp_on_cpu,
        )
        step_dir = checkpointing.latest_checkpoint(out / "checkpoints")
        if step_dir is not None:
            checkpointing.restore_training_checkpoint(trainer, step_dir)
        return _loop(trainer, config, out, ctx, progress)
    finally:
        distributed.teardown(ctx)


def _check_run_dir(out: Path, config: RunConfig, ctx) -> bool:
    """Claim ``out`` for training; refuse it when it holds a run of another config (naming what differs).

    Returns whether this call claimed the folder (on the main process).
    """
    saved = out / "config.json"
    marked = False
    if ctx.is_main:  # (a folder of training written before folders were claimed holds its config.json)
        marked = claim_output_folder(out, "train", TRAIN_OUTPUTS, json_with_keys("config.json", "training"))
    if saved.exists():
        try:
            # read through the config class: settings added to it since (with their defaults) are not differences
            earlier = to_dict(from_dict(RunConfig, json.loads(saved.read_text())))
        except ValueError as exc:  # not JSON, or not a run config (ConfigError is a ValueError)
            raise ConfigError(
                f"{saved} is damaged ({exc}). Restore it, or delete it and rerun with the config this run "
                "was started with (its checkpoints are kept)") from None
        differ = differences(earlier, to_dict(config))
        if differ:
            raise ConfigError(
                f"{out} holds a run with a different config ({'; '.join(differ[:5])}"
                f"{'; …' if len(differ) > 5 else ''}): use a new --out directory, or the same config to resume"
            )
    elif (step_dir := checkpointing.latest_checkpoint(out / "checkpoints")) is not None:
        # config.json gone (or deleted, as its damage message advises): the checkpoint's weights record the training
        # settings they were trained with (a run had been resumed, or a finished one extended, under others)
        try:  # (through the config class, as config.json: settings added since are not differences)
            recorded = load_model(step_dir / "model.safetensors").provenance.get("training")
            recorded = to_dict(from_dict(TrainingConfig, recorded))
        except Exception:  # no such record, or a damaged checkpoint (named when it is restored): nothing to compare
            recorded = None
        differ = differences(recorded, to_dict(config.training)) if recorded is not None else []
        if differ:
            raise ConfigError(
                f"{saved} is missing, and the checkpoint {step_dir.name} was trained with other settings "
                f"({'; '.join(differ[:5])}{'; …' if len(differ) > 5 else ''}): rerun with the config this run was "
                "started with, or use a new --out directory")
    distributed.barrier(ctx)
    return marked


def _record_config(out: Path, config: RunConfig) -> None:
    """Write ``out/config.json`` (once the model and data are known to load: a refused config is no record)."""
    saved = out / "config.json"
    if saved.exists():
        return
    written = to_dict(config)
    if config.init_from:  # the model is the checkpoint's: a default model section here would mislead
        del written["model"]
    saved.write_text(json.dumps(written, indent=2))


def _loop(trainer: Trainer, config: RunConfig, out: Path, ctx, progress: bool) -> dict:
    metrics = out / "metrics.jsonl"
    finished = out / "summary.json"
    if trainer.step_count >= config.training.steps and finished.exists():
        # a finished run "resumed": its summary (wall time, throughput) and weights stay as they were; deleted
        # weights are written again from the last checkpoint (its averaged model is the final one)
        if ctx.is_main and not (out / "model.safetensors").exists():
            _save_final_model(trainer, out)
        return json.loads(finished.read_text())
    if ctx.is_main:
        _truncate_metrics(metrics, trainer.step_count)
    bar = None
    if progress and ctx.is_main:
        from tqdm import tqdm

        bar = tqdm(total=config.training.steps, initial=trainer.step_count, desc="training", unit="step")
    start = time.perf_counter()
    start_step = trainer.step_count
    while trainer.step_count < config.training.steps:
        record = trainer.train_step()
        done = trainer.step_count
        if done % config.validate_every == 0 or done == config.training.steps:
            record.update(trainer.validate())
        if ctx.is_main:
            if done % config.log_every == 0 or "val_loss" in record:
                with metrics.open("a") as f:
                    f.write(json.dumps(record) + "\n")
            if done % config.checkpoint_every == 0 or done == config.training.steps:
                checkpointing.save_training_checkpoint(trainer, out / "checkpoints")
            if bar is not None:
                bar.update()
                bar.set_postfix(loss=f"{record['loss']:.4f}")
        distributed.barrier(ctx)
    if bar is not None:
        bar.close()
    wall = time.perf_counter() - start
    steps_run = trainer.step_count - start_step
    summary = {
        "steps": trainer.step_count,
        "wall_s_this_session": wall,
        "samples_per_s": steps_run * config.training.batch_size / wall if wall > 0 and steps_run else None,
        "world_size": ctx.world_size,
        "device": str(ctx.device),
        "final": trainer.history[-1] if trainer.history else None,
    }
    if ctx.is_main:
        _save_final_model(trainer, out)
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _save_final_model(trainer: Trainer, out: Path) -> None:
    """``out/model.safetensors``: the trainer's averaged (EMA) weights, with the run's provenance."""
    final = trainer.averaged_model()
    final.provenance = trainer.model.provenance
    save_model(final, out / "model.safetensors")


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop logged rows at or after ``step`` (a resumed run logs them again, once)."""
    remedy = "Delete it (only the logged loss curve is lost) or restore it from a copy, then resume"
    records = read_json_lines(path, remedy)
    if any(not isinstance(record.get("step"), int) for record in records):
        raise DamagedLogError(f"{path} is damaged: a record has no step number. {remedy}")
    keep = [record for record in records if record["step"] < step]
    if path.exists():
        path.write_text("".join(json.dumps(record) + "\n" for record in keep))
