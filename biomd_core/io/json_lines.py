"""JSON-lines logs (training ``metrics.jsonl``, the propagator's ``jumps.jsonl``) read back safely.

A run killed while it appends a record leaves that last line cut short; it was never complete, so it
is dropped.  A damaged line anywhere else (an edit, a bad copy) is an error naming the file and line.
"""

from __future__ import annotations

import json
from pathlib import Path


class DamagedLogError(ValueError):
    """A line of a JSON-lines log, other than a last line cut short, is not a JSON object."""


def read_json_lines(path: str | Path, remedy: str) -> list[dict]:
    """The records of the JSON-lines file ``path`` (``[]`` when it is missing).

    A last line without its newline that is not valid JSON (a write cut short by a kill) is left out;
    any other line that is not a JSON object raises :class:`DamagedLogError` saying ``remedy``.
    """
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.split("\n")
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            if number == len(lines):  # the last line, with no newline after it: the record being written
                break
            record = None
        if not isinstance(record, dict):
            raise DamagedLogError(f"{path} is damaged: line {number} is not a JSON record. {remedy}")
        records.append(record)
    return records
