"""Typed, strict configuration.

Every config is a frozen dataclass.  ``from_dict`` builds one from plain data
(JSON/YAML) and refuses unknown keys, naming the full key path, so a typo in a
config file is an error rather than a silently ignored setting.  The full config
is saved inside every checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Type, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value or key is invalid."""


def require_finite_fields(config: Any, section: str) -> None:
    """Raise :class:`ConfigError` naming the first float field of the dataclass ``config`` that is NaN or
    infinite (``section`` prefixes its name: ``training.lr``): ``lr: .inf`` had failed as a non-finite gradient
    blamed on the data, after the run's first files were written."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{section}.{f.name} must be a finite number, got {value}")


@dataclass(frozen=True)
class NetworkConfig:
    """Size and shape of :class:`~biomd_core.model.VelocityNet`.

    Attributes
    ----------
    c_single : width of per-atom single representation and trajectory tokens.
    c_pair : width of the pair representation (pair bias source).
    n_encoder_layers : graph-transformer layers of the start-frame encoder.
    n_trunk_layers : trajectory blocks (spatial + temporal attention each).
    n_heads : attention heads (``c_single`` must be divisible by it).
    mlp_ratio : hidden width of transitions, as a multiple of ``c_single``.
    n_rbf : radial basis functions for distances.
    rbf_max_nm : largest distance resolved by the radial basis, nm.
    attention : ``"dense"``, ``"sparse"`` or ``"auto"`` (dense up to ``dense_max_atoms``).
    n_neighbors : neighbours per atom in sparse mode (nearest in the start frame).
    dense_max_atoms : largest system run densely when ``attention="auto"``.
    atom_chunk : atoms processed at once by sparse attention (bounds peak memory).
    max_time_ps : scale of the time-offset embedding, ps (longer offsets still work).
    """

    c_single: int = 64
    c_pair: int = 16
    n_encoder_layers: int = 2
    n_trunk_layers: int = 3
    n_heads: int = 4
    mlp_ratio: int = 2
    n_rbf: int = 16
    rbf_max_nm: float = 2.0
    attention: str = "auto"
    n_neighbors: int = 32
    dense_max_atoms: int = 768
    atom_chunk: int = 2048
    max_time_ps: float = 10000.0

    def __post_init__(self) -> None:
        require_finite_fields(self, "network")
        if self.c_single % self.n_heads:
            raise ConfigError(f"network.c_single={self.c_single} is not divisible by n_heads={self.n_heads}")
        if self.attention not in ("dense", "sparse", "auto"):
            raise ConfigError(f"network.attention must be dense, sparse or auto, not {self.attention!r}")


@dataclass(frozen=True)
class FlowConfig:
    """Flow-matching objective.

    Attributes
    ----------
    parameterization : ``"abs"`` (absolute coordinates) or ``"rel"`` (displacement
        from the anchor frame, frame 0 of each window).
    coord_scale_nm : coordinates (or displacements) are divided by this before
        noising, so the noise prior N(0, 1) matches the data scale, nm.
    tau_sampling : ``"uniform"`` or ``"logit_normal"`` distribution of τ in training.
    per_atom_tau_prob : probability that a training example draws τ per atom
        (inpainting-like) instead of per frame.
    sync_tau_prob : probability that all unknown entries share one τ (as in sampling).
    known_frame_prob : probability that a frame beyond the task's known frames is
        also known (teaches conditioning on arbitrary known sets).
    bond_weight, clash_weight, centroid_weight : auxiliary loss weights.
    clash_distance_nm : non-bonded pairs closer than this are penalised, nm.
    """

    parameterization: str = "rel"
    coord_scale_nm: float = 0.3
    tau_sampling: str = "logit_normal"
    per_atom_tau_prob: float = 0.1
    sync_tau_prob: float = 0.5
    known_frame_prob: float = 0.0
    bond_weight: float = 0.1
    clash_weight: float = 0.05
    centroid_weight: float = 0.1
    clash_distance_nm: float = 0.2

    def __post_init__(self) -> None:
        require_finite_fields(self, "flow")
        if self.parameterization not in ("abs", "rel"):
            raise ConfigError(f"flow.parameterization must be 'abs' or 'rel', not {self.parameterization!r}")
        if self.tau_sampling not in ("uniform", "logit_normal"):
            raise ConfigError(f"flow.tau_sampling must be 'uniform' or 'logit_normal', not {self.tau_sampling!r}")
        if self.coord_scale_nm <= 0:
            raise ConfigError("flow.coord_scale_nm must be positive")


@dataclass(frozen=True)
class TimeConfig:
    """The time grid a model is trained on.

    Attributes
    ----------
    frame_interval_ps : Δt between fine frames, ps.
    coarse_stride : k; a coarse frame every k fine frames.
    history_frames : h; known frames given to an autoregressive block.
    block_frames : j; frames generated per autoregressive block.
    """

    frame_interval_ps: float = 1.0
    coarse_stride: int = 10
    history_frames: int = 1
    block_frames: int = 8

    def __post_init__(self) -> None:
        require_finite_fields(self, "time")
        if self.frame_interval_ps <= 0:
            raise ConfigError("time.frame_interval_ps must be positive")
        if self.coarse_stride < 1 or self.history_frames < 1 or self.block_frames < 1:
            raise ConfigError("time.coarse_stride, history_frames and block_frames must be >= 1")

    @property
    def coarse_interval_ps(self) -> float:
        """Time between coarse frames, ps."""
        return self.frame_interval_ps * self.coarse_stride


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model: saved in every checkpoint."""

    preset: str = "tiny"
    network: NetworkConfig = field(default_factory=NetworkConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    time: TimeConfig = field(default_factory=TimeConfig)


def from_dict(cls: Type[T], data: Mapping[str, Any], path: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, refusing unknown keys.

    Nested dataclass fields are built recursively.  Raises :class:`ConfigError`
    naming the offending key path (e.g. ``network.c_singel``).
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path or cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(
            f"unknown config key {where}{unknown[0]!r} for {cls.__name__}; known keys: {sorted(names)}"
        )
    kwargs = {}
    for key, value in data.items():
        sub = f"{path}.{key}" if path else key
        kwargs[key] = _build(hints[key], value, sub)
    return cls(**kwargs)


def _build(hint: Any, value: Any, path: str) -> Any:
    """A value for annotation ``hint``: nested dataclasses and tuples of them are built strictly."""
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, path)
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {path!r} must be a list, got {value!r}")
        item = typing.get_args(hint)[0]
        return tuple(_build(item, v, f"{path}[{i}]") for i, v in enumerate(value))
    return _coerce(hint, value, path)


def _coerce(hint: Any, value: Any, path: str) -> Any:
    """Check a scalar against its annotation; ints are accepted for floats."""
    if hint is dict and isinstance(value, Mapping):
        return dict(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key {path!r} must be a number, got {value!r}")
        return float(value)
    if hint in (int, str, bool) and not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"config key {path!r} must be {hint.__name__}, got {value!r}")
    return value


def require_at_least(checks: Iterable[tuple[str, float, float]], error: type[Exception] = ValueError) -> None:
    """Raise ``error`` naming the first ``(name, value, least)`` of ``checks`` whose value is below ``least``
    or not finite (``name``: what the user set, a config key or a command-line flag; NaN had passed)."""
    for name, value, least in checks:
        if not math.isfinite(value):
            raise error(f"{name} must be >= {least:g} and finite, got {value:g}")
        if value < least:
            raise error(f"{name} must be at least {least:g}, got {value:g}")


def seed_argument(text: str) -> int:
    """argparse type of a ``--seed``: a whole number >= 0 (NumPy's SeedSequence, which every run's seeds come
    from, takes no other)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a seed is a whole number >= 0, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a seed is a whole number >= 0, not {value}")
    return value


def differences(earlier: Mapping[str, Any], now: Mapping[str, Any], prefix: str = "") -> list[str]:
    """``key (there: …, now: …)`` for every leaf that differs between two settings mappings (nested keys
    dotted), to say which settings stop a run from resuming."""
    differ = []
    for key in sorted(set(earlier) | set(now)):
        a, b = earlier.get(key), now.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            differ += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            differ.append(f"{prefix}{key} (there: {a!r}, now: {b!r})")
    return differ


def to_dict(config: Any) -> dict:
    """Plain-data (JSON-serialisable) form of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def load_config(path: str | Path, cls: Type[T] = ModelConfig) -> T:  # type: ignore[assignment]
    """Read a JSON or YAML config file strictly into ``cls``."""
    import yaml

    path = Path(path)
    text = path.read_text()
    try:
        data = (yaml.safe_load(text) or {}) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (yaml.YAMLError, ValueError) as exc:  # (json's decode error is a ValueError)
        raise ConfigError(f"{path} is not valid {'YAML' if path.suffix in ('.yaml', '.yml') else 'JSON'}: {exc}") \
            from None
    return from_dict(cls, data)


def replace(config: T, **changes: Any) -> T:
    """Copy of a frozen config with some fields changed (validated again)."""
    return dataclasses.replace(config, **changes)


@dataclass(frozen=True)
class TrainingConfig:
    """Optimisation settings.

    Attributes
    ----------
    steps : optimiser steps
    batch_size : windows per step
    lr : peak learning rate (AdamW), reached after ``warmup_steps``, then cosine decay
    weight_decay, grad_clip : AdamW decoupled decay; global gradient-norm clip
    ema_decay : exponential moving average of weights (0 disables)
    seed : seeds windows, noise, τ and initial weights
    augment_rotations : random rigid rotation of every window
    fine_fraction : share of windows at the fine stride (interpolation level)
    task_weights : relative frequency of coarse-window tasks
        (``forecast``, ``autoregressive``, ``tps``, ``inpaint``)
    """

    steps: int = 1000
    batch_size: int = 16
    lr: float = 3e-4
    warmup_steps: int = 50
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    ema_decay: float = 0.0
    seed: int = 0
    augment_rotations: bool = True
    fine_fraction: float = 0.3
    task_weights: dict = field(
        default_factory=lambda: {"forecast": 1.0, "autoregressive": 1.0, "tps": 0.5, "inpaint": 0.25}
    )

    def __post_init__(self) -> None:
        require_finite_fields(self, "training")
        unknown = set(self.task_weights) - {"forecast", "autoregressive", "tps", "inpaint"}
        if unknown:
            raise ConfigError(f"unknown training task {sorted(unknown)[0]!r} in training.task_weights")
        for name in ("lr", "weight_decay", "grad_clip", "ema_decay", "fine_fraction"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"training.{name} must be a number, got {value!r}")
        if not 0.0 <= self.fine_fraction <= 1.0:
            raise ConfigError("training.fine_fraction must be in [0, 1]")
        require_at_least([(f"training.{name}", getattr(self, name), least)
                          for name, least in (("steps", 1), ("batch_size", 1), ("warmup_steps", 0))], ConfigError)
        for name in ("lr", "grad_clip"):  # clip_grad_norm_ with a negative norm flips the gradients
            if not getattr(self, name) > 0:
                raise ConfigError(f"training.{name} must be positive, got {getattr(self, name)}")
        if not 0.0 <= self.ema_decay < 1.0:  # a decay above 1 extrapolates the average away from the weights
            raise ConfigError(f"training.ema_decay must be in [0, 1) (0: no average), got {self.ema_decay}")
        if self.weight_decay < 0:
            raise ConfigError(f"training.weight_decay must be >= 0, got {self.weight_decay}")
