"""Coordinate spaces: how frames in nm map to the network's unitless space.

Samplers integrate the flow in *network space*, where the noise prior is
N(0, 1).  A space maps a window ``x [B, T, N, 3]`` nm, given its anchor frame
``anchor [B, N, 3]`` nm (the known start frame), to network space and back.
Both maps are affine, so they commute with the linear interpolant.
"""

from __future__ import annotations

import torch


def centroid(x: torch.Tensor, atom_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean position over atoms: ``[..., N, 3]`` → ``[..., 1, 3]`` (padding excluded)."""
    if atom_mask is None:
        return x.mean(dim=-2, keepdim=True)
    w = atom_mask.to(x.dtype).unsqueeze(-1)
    return (x * w).sum(-2, keepdim=True) / w.sum(-2, keepdim=True).clamp(min=1)


class IdentitySpace:
    """Network space = data space (used with analytic velocity fields in tests)."""

    def encode(self, x: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
        return x

    def decode(self, y: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
        return y


class AbsoluteSpace:
    """``y = (x − centroid(anchor)) / scale``: absolute coordinates, centred on the anchor."""

    def __init__(self, scale_nm: float, atom_mask: torch.Tensor | None = None) -> None:
        self.scale_nm = scale_nm
        self.atom_mask = atom_mask

    def origin(self, anchor: torch.Tensor) -> torch.Tensor:
        """``[B, 1, N or 1, 3]`` offset subtracted from every frame."""
        return centroid(anchor, self.atom_mask).unsqueeze(1)

    def encode(self, x: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
        return (x - self.origin(anchor)) / self.scale_nm

    def decode(self, y: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
        return y * self.scale_nm + self.origin(anchor)


class RelativeSpace(AbsoluteSpace):
    """``y = (x − anchor) / scale``: per-atom displacement from the anchor frame."""

    def origin(self, anchor: torch.Tensor) -> torch.Tensor:
        return anchor.unsqueeze(1)


SPACES = {"abs": AbsoluteSpace, "rel": RelativeSpace}


def make_space(parameterization: str, scale_nm: float, atom_mask: torch.Tensor | None = None) -> AbsoluteSpace:
    """Space for a :class:`~biomd_core.config.FlowConfig` parameterisation name."""
    try:
        return SPACES[parameterization](scale_nm, atom_mask)
    except KeyError:
        raise ValueError(f"unknown parameterization {parameterization!r}; known: {sorted(SPACES)}") from None
