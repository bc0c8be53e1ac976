"""``JumpGenerator``'s policy when every draw of a coarse block fails the gate.

The sampler is real (the shipped alanine-dipeptide model); the gate is scripted, because the policy
under test is *which* frames are kept when the gate refuses a block, and a real gate's verdicts on
random draws cannot be chosen.  The real gate is exercised in ``test_propagator.py`` (a poisoned model), ``test_unbind.py`` and end to end.
"""

from __future__ import annotations

import numpy as np
import torch

from biomd_core.io import load_model
from biomd_core.sampling import HierarchicalSampler, SolverConfig
from openmm_biomd.data.systems import get_system
from openmm_biomd.propagator.gate import GateVerdict
from openmm_biomd.propagator.generation import JumpGenerator


class ScriptedGate:
    """Fails the ``i``-th check of a whole coarse block at frame ``script[i]`` (``None``: passes); every other
    check (kept prefixes, interpolated frames) passes unchanged.  Records what it was shown."""

    def __init__(self, block_frames: int, script: list):
        self.block_frames, self.script = block_frames, list(script)
        self.blocks, self.others = [], []

    def check(self, frames_nm):
        frames = np.array(frames_nm, dtype=np.float64)
        if len(frames) == self.block_frames and self.script:
            self.blocks.append(frames)
            failing = self.script.pop(0)
            if failing is not None:
                return GateVerdict(False, "clash", failing, f"scripted failure at frame {failing}")
        else:
            self.others.append(frames)
        return GateVerdict(True, frames=frames)

    def check_each(self, frames_nm):
        """Each frame judged alone, as :meth:`PhysicsGate.check_each` does."""
        return [self.check(frame[None]) for frame in np.asarray(frames_nm, dtype=np.float64)]


def _generator(script: list, retries: int) -> tuple[JumpGenerator, ScriptedGate, np.ndarray]:
    model = load_model("alanine-dipeptide")
    loaded = get_system("alanine-dipeptide").load()
    positions = np.asarray(loaded.positions, dtype=np.float64)
    graph = model.featurize(loaded.topology, positions_nm=positions)
    sampler = HierarchicalSampler(model.bind(graph), model.time, SolverConfig("euler", 2))
    gate = ScriptedGate(model.time.block_frames, script)
    return JumpGenerator(sampler, gate, steps_per_frame=1, retries=retries), gate, positions[graph.atom_indices]


def test_a_refused_block_keeps_the_longest_passing_start_of_any_draw():
    generator, gate, start = _generator([2, 0, 1], retries=2)
    block = generator.sampler.time.block_frames
    assert block >= 3
    k = generator.sampler.time.coarse_stride
    jump = generator.generate(start[None], block * k, [], torch.Generator().manual_seed(0))
    # three draws, all refused; the first got furthest (two frames), so its two frames are kept, not the
    # one frame of the last draw
    assert len(gate.blocks) == 3 and jump.retries == 2 and jump.rejections == {"clash": 3}
    assert len(jump.coarse) == 2 and jump.n_frames == 2 * k
    np.testing.assert_array_equal(gate.others[0], gate.blocks[0][:2])
    np.testing.assert_array_equal(jump.coarse, gate.blocks[0][:2])


def test_keeping_the_passing_prefix_goes_on_from_the_frames_before_the_refused_one():
    """With ``keep_passing_prefix`` the first draw's two frames before its refused third are kept at once (no
    re-draw); the block's remaining frames are drawn after them, conditioned on them as history."""
    generator, gate, start = _generator([2], retries=2)
    generator.keep_passing_prefix = True
    block = generator.sampler.time.block_frames
    k = generator.sampler.time.coarse_stride
    jump = generator.generate(start[None], block * k, [], torch.Generator().manual_seed(0))
    assert len(gate.blocks) == 1 and jump.retries == 0 and jump.rejections == {"clash": 1}
    np.testing.assert_array_equal(gate.others[0], gate.blocks[0][:2])  # the prefix, judged on its own
    rest = gate.others[1]
    assert len(rest) == block - 2, "the rest of the block, drawn after the kept frames"
    assert len(jump.coarse) == block and jump.n_frames == block * k
    np.testing.assert_array_equal(jump.coarse, np.concatenate([gate.blocks[0][:2], rest]))
    # refused at its first frame, a draw has no prefix to keep: it is re-drawn as without the option
    generator, gate, start = _generator([0, None], retries=2)
    generator.keep_passing_prefix = True
    jump = generator.generate(start[None], block * k, [], torch.Generator().manual_seed(0))
    assert len(gate.blocks) == 2 and jump.retries == 1 and len(jump.coarse) == block


def test_a_block_refused_at_its_first_frame_every_time_yields_nothing():
    generator, gate, start = _generator([0, 0], retries=1)
    k = generator.sampler.time.coarse_stride
    jump = generator.generate(start[None], generator.sampler.time.block_frames * k, [], torch.Generator().manual_seed(0))
    assert jump.n_frames == 0 and len(jump.coarse) == 0 and gate.others == []


def test_until_ends_the_jump_at_the_first_coarse_frame_it_holds_for():
    """``until`` (an unbinding path's exit test) marks the second coarse frame: only the two intervals up to
    it are interpolated, and the jump ends there."""
    generator, gate, start = _generator([None], retries=0)
    time_grid = generator.sampler.time
    k, block = time_grid.coarse_stride, time_grid.block_frames
    seen = []

    def until(coarse):
        seen.append(np.array(coarse))
        return np.arange(len(coarse)) >= 1

    jump = generator.generate(start[None], block * k, [], torch.Generator().manual_seed(0), until=until)
    assert len(seen) == 1 and len(seen[0]) == block, "asked once, about the whole accepted block"
    assert len(jump.coarse) == 2 and jump.n_frames == 2 * k
    assert sorted(jump.frames) == list(range(1, 2 * k + 1))
    np.testing.assert_array_equal(jump.frames[2 * k], gate.blocks[0][1])
    fine = [f for f in gate.others if len(f) == 1]
    assert len(fine) == 2 * (k - 1), "only the frames of the first two intervals were interpolated and gated"
    full = generator.generate(start[None], block * k, [], torch.Generator().manual_seed(0),
                              until=lambda c: c[:, 0, 0] > 1e9)
    assert full.n_frames == block * k, "a predicate that never holds changes nothing"
