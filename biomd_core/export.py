"""TorchScript export of the velocity network and of one sampler step.

The exported archives load with ``torch.jit.load`` and nothing else: no
BioMD import (this is what openmm-torch's ``TorchForce`` and libtorch
consume).  Each archive carries the model config, vocabularies, time grid and
weights hash as extra files, so a deployment needs only that file.

Network archive methods (shapes as in :class:`~biomd_core.model.VelocityNet`):

- ``encode(start_nm, element, atom_name, residue_name, role, chem, residue_index,
  chiral_neighbors, topo_pairs, atom_mask) → (s, z, neighbor_idx, key_mask)``
- ``denoise(x, tau, t_ps, s, z, neighbor_idx, key_mask) → v``
- ``forward(x, tau, t_ps, start_nm, ...)`` = both

Step archive: ``forward(y, y_known, known, tau0, tau1, t_ps, s, z, neighbor_idx,
key_mask) → y_next``, one Heun step (Euler when ``tau1 == 1``) with known
entries held fixed.
"""

from __future__ import annotations

import json
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from .config import to_dict
from .model.velocity_net import VelocityNet

EXTRA_FILES = ("biomd_config.json", "vocabularies.json", "metadata.json")


class SamplerStep(nn.Module):
    """One ODE step from ``tau0`` to ``tau1`` of the masked flow (TorchScript-compatible)."""

    def __init__(self, net: VelocityNet) -> None:
        super().__init__()
        self.net = net

    def forward(
        self,
        y: torch.Tensor,
        y_known: torch.Tensor,
        known: torch.Tensor,
        tau0: float,
        tau1: float,
        t_ps: torch.Tensor,
        s: torch.Tensor,
        z: torch.Tensor,
        neighbor_idx: torch.Tensor,
        key_mask: torch.Tensor,
    ) -> torch.Tensor:
        """``y, y_known [B,T,N,3]``; ``known [B,T,N]`` bool; ``t_ps [B,T]`` ps → ``[B,T,N,3]``."""
        keep = known.unsqueeze(-1)
        ones = torch.ones_like(known, dtype=y.dtype)
        h = tau1 - tau0
        v = self.net.denoise(y, torch.where(known, ones, ones * tau0), t_ps, s, z, neighbor_idx, key_mask)
        if tau1 < 1.0:
            y_pred = torch.where(keep, y_known, y + h * v)
            v2 = self.net.denoise(y_pred, torch.where(known, ones, ones * tau1), t_ps, s, z, neighbor_idx, key_mask)
            v = 0.5 * (v + v2)
        return torch.where(keep, y_known, y + h * v)


def _extra_files(model) -> dict[str, str]:
    return {
        "biomd_config.json": json.dumps(to_dict(model.config)),
        "vocabularies.json": json.dumps(model.vocabs.to_dict()),
        "metadata.json": json.dumps(
            {
                "weights_sha256": model.weights_hash(),
                "frame_interval_ps": model.config.time.frame_interval_ps,
                "coarse_stride": model.config.time.coarse_stride,
                "parameterization": model.config.flow.parameterization,
                "coord_scale_nm": model.config.flow.coord_scale_nm,
                "provenance": model.provenance,
            }
        ),
    }


@contextmanager
def _torchscript_is_intended():
    """Silence PyTorch's TorchScript deprecation notice.

    TorchScript is deliberate here: it is the format openmm-torch's
    ``TorchForce`` and libtorch load, which ``torch.export`` does not replace.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*torch\.jit.*deprecated")
        yield


def script_network(model) -> torch.jit.ScriptModule:
    """``torch.jit.script`` of the model's velocity network (in eval mode)."""
    with _torchscript_is_intended():
        return torch.jit.script(model.net.eval())


def export_torchscript(model, out_dir: str | Path) -> dict[str, Path]:
    """Write ``velocity_net.pt`` and ``sampler_step.pt`` into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    extra = _extra_files(model)
    paths = {"network": out_dir / "velocity_net.pt", "step": out_dir / "sampler_step.pt"}
    with _torchscript_is_intended():
        torch.jit.save(script_network(model), str(paths["network"]), _extra_files=extra)
        torch.jit.save(torch.jit.script(SamplerStep(model.net.eval())), str(paths["step"]), _extra_files=extra)
    return paths


class ExportArchiveError(ValueError):
    """A file is not a TorchScript archive written by :func:`export_torchscript`."""


def read_extra_files(path: str | Path) -> dict[str, dict]:
    """The metadata stored in an exported archive, parsed from JSON.

    Raises :class:`ExportArchiveError` for a file that is no TorchScript archive, or one that another
    program wrote (without BioMD's metadata).
    """
    files = {name: "" for name in EXTRA_FILES}
    try:
        with _torchscript_is_intended():
            torch.jit.load(str(path), _extra_files=files, map_location="cpu")
    except RuntimeError as exc:  # torch.save pickles, zips of something else, files cut short
        raise ExportArchiveError(f"{path} is not a TorchScript archive ({str(exc).splitlines()[0]}); "
                                 "write one with `biomd export`") from None
    parsed = {}
    for name, text in files.items():
        try:
            parsed[name] = json.loads(text)
        except ValueError:
            raise ExportArchiveError(f"{path} is a TorchScript archive without BioMD's {name}: it was not "
                                     "written by `biomd export`") from None
    return parsed
