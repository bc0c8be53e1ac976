"""Resumable training checkpoints.

Layout inside a run directory::

    checkpoints/step_000500/model.safetensors   the model (a normal BioMD checkpoint)
    checkpoints/step_000500/trainer.pt          optimiser, EMA, step, torch RNG (tensors only)
    checkpoints/step_000500/rng.json            numpy RNG state
    checkpoints/latest.json                     {"step": 500, "dir": "step_000500"}

A step directory is complete before ``latest.json`` (written atomically) points
to it, so a kill at any moment leaves the previous checkpoint usable.
``trainer.pt`` is read with ``torch.load(weights_only=True)``: no code runs.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from ..io.checkpoint import CheckpointError, load_model, save_model

LATEST = "latest.json"


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_training_checkpoint(trainer, directory: Path, keep: int = 2) -> Path:
    """Write the trainer's full state under ``directory``; keep the newest ``keep`` checkpoints."""
    directory.mkdir(parents=True, exist_ok=True)
    name = f"step_{trainer.step_count:07d}"
    step_dir = directory / name
    if step_dir.exists():
        shutil.rmtree(step_dir)  # a leftover from a kill before latest.json named it
    step_dir.mkdir()
    save_model(trainer.model, step_dir / "model.safetensors")
    state = trainer.state_dict()
    numpy_state = state.pop("numpy_rng")
    torch.save(state, step_dir / "trainer.pt")
    _atomic_write_text(step_dir / "rng.json", json.dumps(numpy_state))  # last, and whole: it marks the folder whole
    _atomic_write_text(directory / LATEST, json.dumps({"step": trainer.step_count, "dir": name}))
    for old in sorted(p for p in directory.glob("step_*") if p.is_dir())[:-keep]:
        shutil.rmtree(old)
    return step_dir


def latest_checkpoint(directory: Path) -> Path | None:
    """The step directory ``latest.json`` names (without it, the newest whole one), or None when there is none."""
    pointer = directory / LATEST
    if not pointer.exists():
        # the newest whole step checkpoint (rng.json, written atomically, is its last file), if any: a kill between
        # a save and its pointer, or a pointer deleted (a restart from step 0 had pruned, by name, its own new
        # checkpoints in favour of these); a folder without rng.json is a save cut short, started again
        whole = sorted(p for p in directory.glob("step_*") if (p / "rng.json").exists())
        return whole[-1] if whole else None
    try:
        name = json.loads(pointer.read_text())["dir"]
        if not isinstance(name, str):
            raise TypeError(f"its dir is {name!r}, not a folder name")
    except (ValueError, KeyError, TypeError) as exc:  # TypeError: a JSON document that is not {"dir": ...}
        raise CheckpointError(f"{pointer} is damaged ({exc!r}). {_resume_advice(directory)}") from exc
    step_dir = directory / name
    if not step_dir.is_dir():
        raise CheckpointError(f"{pointer} names {name}, which is missing. {_resume_advice(directory)}")
    return step_dir


def _resume_advice(directory: Path, damaged: str = "") -> str:
    """What to do when the newest training checkpoint (``damaged``) cannot be used: resume from another kept
    step checkpoint, or restart."""
    kept = sorted(p.name for p in directory.glob("step_*") if p.is_dir() and p.name != damaged)
    earlier = (f"To resume from a step checkpoint that is here ({', '.join(kept)}), write "
               f'{{"dir": "{kept[-1]}"}} (or another of them) into {directory / LATEST}; ' if kept else "")
    return f"{earlier}to restart the training from scratch, delete {directory}."


def restore_training_checkpoint(trainer, step_dir: Path) -> None:
    """Load weights and trainer state from ``step_dir`` into ``trainer`` (in place)."""
    try:
        model = load_model(step_dir / "model.safetensors")
        state = torch.load(step_dir / "trainer.pt", weights_only=True, map_location=trainer.device)
        state["numpy_rng"] = json.loads((step_dir / "rng.json").read_text())
    except Exception as exc:  # the weights' own advice ("re-download") does not fit a training checkpoint
        raise CheckpointError(f"{step_dir} is a damaged training checkpoint ({exc}). "
                              f"{_resume_advice(step_dir.parent, step_dir.name)}") from exc
    if model.config != trainer.model.config:
        raise CheckpointError(f"{step_dir}: the checkpoint's model config differs from this run's")
    trainer.model.load_state_dict(model.state_dict())
    # The generator state must stay on the CPU whatever map_location did.
    state["torch_generator"] = state["torch_generator"].cpu()
    trainer.load_state_dict(state)
