"""JSON-lines logs read back: a last record cut short by a kill is dropped, damage elsewhere is named."""

from __future__ import annotations

import pytest

from biomd_core.io.json_lines import DamagedLogError, read_json_lines


def test_a_last_record_cut_short_is_left_out(tmp_path):
    log = tmp_path / "metrics.jsonl"
    assert read_json_lines(log, "x") == []
    log.write_text('{"step": 0}\n\n{"step": 1}\n{"step": 2, "lo')
    assert read_json_lines(log, "x") == [{"step": 0}, {"step": 1}]
    log.write_text('{"step": 0}\n{"step": 1}')  # complete, only its newline missing: kept
    assert read_json_lines(log, "x") == [{"step": 0}, {"step": 1}]


@pytest.mark.parametrize("damaged", ['{"step": 1', "[1, 2]", "garbage"])
def test_a_damaged_record_before_the_last_is_an_error_naming_file_and_line(tmp_path, damaged):
    log = tmp_path / "jumps.jsonl"
    log.write_text('{"step": 0}\n' + damaged + '\n{"step": 2}\n')
    with pytest.raises(DamagedLogError, match=r"jumps.jsonl is damaged: line 2 is not a JSON record. Do this"):
        read_json_lines(log, "Do this")
