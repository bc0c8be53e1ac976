"""Output folders are claimed by the commands that write them: a command that would overwrite a file it did not
write is refused before anything is written; files it does not write are no obstacle."""

from __future__ import annotations

import json

import pytest

from biomd_core.io.output_folder import (
    MARKER,
    OutputFolderError,
    check_output_folder,
    claim_output_folder,
    folder_owners,
    json_with_keys,
    release_output_folder,
)

SAMPLE_WRITES = ("summary.json", "trajectory.dcd", "replica_[0-9][0-9][0-9].dcd")
RUN_WRITES = ("summary.json", "trajectory.dcd", "report.md")
EVALUATE_WRITES = ("metrics.json", "report.md")


def test_a_new_folder_is_made_and_claimed_once(tmp_path):
    out = tmp_path / "a" / "b"
    assert claim_output_folder(out, "sample", SAMPLE_WRITES)
    assert folder_owners(out) == ["sample"]
    (out / "summary.json").write_text("{}")
    assert not claim_output_folder(out, "sample", SAMPLE_WRITES)  # its own output: rerun into it freely


def test_another_commands_files_are_not_overwritten(tmp_path):
    out = tmp_path / "run"
    claim_output_folder(out, "run", RUN_WRITES)
    (out / "trajectory.dcd").write_bytes(b"frames")
    (out / "report.md").write_text("run")
    with pytest.raises(OutputFolderError, match=r"`biomd sample` would overwrite trajectory.dcd in .*run, which "
                                                r"holds the output of `biomd run`: choose another --out"):
        claim_output_folder(out, "sample", SAMPLE_WRITES)
    with pytest.raises(OutputFolderError, match=r"`biomd evaluate` would overwrite report.md"):
        claim_output_folder(out, "evaluate", EVALUATE_WRITES)
    assert folder_owners(out) == ["run"] and (out / "trajectory.dcd").read_bytes() == b"frames"


def test_a_command_joins_a_folder_whose_files_it_leaves_alone_and_can_be_released(tmp_path):
    out = tmp_path / "samples"
    claim_output_folder(out, "sample", SAMPLE_WRITES)
    (out / "trajectory.dcd").write_bytes(b"frames")
    assert claim_output_folder(out, "evaluate", EVALUATE_WRITES)  # an evaluation beside its samples
    (out / "metrics.json").write_text("{}")
    assert folder_owners(out) == ["sample", "evaluate"]
    assert not claim_output_folder(out, "evaluate", EVALUATE_WRITES)  # and again, over its own metrics
    with pytest.raises(OutputFolderError, match=r"holds the output of `biomd sample and evaluate`"):
        check_output_folder(out, "run", RUN_WRITES)
    release_output_folder(out, "evaluate")
    assert folder_owners(out) == ["sample"]
    release_output_folder(out, "sample")
    assert not (out / MARKER).exists()


def test_unclaimed_files_that_would_be_overwritten_are_named(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "replica_003.dcd").write_bytes(b"x")
    (out / "summary.json").write_text("{}")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputFolderError, match=r"`biomd sample` would overwrite replica_003.dcd, summary.json in "
                                                r".*mine, which holds files not written by it: .*move those files"):
        check_output_folder(out, "sample", SAMPLE_WRITES)
    assert not (out / MARKER).exists()
    (out / "summary.json").unlink()
    (out / "replica_003.dcd").unlink()
    assert claim_output_folder(out, "sample", SAMPLE_WRITES)  # files it does not write are no obstacle
    assert (out / "notes.txt").read_text() == "mine"


def test_a_folder_the_command_wrote_before_folders_were_claimed_is_accepted(tmp_path):
    out = tmp_path / "old"
    out.mkdir()
    (out / "summary.json").write_text(json.dumps({"task": "forecast", "replicas": 1}))
    earlier = json_with_keys("summary.json", "task", "replicas")
    assert claim_output_folder(out, "sample", SAMPLE_WRITES, earlier) and folder_owners(out) == ["sample"]
    (out / MARKER).unlink()
    (out / "summary.json").write_text(json.dumps({"train_steps": 3}))  # another command's summary
    with pytest.raises(OutputFolderError, match="would overwrite summary.json"):
        claim_output_folder(out, "sample", SAMPLE_WRITES, earlier)
    (out / "summary.json").write_text("[1, 2")  # unreadable: not taken for an earlier output
    assert not earlier(out)


def test_a_damaged_marker_is_named_and_kept(tmp_path):
    """Taken for no claim, a damaged marker kept the folder's own command out (its files "not written by it")
    and was replaced by the next command's claim: now every command is refused, naming it, until it is mended."""
    out = tmp_path / "x"
    out.mkdir()
    (out / "trajectory.dcd").write_bytes(b"frames")
    for damaged in ("{not json", "[1, 2]", '{"commands": "run"}', '{"commands": [3]}', b"\xff\xfe"):
        marker = out / MARKER
        marker.write_bytes(damaged if isinstance(damaged, bytes) else damaged.encode())
        for command, writes in (("run", RUN_WRITES), ("evaluate", EVALUATE_WRITES)):  # its owner, a newcomer
            with pytest.raises(OutputFolderError, match=r"\.biomd-output\.json is damaged: it (holds|cannot be "
                                                        r"read).*not the list of biomd commands that wrote"):
                claim_output_folder(out, command, writes)
        assert marker.read_bytes() == (damaged if isinstance(damaged, bytes) else damaged.encode())
    marker.write_text(json.dumps({"commands": ["run"]}))  # the advice, followed
    assert not claim_output_folder(out, "run", RUN_WRITES)


def test_results_whose_record_is_gone_are_refused(tmp_path):
    """Results left without the record of their settings (deleted, or garbage) would be taken for a rerun's own:
    refused, naming the record and the results; a folder without such results, or with its record, passes."""
    from biomd_core.io.output_folder import refuse_results_without_record

    out = tmp_path / "umbrella"
    out.mkdir()
    refuse_results_without_record(out, "umbrella.json", ("window_[0-9][0-9][0-9]/result.json",))  # nothing there yet
    (out / "window_006").mkdir()  # a window a killed run had begun: no result, no obstacle
    refuse_results_without_record(out, "umbrella.json", ("window_[0-9][0-9][0-9]/result.json",))
    for i in range(6):
        (out / f"window_{i:03d}").mkdir()
        (out / f"window_{i:03d}" / "result.json").write_text("{}")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputFolderError, match=r"umbrella\.json is missing, but .* holds the results it recorded "
                                                r"the settings of \(window_000/result\.json, window_001/result\.json, "
                                                r"window_002/result\.json, window_003/result\.json and 2 more\): .* "
                                                r"Restore umbrella\.json from a copy"):
        refuse_results_without_record(out, "umbrella.json", ("window_[0-9][0-9][0-9]/result.json",))
    for garbage in ("{not json", "[1, 2]"):
        (out / "umbrella.json").write_text(garbage)
        with pytest.raises(OutputFolderError, match=r"umbrella\.json is damaged: it is not (valid JSON|a JSON object).*, but"):
            refuse_results_without_record(out, "umbrella.json", ("window_[0-9][0-9][0-9]/result.json",))
    (out / "umbrella.json").write_text(json.dumps({"settings": {}}))
    refuse_results_without_record(out, "umbrella.json", ("window_[0-9][0-9][0-9]/result.json",))
