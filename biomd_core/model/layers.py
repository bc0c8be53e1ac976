"""Small building blocks of :class:`~biomd_core.model.VelocityNet`.

Everything here is TorchScript-compatible (typed ``forward``, no Python-side
state), because the network is exported with ``torch.jit.script``.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class FourierEmbedding(nn.Module):
    """Sinusoidal features of a scalar in roughly [0, 1], then a linear map.

    Input ``[...]`` → output ``[..., c_out]``.
    """

    def __init__(self, c_out: int, n_freq: int = 16) -> None:
        super().__init__()
        freqs = math.pi * (2.0 ** torch.arange(n_freq, dtype=torch.float32)) / 2.0 ** (n_freq // 2)
        self.register_buffer("freqs", freqs, persistent=False)
        self.proj = nn.Linear(2 * n_freq + 1, c_out)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        angles = u.unsqueeze(-1) * self.freqs
        feats = torch.cat([torch.sin(angles), torch.cos(angles), u.unsqueeze(-1)], dim=-1)
        return self.proj(feats)


class RadialBasis(nn.Module):
    """Gaussian radial basis of distances in nm: ``[...]`` → ``[..., n_rbf]``."""

    def __init__(self, n_rbf: int, max_nm: float) -> None:
        super().__init__()
        self.register_buffer("centers", torch.linspace(0.0, max_nm, n_rbf), persistent=False)
        self.width = max_nm / n_rbf

    def forward(self, d_nm: torch.Tensor) -> torch.Tensor:
        return torch.exp(-(((d_nm.unsqueeze(-1) - self.centers) / self.width) ** 2))


class AdaptiveLayerNorm(nn.Module):
    """Layer norm whose scale and shift come from a conditioning vector.

    Used to condition trajectory tokens on each entry's noise level τ and time
    offset.  ``x`` and ``cond`` are ``[..., c]``; output ``[..., c]``.
    """

    def __init__(self, c: int, c_cond: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(c, elementwise_affine=False)
        self.to_scale_shift = nn.Linear(c_cond, 2 * c)
        nn.init.zeros_(self.to_scale_shift.weight)
        nn.init.zeros_(self.to_scale_shift.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, shift = self.to_scale_shift(cond).chunk(2, dim=-1)
        return self.norm(x) * (1.0 + scale) + shift


class Transition(nn.Module):
    """Gated (SwiGLU) feed-forward block: ``[..., c]`` → ``[..., c]``."""

    def __init__(self, c: int, ratio: int) -> None:
        super().__init__()
        self.up = nn.Linear(c, 2 * ratio * c, bias=False)
        self.down = nn.Linear(ratio * c, c, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.up(x).chunk(2, dim=-1)
        return self.down(nn.functional.silu(a) * b)


def time_features(t_ps: torch.Tensor, max_time_ps: float) -> torch.Tensor:
    """Map time offsets in ps to a signed log scale, about [-1, 1] up to ``max_time_ps``.

    A log scale lets one model tell 1 ps from 100 ps steps and still answer
    sensibly for strides near (but not at) the ones it was trained on.
    """
    return torch.sign(t_ps) * torch.log1p(torch.abs(t_ps)) / math.log1p(max_time_ps)
