"""VelocityNet: invariances, chirality, dense vs sparse attention, presets, masking."""

from __future__ import annotations

import math

import pytest
import torch

from biomd_core.config import replace
from biomd_core.flow.augment import random_rotations
from biomd_core.model import BioMDModel, batch_systems
from biomd_core.model.pairs import lookup_hops
from biomd_core.model.presets import get_preset, preset_parameter_count
from biomd_core.model.system import topological_pairs


def encode_invariant(model, system, pos):
    return model.net.encode_invariant(pos, *system.encoder_inputs())


@pytest.fixture
def system(alanine_graph):
    return batch_systems([alanine_graph])


@pytest.fixture
def start(alanine):
    return torch.tensor(alanine[1], dtype=torch.float32).unsqueeze(0)


def test_encoder_invariant_to_rotation_and_translation(tiny_model, system, start):
    s, z, idx, _ = encode_invariant(tiny_model, system, start)
    rot = random_rotations(1, torch.Generator().manual_seed(3))[0]
    moved = start @ rot.T + torch.tensor([1.3, -0.4, 2.2])
    s2, z2, idx2, _ = encode_invariant(tiny_model, system, moved)
    assert torch.equal(idx, idx2)
    assert torch.allclose(s, s2, atol=2e-4) and torch.allclose(z, z2, atol=2e-4)


def test_encoder_tells_mirror_images_apart(tiny_model, system, start):
    s, _, _, _ = encode_invariant(tiny_model, system, start)
    mirrored = start * torch.tensor([-1.0, 1.0, 1.0])
    s_m, _, _, _ = encode_invariant(tiny_model, system, mirrored)
    # Only atoms with three bonded neighbours (stereocentres and the like) see the signed volume...
    has_chiral = (system.chiral_neighbors[0] >= 0).all(-1)
    diff = (s - s_m).abs().amax(-1)[0]
    assert diff[has_chiral].min() > 1e-3
    # ...and the change propagates; the two outputs are clearly different.
    assert (s - s_m).abs().max() > 1e-2


def test_sparse_attention_with_all_neighbours_equals_dense(tiny_model, system, start):
    dense_cfg = replace(tiny_model.config.network, attention="dense")
    sparse_cfg = replace(tiny_model.config.network, attention="sparse", n_neighbors=64, atom_chunk=7)
    dense = BioMDModel(replace(tiny_model.config, network=dense_cfg), tiny_model.vocabs).eval()
    sparse = BioMDModel(replace(tiny_model.config, network=sparse_cfg), tiny_model.vocabs).eval()
    dense.load_state_dict(tiny_model.state_dict())
    sparse.load_state_dict(tiny_model.state_dict())
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 22, 3, generator=g)
    tau = torch.rand(2, 5, 22, generator=g)
    t_ps = torch.arange(5.0).expand(2, 5)
    sys2 = system.expand(2)
    start2 = start.expand(2, -1, -1)
    with torch.no_grad():
        v_dense = dense.net(x, tau, t_ps, start2, *sys2.encoder_inputs())
        v_sparse = sparse.net(x, tau, t_ps, start2, *sys2.encoder_inputs())
    assert v_dense.abs().max() > 1e-3
    assert torch.allclose(v_dense, v_sparse, atol=1e-5)


def test_padding_atoms_do_not_change_real_outputs(tiny_model, alanine_graph, start):
    from biomd_core.data.synthetic import HarmonicParticles
    from biomd_core.featurize import featurize

    other = featurize(HarmonicParticles.square(30).topology())  # larger: alanine gets padded
    padded = batch_systems([alanine_graph, other])
    alone = batch_systems([alanine_graph])
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 3, 22, 3, generator=g)
    tau = torch.rand(1, 3, 22, generator=g)
    t_ps = torch.tensor([[0.0, 10.0, 20.0]])
    with torch.no_grad():
        v_alone = tiny_model.net(x, tau, t_ps, start, *alone.encoder_inputs())
        n = padded.n_atoms
        xp = torch.zeros(2, 3, n, 3)
        xp[0, :, :22] = x[0]
        taup = torch.ones(2, 3, n)
        taup[0, :, :22] = tau[0]
        startp = torch.zeros(2, n, 3)
        startp[0, :22] = start[0]
        startp[1] = torch.randn(n, 3)
        v_pad = tiny_model.net(xp, taup, t_ps.expand(2, 3), startp, *padded.encoder_inputs())
    assert torch.allclose(v_alone[0], v_pad[0, :, :22], atol=1e-5)


def test_paper_preset_has_published_size():
    n = preset_parameter_count("paper")
    assert abs(n - 341e6) / 341e6 < 0.05, n
    assert preset_parameter_count("tiny") <= 1_000_000
    assert 10e6 <= preset_parameter_count("small") <= 30e6


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(KeyError, match="known presets"):
        get_preset("huge")


def test_topological_pairs_of_a_chain():
    import numpy as np

    pairs = topological_pairs(5, np.array([[0, 1], [1, 2], [2, 3], [3, 4]]))
    table = {(int(i), int(j)): int(h) for i, j, h in pairs}
    assert table[(0, 1)] == 1 and table[(0, 2)] == 2 and table[(0, 3)] == 3 and (0, 4) not in table
    assert table[(4, 1)] == 3 and len(pairs) == 2 * (4 + 3 + 2)
    idx = torch.arange(5).expand(1, 5, 5)
    hops = lookup_hops(idx, torch.from_numpy(pairs).unsqueeze(0), 5)
    assert hops[0, 0].tolist() == [0, 1, 2, 3, 4]


def test_time_offsets_change_the_output(tiny_model, system, start):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 3, 22, 3, generator=g)
    tau = torch.full((1, 3, 22), 0.5)
    with torch.no_grad():
        a = tiny_model.net(x, tau, torch.tensor([[0.0, 1.0, 2.0]]), start, *system.encoder_inputs())
        b = tiny_model.net(x, tau, torch.tensor([[0.0, 100.0, 200.0]]), start, *system.encoder_inputs())
    assert (a - b).abs().max() > 1e-4
    assert math.isfinite(float(a.abs().sum()))



def test_bound_model_reuses_the_last_encoding_until_anchor_or_weights_change(tiny_model, alanine_graph, start):
    """A re-drawn piece is anchored on the same frames: the encoding is reused, but never across a
    different anchor or changed weights (training between two samples)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a fresh model's output layer is zero: give every weight a value
        for p in tiny_model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    bound = tiny_model.bind(alanine_graph)
    n = alanine_graph.n_atoms
    anchor = start.expand(2, -1, -1).contiguous()
    y, tau = torch.randn(2, 3, n, 3, generator=g), torch.full((2, 3, n), 0.4)
    t_ps = torch.tensor([[0.0, 1.0, 2.0]] * 2)
    first = bound.field(anchor)(y, tau, t_ps)
    encoding = bound._last_encoding[2]
    assert torch.equal(bound.field(anchor.clone())(y, tau, t_ps), first)
    assert bound._last_encoding[2] is encoding, "same anchor: encoding reused"
    moved = anchor + 0.01
    assert not torch.equal(bound.field(moved)(y, tau, t_ps), first)
    assert bound._last_encoding[2] is not encoding, "another anchor: encoded again"
    with torch.no_grad():
        for p in tiny_model.parameters():
            p.mul_(1.01)
    changed = bound.field(moved)(y, tau, t_ps)
    fresh = tiny_model.bind(alanine_graph).field(moved)(y, tau, t_ps)
    assert torch.equal(changed, fresh), "weights changed in place: encoding redone"
