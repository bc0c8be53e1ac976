"""Conditional flow matching with noise-as-masking.

Every entry (frame, atom) of a window has its own noise level τ ∈ [0, 1]:

    y_τ = τ·y + (1 − τ)·ε,   ε ~ N(0, 1),   target velocity u = y − ε = (y − y_τ)/(1 − τ)

in network space (see :mod:`biomd_core.flow.space`).  τ = 1 marks a *known*
entry: it is given exactly and never changed, and the loss counts only unknown
entries.  Which entries are known is the task (forecast, interpolation, ...),
so one network serves every task.
"""

from __future__ import annotations

import torch

from ..config import FlowConfig


def sample_tau(
    known: torch.Tensor, config: FlowConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Noise levels for a training batch.

    Parameters
    ----------
    known : ``[B, T, N]`` bool, True for given entries (they get τ = 1)

    Returns
    -------
    ``[B, T, N]`` float32.  Per example, τ is drawn either once for all unknown
    entries (probability ``sync_tau_prob``; this is what samplers do), per atom
    (``per_atom_tau_prob``; inpainting-like), or per frame.
    """
    b, t, n = known.shape
    device = known.device

    def draw(*shape: int) -> torch.Tensor:
        u = torch.rand(*shape, generator=generator, device=device)
        if config.tau_sampling == "logit_normal":
            u = torch.sigmoid(torch.randn(*shape, generator=generator, device=device))
        return u

    choice = torch.rand(b, generator=generator, device=device)
    per_sync = draw(b, 1, 1).expand(b, t, n)
    per_atom = draw(b, t, n)
    per_frame = draw(b, t, 1).expand(b, t, n)
    sync = (choice < config.sync_tau_prob).view(b, 1, 1)
    atom = ((choice >= config.sync_tau_prob) & (choice < config.sync_tau_prob + config.per_atom_tau_prob)).view(b, 1, 1)
    tau = torch.where(sync, per_sync, torch.where(atom, per_atom, per_frame))
    return torch.where(known, torch.ones_like(tau), tau)


def interpolate(y: torch.Tensor, noise: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """``y_τ = τ·y + (1 − τ)·ε`` with ``tau [B, T, N]`` broadcast over xyz."""
    t = tau.unsqueeze(-1)
    return t * y + (1.0 - t) * noise


def clean_estimate(y_tau: torch.Tensor, velocity: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """Denoised estimate ``ŷ = y_τ + (1 − τ)·v`` (exact for the true velocity's mean)."""
    return y_tau + (1.0 - tau.unsqueeze(-1)) * velocity


def velocity_loss(
    predicted: torch.Tensor, y: torch.Tensor, noise: torch.Tensor, known: torch.Tensor, atom_mask: torch.Tensor
) -> torch.Tensor:
    """Mean squared velocity error over unknown, real entries.

    ``predicted, y, noise [B, T, N, 3]``; ``known [B, T, N]``; ``atom_mask [B, N]``.
    """
    weight = (~known & atom_mask.unsqueeze(1)).to(y.dtype)  # [B,T,N]
    err = ((predicted - (y - noise)) ** 2).sum(-1)
    return (err * weight).sum() / (3.0 * weight.sum().clamp(min=1.0))
