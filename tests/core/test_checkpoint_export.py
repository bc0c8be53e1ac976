"""Checkpoints (safe, strict, atomic) and TorchScript export (standalone, exact)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from biomd_core.export import SamplerStep, export_torchscript, read_extra_files, script_network
from biomd_core.io import CheckpointError, load_model, save_model
from biomd_core.model import batch_systems


def inputs(system, start, b=2, t=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = start.shape[1]
    x = torch.randn(b, t, n, 3, generator=g)
    tau = torch.rand(b, t, n, generator=g)
    tau[:, 0] = 1.0
    t_ps = (torch.arange(t, dtype=torch.float32) * 10.0).expand(b, t)
    return x, tau, t_ps, start.expand(b, -1, -1), system.expand(b)


@pytest.fixture
def system(alanine_graph):
    return batch_systems([alanine_graph])


@pytest.fixture
def start(alanine):
    return torch.tensor(alanine[1], dtype=torch.float32).unsqueeze(0)


def test_checkpoint_round_trip(tmp_path, tiny_model, system, start):
    tiny_model.provenance = {"data": "unit test"}
    path = save_model(tiny_model, tmp_path / "m.safetensors")
    loaded = load_model(path)
    assert loaded.config == tiny_model.config
    assert loaded.vocabs == tiny_model.vocabs
    assert loaded.provenance == {"data": "unit test"}
    assert loaded.weights_hash() == tiny_model.weights_hash()
    x, tau, t_ps, s, sysb = inputs(system, start)
    with torch.no_grad():
        assert torch.equal(tiny_model.net(x, tau, t_ps, s, *sysb.encoder_inputs()), loaded.net(x, tau, t_ps, s, *sysb.encoder_inputs()))


def test_checkpoint_header_records_time_grid_and_version(tmp_path, tiny_model):
    from biomd_core.io.checkpoint import read_metadata
    from biomd_core.version import __version__

    meta = read_metadata(save_model(tiny_model, tmp_path / "m.safetensors"))
    assert float(meta["frame_interval_ps"]) == tiny_model.config.time.frame_interval_ps
    assert int(meta["coarse_stride"]) == tiny_model.config.time.coarse_stride
    assert meta["package_version"] == __version__


def test_truncated_and_corrupt_checkpoints_give_clear_errors(tmp_path, tiny_model):
    path = save_model(tiny_model, tmp_path / "m.safetensors")
    data = path.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_model(tmp_path / "trunc.safetensors")
    flipped = bytearray(data)
    flipped[-100] ^= 0xFF  # a weight byte, header intact
    (tmp_path / "flip.safetensors").write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="sha256"):
        load_model(tmp_path / "flip.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "junk.safetensors")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_model(tmp_path / "missing.safetensors")


def test_unknown_config_key_in_checkpoint_is_refused(tmp_path, tiny_model):
    from safetensors.torch import load_file, save_file

    from biomd_core.io.checkpoint import read_metadata

    path = save_model(tiny_model, tmp_path / "m.safetensors")
    meta = read_metadata(path)
    config = json.loads(meta["config"])
    config["network"]["secret_flag"] = 1
    meta["config"] = json.dumps(config)
    save_file(load_file(str(path)), str(tmp_path / "bad.safetensors"), metadata=meta)
    with pytest.raises(CheckpointError, match="secret_flag"):
        load_model(tmp_path / "bad.safetensors")


def test_an_edited_time_grid_in_the_header_is_refused(tmp_path, tiny_model):
    """Editing the header's Δt (or the config's) to run a model at another time step loaded silently before."""
    from safetensors.torch import load_file, save_file

    from biomd_core.io.checkpoint import read_metadata

    path = save_model(tiny_model, tmp_path / "m.safetensors")
    tensors, meta = load_file(str(path)), read_metadata(path)
    edits = {"frame_interval_ps": "2.0", "coarse_stride": "x"}
    config = json.loads(meta["config"])
    config["time"]["frame_interval_ps"] *= 2
    for key, value in [*edits.items(), ("config", json.dumps(config))]:
        save_file(tensors, str(tmp_path / "edited.safetensors"), metadata={**meta, key: value})
        with pytest.raises(CheckpointError, match=r"edited.safetensors: the header's (frame_interval_ps|coarse_stride) "
                                                  r".* is not its config's .*fine-tune it on the new grid"):
            load_model(tmp_path / "edited.safetensors")
    assert load_model(path).time.frame_interval_ps == tiny_model.time.frame_interval_ps


def test_failed_save_leaves_existing_checkpoint_intact(tmp_path, tiny_model, monkeypatch):
    import safetensors.torch

    path = save_model(tiny_model, tmp_path / "m.safetensors")
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    with pytest.raises(OSError):
        save_model(tiny_model, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_torchscript_matches_eager(tiny_model, system, start):
    scripted = script_network(tiny_model)
    x, tau, t_ps, s, sysb = inputs(system, start)
    with torch.no_grad():
        eager = tiny_model.net(x, tau, t_ps, s, *sysb.encoder_inputs())
        ts = scripted(x, tau, t_ps, s, *sysb.encoder_inputs())
    assert eager.abs().max() > 1e-3
    assert torch.allclose(eager, ts, atol=1e-5, rtol=0)


def test_torchscript_sparse_mode_matches_eager(tiny_model, system, start):
    from biomd_core.config import replace
    from biomd_core.model import BioMDModel

    cfg = replace(tiny_model.config, network=replace(tiny_model.config.network, attention="sparse", n_neighbors=8, atom_chunk=5))
    model = BioMDModel(cfg, tiny_model.vocabs).eval()
    model.load_state_dict(tiny_model.state_dict())
    x, tau, t_ps, s, sysb = inputs(system, start, seed=1)
    with torch.no_grad():
        eager = model.net(x, tau, t_ps, s, *sysb.encoder_inputs())
        ts = script_network(model)(x, tau, t_ps, s, *sysb.encoder_inputs())
    assert torch.allclose(eager, ts, atol=1e-5, rtol=0)


def test_sampler_step_archive_matches_eager_step(tiny_model, system, start):
    x, tau, t_ps, s, sysb = inputs(system, start)
    known = tau >= 1.0
    with torch.no_grad():
        enc = tiny_model.net.encode(s, *sysb.encoder_inputs())
        step = SamplerStep(tiny_model.net)
        eager = step(x, x, known, 0.25, 0.5, t_ps, *enc)
        ts = torch.jit.script(step)(x, x, known, 0.25, 0.5, t_ps, *enc)
    assert torch.allclose(eager, ts, atol=1e-5, rtol=0)
    assert torch.equal(ts[known], x[known])


def test_exported_archives_load_without_biomd(tmp_path, tiny_model, system, start):
    paths = export_torchscript(tiny_model, tmp_path / "export")
    x, tau, t_ps, s, sysb = inputs(system, start)
    torch.save({"args": (x, tau, t_ps, s, *sysb.encoder_inputs())}, tmp_path / "inputs.pt")
    with torch.no_grad():
        expected = tiny_model.net(x, tau, t_ps, s, *sysb.encoder_inputs())
    torch.save(expected, tmp_path / "expected.pt")
    script = f"""
import sys
sys.modules['biomd_core'] = None  # any import of our package would now fail
sys.modules['openmm_biomd'] = None
import torch
net = torch.jit.load({str(paths['network'])!r})
step = torch.jit.load({str(paths['step'])!r})
args = torch.load({str(tmp_path / 'inputs.pt')!r})['args']
out = net(*args)
assert torch.allclose(out, torch.load({str(tmp_path / 'expected.pt')!r}), atol=1e-5)
enc = net.encode(*args[3:])
y = step(args[0], args[0], args[1] >= 1.0, 0.0, 0.5, args[2], *enc)
assert y.shape == args[0].shape
print('ok')
"""
    result = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    meta = read_extra_files(paths["network"])
    assert meta["metadata.json"]["weights_sha256"] == tiny_model.weights_hash()
    assert meta["biomd_config.json"]["time"]["coarse_stride"] == tiny_model.config.time.coarse_stride
