"""Model checkpoints: one safetensors file, no code inside.

A checkpoint holds the weights and, in the safetensors header, the full model
config, the vocabularies, the time grid (Δt in ps, coarse stride k), the data
provenance, the package version and a sha256 of the weights.  Loading never
unpickles anything, so a checkpoint from a stranger is safe to open; a
truncated or corrupted file gives a :class:`CheckpointError` that says so.
Files are written to a temporary name and renamed, so a crash mid-write never
damages an existing checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..config import ConfigError, ModelConfig, from_dict, to_dict
from ..version import __version__

FORMAT = "biomd-checkpoint/1"
#: Shipped weights live here as ``<name>.safetensors`` with a ``<name>.md`` model card.
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not match what is asked of it."""


def save_model(model, path: str | Path) -> Path:
    """Write ``model`` (a :class:`~biomd_core.model.BioMDModel`) to ``path`` atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "package_version": __version__,
        "config": json.dumps(to_dict(model.config)),
        "vocabularies": json.dumps(model.vocabs.to_dict()),
        "provenance": json.dumps(model.provenance),
        "frame_interval_ps": repr(model.config.time.frame_interval_ps),
        "coarse_stride": str(model.config.time.coarse_stride),
        "weights_sha256": model.weights_hash(),
    }
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.chmod(tmp, 0o644)  # safetensors creates files readable by the owner only
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def shipped_models() -> list[str]:
    """Names of the weights shipped inside the package."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.safetensors"))


def resolve(path_or_name: str | Path) -> Path:
    """A shipped model's file for a name, else the path itself (checked to exist)."""
    shipped = WEIGHTS_DIR / f"{path_or_name}.safetensors"
    if isinstance(path_or_name, str) and "/" not in path_or_name and shipped.exists():
        return shipped
    path = Path(path_or_name)
    if not path.exists():
        raise CheckpointError(
            f"no checkpoint at {str(path)!r} and no shipped model of that name; shipped models: {shipped_models() or 'none'}"
        )
    return path


def read_metadata(path: str | Path) -> dict:
    """The header of a checkpoint (strings), validated as a BioMD checkpoint."""
    from safetensors import safe_open

    path = resolve(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for damaged headers
        import zipfile

        if zipfile.is_zipfile(path):  # (it was called truncated or corrupt)
            raise CheckpointError(
                f"{path} is a zip archive (a TorchScript export, or a propagator checkpoint), not a BioMD "
                "checkpoint: give the .safetensors file (or the shipped model name) it came from") from exc
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or corrupt?): {exc}. Restore it from a copy "
            "(a shipped model: from the repository)"
        ) from exc
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not a BioMD checkpoint (format {meta.get('format')!r})")
    return meta


def _check_time_grid(path: Path, meta: dict, config: ModelConfig) -> None:
    """The header's time grid (``frame_interval_ps``, ``coarse_stride``) must be its config's.

    A model's time grid is fixed by its training; the header states it twice, so an edit of either
    (e.g. to run the model at another Δt) is refused rather than loaded with one or the other.
    """
    stated = {"frame_interval_ps": config.time.frame_interval_ps, "coarse_stride": config.time.coarse_stride}
    for key, value in stated.items():
        try:
            agrees = key not in meta or float(meta[key]) == float(value)
        except ValueError:
            agrees = False
        if not agrees:
            raise CheckpointError(
                f"{path}: the header's {key} ({meta[key]!r}) is not its config's ({value!r}): the header was "
                "edited. A model's time grid is fixed by its training: fine-tune it on the new grid instead")


def load_model(path_or_name: str | Path, device: str | torch.device = "cpu"):
    """Load a :class:`~biomd_core.model.BioMDModel` from a file or a shipped name.

    Raises
    ------
    CheckpointError
        missing, truncated or corrupt file, an unknown config key, or weights
        that do not match their recorded hash or the model's layout.
    """
    from safetensors.torch import load_file

    from ..featurize import Vocabularies
    from ..model.biomd import BioMDModel

    path = resolve(path_or_name)
    meta = read_metadata(path)
    try:
        config = from_dict(ModelConfig, json.loads(meta["config"]))
        vocabs = Vocabularies.from_dict(json.loads(meta["vocabularies"]))
        provenance = json.loads(meta.get("provenance", "{}"))
    except (ConfigError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: invalid checkpoint header: {exc}") from exc
    _check_time_grid(path, meta, config)
    try:
        tensors = load_file(str(path), device="cpu")
    except Exception as exc:
        raise CheckpointError(f"{path}: weights cannot be read (truncated or corrupt?): {exc}") from exc
    model = BioMDModel(config, vocabs, provenance)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the model described in its header: {exc}") from exc
    if model.weights_hash() != meta.get("weights_sha256"):
        raise CheckpointError(f"{path}: weights do not match their recorded sha256 (the file is corrupt)")
    model.checkpoint_path = str(path)
    return model.to(device).eval()
