"""The training objective of one batch of windows."""

from __future__ import annotations

import torch

from ..flow import auxiliary
from ..flow.augment import random_rotations, rotate_about_anchor
from ..flow.matching import clean_estimate, interpolate, sample_tau, velocity_loss
from ..flow.space import make_space
from ..model.biomd import BioMDModel
from ..model.pairs import FAR_HOPS, build_neighbors, lookup_hops
from ..model.system import SystemBatch
from ..sampling.schedules import WindowPlan

#: Candidate clash partners per atom, from the true anchor frame.
CLASH_NEIGHBORS = 16


def flow_matching_loss(
    model: BioMDModel,
    system: SystemBatch,
    frames_nm: torch.Tensor,
    plan: WindowPlan,
    generator: torch.Generator | None = None,
    augment: bool = True,
    shard: slice | None = None,
    net: torch.nn.Module | None = None,
) -> dict[str, torch.Tensor]:
    """Loss terms for windows ``frames_nm [B, T, N, 3]`` nm of ``system`` (``B`` rows).

    Random draws (rotations, τ, noise; on ``generator``'s device, CPU by
    default) are made for the whole batch, then only the rows in ``shard`` are
    used: data-parallel ranks sharing a seed thus split one global batch
    exactly.  ``net`` replaces ``model.net`` in the forward pass (e.g. its DDP
    wrapper).  Returns the weighted total ``loss`` and each term (``velocity``,
    ``bond``, ``clash``, ``centroid``).
    """
    cfg = model.config.flow
    b, t, n, _ = frames_nm.shape
    device = frames_nm.device
    rows = shard or slice(0, b)
    rotation = random_rotations(b, generator) if augment else torch.eye(3).expand(b, 3, 3)
    tau = sample_tau(plan.known_mask(n).expand(b, t, n), cfg, generator)
    noise = torch.randn(b, t, n, 3, generator=generator)
    # frames made known beyond the task's (drawn only when enabled, so other runs keep their random stream)
    extra_known = (torch.rand(b, t, 1, generator=generator) < cfg.known_frame_prob) if cfg.known_frame_prob > 0 else None
    frames_nm, rotation, tau, noise = frames_nm[rows], rotation[rows].to(device), tau[rows].to(device), noise[rows].to(device)
    system = system.select(list(range(b))[rows]) if system.batch_size == b else system
    b = frames_nm.shape[0]
    atom_mask = system.atom_mask
    # Padding atoms count as known: fixed, and outside every loss.
    known = plan.known_mask(n).to(device).expand(b, t, n) | ~atom_mask.unsqueeze(1)
    if extra_known is not None:
        known = known | extra_known[rows].to(device)
    tau = torch.where(known, torch.ones_like(tau), tau)
    frames_nm, anchor = rotate_about_anchor(frames_nm, frames_nm[:, plan.anchor_index], rotation, atom_mask)

    space = make_space(cfg.parameterization, cfg.coord_scale_nm, atom_mask)
    y = space.encode(frames_nm, anchor)
    y_tau = torch.where(known.unsqueeze(-1), y, interpolate(y, noise, tau))
    t_ps = plan.times(b).to(device)
    v = (net or model.net)(y_tau, tau, t_ps, anchor, *system.encoder_inputs())

    terms = {"velocity": velocity_loss(v, y, noise, known, atom_mask)}
    x_hat = space.decode(clean_estimate(y_tau, v, tau), anchor)
    terms["bond"] = auxiliary.bond_length_loss(x_hat, frames_nm, system.bonds, tau, known, atom_mask)
    partners, partner_mask = build_neighbors(anchor, atom_mask, CLASH_NEIGHBORS, dense=False, chunk=4096)
    far = lookup_hops(partners, system.topo_pairs, n) == FAR_HOPS
    terms["clash"] = auxiliary.clash_loss(x_hat, partners, partner_mask & far, cfg.clash_distance_nm, tau, known, atom_mask)
    terms["centroid"] = auxiliary.centroid_loss(x_hat, frames_nm, system.ligand_mask, tau, known)
    terms["loss"] = (
        terms["velocity"]
        + cfg.bond_weight * terms["bond"] / cfg.coord_scale_nm
        + cfg.clash_weight * terms["clash"] / cfg.coord_scale_nm**2
        + cfg.centroid_weight * terms["centroid"] / cfg.coord_scale_nm**2
    )
    return terms
