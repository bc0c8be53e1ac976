"""Writing one benchmark's section of BENCHMARKS.md (between its begin/end markers)."""

from __future__ import annotations

import json
from pathlib import Path

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def replace_section(name: str, heading: str, text: str, path: Path = BENCHMARKS_MD) -> None:
    """Put ``text`` between ``<!-- name:begin -->`` and ``<!-- name:end -->``; append a new section if absent."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    doc = path.read_text()
    section = f"{begin}\n{text}\n{end}"
    if begin in doc:
        start, stop = doc.index(begin), doc.index(end) + len(end)
        doc = doc[:start] + section + doc[stop:]
    else:
        doc += f"\n## {heading}\n\n{section}\n"
    path.write_text(doc)


def publish(out: Path, result: dict, name: str, heading: str, text: str) -> None:
    """Write a benchmark's ``result`` JSON to ``out``, its table ``text`` into its BENCHMARKS.md section, and
    print the table."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    replace_section(name, heading, text)
    print(text)
