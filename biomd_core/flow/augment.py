"""Data augmentation: random rigid rotations about the anchor centroid."""

from __future__ import annotations

import torch


def random_rotations(n: int, generator: torch.Generator | None = None, dtype=torch.float32) -> torch.Tensor:
    """Uniformly distributed rotation matrices ``[n, 3, 3]`` (det +1), from random unit quaternions."""
    q = torch.randn(n, 4, generator=generator, dtype=torch.float64)
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    rot = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).view(n, 3, 3)
    return rot.to(dtype)


def rotate_about_anchor(
    frames: torch.Tensor, anchor: torch.Tensor, rotation: torch.Tensor, atom_mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre a window on its anchor's centroid and rotate it rigidly.

    Parameters
    ----------
    frames : ``[B, T, N, 3]`` nm
    anchor : ``[B, N, 3]`` nm
    rotation : ``[B, 3, 3]``

    Returns
    -------
    rotated frames ``[B, T, N, 3]`` and anchor ``[B, N, 3]``, centred at the origin.
    """
    from .space import centroid

    c = centroid(anchor, atom_mask)  # [B,1,3]
    rot_t = rotation.transpose(-1, -2)
    frames = (frames - c.unsqueeze(1)) @ rot_t.unsqueeze(1)
    anchor = (anchor - c) @ rot_t
    return frames, anchor
