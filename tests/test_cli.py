"""The ``biomd`` command line."""

from __future__ import annotations

import json

import pytest

from openmm_biomd.cli import main


def test_presets_json(capsys):
    assert main(["presets", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"tiny", "small", "paper"}
    assert rows["tiny"]["parameters"] <= 1_000_000
    assert abs(rows["paper"]["parameters"] - 341e6) / 341e6 < 0.05


def test_presets_table(capsys):
    assert main(["presets"]) == 0
    assert "paper" in capsys.readouterr().out


def test_export_of_a_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert main(["export", "--model", str(tmp_path / "nope.safetensors"), "--out", str(tmp_path / "x")]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_export_command_writes_archives(tmp_path, tiny_model):
    from biomd_core.io import save_model

    save_model(tiny_model, tmp_path / "m.safetensors")
    assert main(["export", "--model", str(tmp_path / "m.safetensors"), "--out", str(tmp_path / "ts")]) == 0
    assert (tmp_path / "ts" / "velocity_net.pt").exists() and (tmp_path / "ts" / "sampler_step.pt").exists()


def test_export_refuses_files_it_did_not_write_and_names_an_archive_given_as_the_model(tmp_path, tiny_model,
                                                                                         capsys):
    from biomd_core.io import save_model

    save_model(tiny_model, tmp_path / "m.safetensors")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "velocity_net.pt").write_bytes(b"the user's own network")
    assert main(["export", "--model", str(tmp_path / "m.safetensors"), "--out", str(mine)]) == 2
    assert "`biomd export` would overwrite velocity_net.pt in" in capsys.readouterr().err
    assert (mine / "velocity_net.pt").read_bytes() == b"the user's own network"  # (it had been replaced)
    # its own folder it writes again; an archive it wrote is not a model to export (it was "truncated or corrupt?")
    for _ in range(2):
        assert main(["export", "--model", str(tmp_path / "m.safetensors"), "--out", str(tmp_path / "ts")]) == 0
    capsys.readouterr()
    assert main(["export", "--model", str(tmp_path / "ts" / "velocity_net.pt"), "--out", str(tmp_path / "x")]) == 2
    assert "velocity_net.pt is a zip archive (a TorchScript export" in capsys.readouterr().err


def test_a_torchscript_file_that_is_not_an_exported_network_is_refused_clearly(tmp_path, tiny_model):
    """What `biomd run --model FILE.pt` loads: the step archive was an AttributeError deep in the first jump,
    another program's archive a bare JSONDecodeError, a pickle PyTorch's own message."""
    import torch

    from biomd_core.export import ExportArchiveError, export_torchscript
    from openmm_biomd.propagator.model_source import ScriptedModel, resolve_model

    paths = export_torchscript(tiny_model, tmp_path / "ts")
    assert isinstance(resolve_model(paths["network"]), ScriptedModel)
    with pytest.raises(ExportArchiveError, match=r"sampler_step.pt is not an exported velocity network .*"
                                                 r"pass the velocity_net.pt"):
        resolve_model(paths["step"])
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(tmp_path / "foreign.pt"))
    with pytest.raises(ExportArchiveError, match=r"foreign.pt is a TorchScript archive without BioMD's "
                                                 r"biomd_config.json: it was not written by `biomd export`"):
        resolve_model(tmp_path / "foreign.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "pickle.pt")
    with pytest.raises(ExportArchiveError, match=r"pickle.pt is not a TorchScript archive .*biomd export"):
        resolve_model(tmp_path / "pickle.pt")


def test_biomd_run_defaults_are_the_run_requests():
    """`biomd run`'s switches default to what RunRequest (the Python entry point) uses."""
    from openmm_biomd.cli import build_parser
    from openmm_biomd.run import RunRequest

    args = build_parser().parse_args(["run"])
    for switch, field in (("solver", "solver"), ("ode_steps", "ode_steps"), ("frame_md_steps", "frame_md_steps"),
                          ("thermalize_steps", "thermalize_steps"), ("steering", "steering"), ("time", "time"),
                          ("md_benchmark", "md_benchmark_ps"), ("md_interleave", "md_interleave_ps"),
                          ("system", "system"), ("seed", "seed")):
        assert getattr(args, switch) == getattr(RunRequest, field), switch


def test_an_openmm_error_is_one_line_and_no_traceback(monkeypatch, capsys):
    """An OpenMM exception no module anticipated (here a real one: an unknown platform) ends in exit status 2."""
    import openmm

    from openmm_biomd import cli

    def refused(args):
        openmm.Platform.getPlatformByName("NoSuchPlatform")

    monkeypatch.setitem(cli.COMMANDS, "presets", (refused, *cli.COMMANDS["presets"][1:]))
    assert main(["presets"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("biomd presets: error: OpenMM refused: There is no registered Platform called")
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_an_interrupted_command_says_how_to_go_on(monkeypatch, capsys):
    """Ctrl-C: no traceback, exit status 130, and what happens to the files and how to resume."""
    from openmm_biomd import cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "presets", (interrupted, *cli.COMMANDS["presets"][1:]))
    assert main(["presets"]) == 130
    err = capsys.readouterr().err
    assert "biomd presets: interrupted. Files already written are kept; the same command resumes" in err


def test_reproduce_weights_refuses_flags_it_would_ignore(tmp_path, capsys):
    """``--stop-after-training`` and ``--parallel-md`` belong to a whole reproduction: with ``--reevaluate`` a
    re-evaluation had started and ignored them."""
    for argv, message in ((["--reevaluate", "--stop-after-training"], "--stop-after-training belongs to a whole "
                           "reproduction, not to --reevaluate"),
                          (["--extend", "--parallel-md"], "--parallel-md belongs to a whole reproduction, not to "
                           "--extend"),
                          (["--install", "--stop-after-training"], "--install needs the evaluated weights")):
        assert main(["reproduce-weights", "host-guest", "--root", str(tmp_path / "runs"), *argv]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_warnings_are_one_line_without_the_source_that_raised_them(monkeypatch):
    """A warning during a command (an unknown residue's bond orders, a DCD without a time step) is one line:
    Python's format had added a file name and the source line that raised it. The format is restored after."""
    import warnings

    from openmm_biomd import cli

    shown = []

    def warns(args):  # how a warning raised now would be written (pytest records warnings instead of printing)
        shown.append(warnings.formatwarning("the header gives no time step", UserWarning, "interactions.py", 1171,
                                            "warnings.warn(...)"))
        return 0

    monkeypatch.setitem(cli.COMMANDS, "presets", (warns, *cli.COMMANDS["presets"][1:]))
    before = warnings.formatwarning
    assert main(["presets"]) == 0
    assert shown == ["biomd: warning: the header gives no time step\n"]
    assert warnings.formatwarning is before


def test_demo_trains_samples_and_refuses_another_demo_into_its_folder(tmp_path, capsys):
    """`biomd demo` end to end at toy scale (3 steps, 2 rollouts); a second demo under other settings had replaced
    the first one's weights and summary without a word."""
    import json

    from biomd_core.io import load_model

    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--steps", "3", "--replicas", "2", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["train_steps"] == 3 and summary["seed"] == 0 and summary["n_replicas"] == 2
    assert summary["variance_ratio"] > 0 and len(summary["variance_ratio_per_pair"]) == 6  # 4 particles
    assert load_model(out / "model.safetensors").n_parameters() == summary["parameters"]
    assert (out / "torchscript").is_dir() and any((out / "torchscript").iterdir())
    written = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["demo", "--out", str(out), "--steps", "1", "--seed", "3", "--replicas", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "holds a demo with other settings" in err and "train_steps (there: 3, now: 1)" in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == written
    (out / "summary.json").write_text('{"task": "x"')  # damaged: taken for no record, the other demo had won
    written = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main(["demo", "--out", str(out), "--steps", "1", "--seed", "3", "--replicas", "2", "--quiet"]) == 2
    assert "summary.json is damaged (not a JSON object)" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == written
    assert main(["demo", "--out", str(tmp_path / "x"), "--steps", "0", "--quiet"]) == 2
    assert "--steps must be at least 1, got 0" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_a_folder_the_user_may_not_write_says_what_to_do(capsys):
    """An unwritable --out (sysfs refuses even root) was the bare "[Errno 1] Operation not permitted: ..."."""
    assert main(["export", "--model", "alanine-dipeptide", "--out", "/sys/biomd-test-out"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("biomd export: error: /sys/biomd-test-out: ") and "[Errno" not in err, err
    assert "may not read or write it. Check its permissions, or give an --out in a folder you can write to" in err
