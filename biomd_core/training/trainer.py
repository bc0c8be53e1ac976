"""The trainer: AdamW, warm-up + cosine schedule, clipping, EMA, AMP, DDP.

It draws windows from a :class:`WindowSampler`, computes
:func:`flow_matching_loss` and records every step's loss terms.  Its whole
state (weights, optimiser, EMA, step, random generators) round-trips through
:meth:`Trainer.state_dict` / :meth:`Trainer.load_state_dict`, so a killed run
resumes exactly (see :mod:`biomd_core.training.checkpointing`).
"""

from __future__ import annotations

import copy
import math
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch

from ..config import TrainingConfig
from ..model.biomd import BioMDModel
from ..model.system import SystemBatch
from . import distributed
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

    Attributes
    ----------
    history : one dict of floats per step (``step``, ``lr``, ``grad_norm``, loss terms)
    ctx : data-parallel context (single process by default)
    amp : bfloat16 autocast when training on CUDA (parameters, optimiser state and EMA stay float32)
    amp_on_cpu : the same autocast on the CPU (tests the mixed-precision path without a GPU)
    """

    model: BioMDModel
    systems: SystemBatch
    data: TrajectorySet
    config: TrainingConfig
    validation: TrajectorySet | None = None
    ctx: distributed.DistributedContext = field(default_factory=distributed.DistributedContext)
    amp: bool = True
    amp_on_cpu: bool = False
    history: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.device = self.ctx.device
        self.model.to(self.device)
        self.systems_device = self.systems.to(self.device)
        self.sampler = WindowSampler(self.data, self.systems.n_atoms, self.model.time, self.config)
        self.net = distributed.wrap(self.model.net, self.ctx)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay
        )
        # Same seed on every rank: all ranks draw the same global batch and split it.
        self.rng = np.random.default_rng(self.config.seed)
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self.ema = copy.deepcopy(self.model).eval() if self.config.ema_decay > 0 else None
        self.step_count = 0
        self.shard = self.ctx.shard(self.config.batch_size)
        self.validation_sampler = self._validation_sampler()

    def _validation_sampler(self) -> WindowSampler | None:
        if self.validation is None or not self.validation.frames:
            return None
        try:
            return WindowSampler(self.validation, self.systems.n_atoms, self.model.time, self.config)
        except ValueError as exc:
            import warnings

            warnings.warn(f"validation disabled: {exc}", stacklevel=3)
            return None

    def _autocast(self):
        if self.amp and (self.device.type == "cuda" or self.amp_on_cpu):
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def train_step(self) -> dict:
        """One optimiser step; returns its logged values."""
        self.model.train()
        rows, frames, plan = self.sampler.batch(self.config.batch_size, self.rng)
        factor = lr_factor(self.step_count, self.config.warmup_steps, self.config.steps)
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr * factor
        with self._autocast():
            terms = flow_matching_loss(
                self.model, self.systems_device.select(torch.as_tensor(rows, device=self.device)),
                frames.to(self.device), plan, self.generator, augment=self.config.augment_rotations,
                shard=self.shard, net=self.net,
            )
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        if not torch.isfinite(grad_norm):
            raise FloatingPointError(
                f"non-finite gradient at step {self.step_count}; lower training.lr or check the data for "
                "overlapping atoms (the last checkpoint is intact)"
            )
        self.optimizer.step()
        if self.ema is not None:
            self._update_ema()
        record = {"step": self.step_count, "lr": self.config.lr * factor, "grad_norm": float(grad_norm)}
        record.update({k: float(v.detach()) for k, v in terms.items()})
        self.history.append(record)
        self.step_count += 1
        return record

    @torch.no_grad()
    def validate(self, n_batches: int = 4, seed: int = 12345) -> dict:
        """Mean loss terms on validation windows (fixed seed: comparable across steps)."""
        if self.validation_sampler is None:
            return {}
        model = self.averaged_model()
        model.eval()
        sampler = self.validation_sampler
        rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
        totals: dict[str, float] = {}
        for _ in range(n_batches):
            rows, frames, plan = sampler.batch(self.config.batch_size, rng)
            with self._autocast():
                terms = flow_matching_loss(
                    model, self.systems_device.select(torch.as_tensor(rows, device=self.device)),
                    frames.to(self.device), plan, gen, augment=self.config.augment_rotations,
                )
            for k, v in terms.items():
                totals[k] = totals.get(k, 0.0) + float(v) / n_batches
        return {f"val_{k}": v for k, v in totals.items()}

    def fit(self, steps: int | None = None, callback=None) -> list[dict]:
        """Run ``steps`` more steps (default: up to the config's total); ``callback(record)`` after each."""
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

    # -- state for checkpoints ------------------------------------------------
    def state_dict(self) -> dict:
        """Everything but the model weights needed to continue exactly (tensors and plain data)."""
        return {
            "step": self.step_count,
            "optimizer": self.optimizer.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "torch_generator": self.generator.get_state(),
            "numpy_rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.generator.set_state(state["torch_generator"])
        self.rng.bit_generator.state = state["numpy_rng"]
