"""A compact trainer: AdamW, warm-up + cosine schedule, clipping, EMA.

It draws windows from a :class:`WindowSampler`, computes
:func:`flow_matching_loss` and records every step's loss terms.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..config import TrainingConfig
from ..model.biomd import BioMDModel
from ..model.system import SystemBatch
from .objective import flow_matching_loss
from .windows import TrajectorySet, WindowSampler


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up to 1, then cosine decay to 0.1 at ``total`` steps."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class Trainer:
    """Trains ``model`` on ``data`` for the systems in ``systems``.

    ``history`` collects one dict of floats per step (``step``, ``lr``, loss terms).
    """

    model: BioMDModel
    systems: SystemBatch
    data: TrajectorySet
    config: TrainingConfig
    history: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sampler = WindowSampler(self.data, self.systems.n_atoms, self.model.time, self.config)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay
        )
        self.rng = np.random.default_rng(self.config.seed)
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self.ema = copy.deepcopy(self.model).eval() if self.config.ema_decay > 0 else None
        self.step_count = 0

    def train_step(self) -> dict:
        """One optimiser step; returns its logged values."""
        self.model.train()
        rows, frames, plan = self.sampler.batch(self.config.batch_size, self.rng)
        factor = lr_factor(self.step_count, self.config.warmup_steps, self.config.steps)
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr * factor
        device = next(self.model.parameters()).device
        terms = flow_matching_loss(
            self.model, self.systems.select(rows).to(device), frames.to(device), plan, self.generator,
            augment=self.config.augment_rotations,
        )
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        if self.ema is not None:
            self._update_ema()
        record = {"step": self.step_count, "lr": self.config.lr * factor, "grad_norm": float(grad_norm)}
        record.update({k: float(v.detach()) for k, v in terms.items()})
        self.history.append(record)
        self.step_count += 1
        return record

    def fit(self, steps: int | None = None, callback=None) -> list[dict]:
        """Run ``steps`` (default: the config's) steps; ``callback(record)`` after each."""
        for _ in range(steps if steps is not None else self.config.steps - self.step_count):
            record = self.train_step()
            if callback is not None:
                callback(record)
        return self.history

    @torch.no_grad()
    def _update_ema(self) -> None:
        d = self.config.ema_decay
        for p_ema, p in zip(self.ema.parameters(), self.model.parameters()):
            p_ema.lerp_(p, 1.0 - d)

    def averaged_model(self) -> BioMDModel:
        """The EMA model when enabled, else the model itself."""
        return self.ema if self.ema is not None else self.model
