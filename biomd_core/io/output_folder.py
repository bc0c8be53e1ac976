"""Which commands wrote an output folder, so that one command never overwrites another's results.

``biomd run``, ``sample``, ``evaluate``, ``train`` and ``demo`` write files of the same names
(``summary.json``, ``trajectory.dcd``, ``topology.pdb``, ``report.md``): a second command pointed at the
first one's ``--out`` used to overwrite its trajectory or summary without a word, and ``steer``,
``umbrella``, ``walkers``, ``interactions`` and ``export`` replaced a user's files of their names
(``path.dcd``, ``fes.csv``...).  Each of them (and ``unbind``) now claims its folder with
:func:`claim_output_folder`, which adds the command to a small marker file
(:data:`MARKER`).  A command is refused a folder holding a file it would write that it did not write
itself (by the marker); files it does not write are no obstacle (an evaluation beside its samples).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

#: the marker file in every claimed output folder: ``{"commands": ["sample", "evaluate"]}``
MARKER = ".biomd-output.json"


class OutputFolderError(ValueError):
    """An output folder holds files a command would overwrite that it did not write."""


def folder_owners(out: str | Path) -> list[str]:
    """The commands that claimed ``out`` (``["run"]``, ``["sample", "evaluate"]``…); ``[]``: unclaimed.

    A marker that is there but not ``{"commands": [names]}`` raises :class:`OutputFolderError`: taken for no
    claim, it had kept the folder's own command out of it (as files "not written by it") and been replaced by
    the next command's claim, its owners forgotten.
    """
    marker = Path(out) / MARKER
    try:
        text = marker.read_text()
    except FileNotFoundError:
        return []
    except PermissionError:  # (not damage: the command line says what to do about a file the user may not read)
        raise
    except (OSError, UnicodeDecodeError) as e:
        owners, why = None, f"it cannot be read ({e})"
    else:
        try:
            document = json.loads(text)
        except ValueError:
            document = None
        owners = document.get("commands") if isinstance(document, dict) else None
        why = f"it holds {text[:60]!r}"
    if isinstance(owners, list) and all(isinstance(owner, str) for owner in owners):
        return list(owners)
    raise OutputFolderError(
        f"{marker} is damaged: {why}, not the list of biomd commands that wrote {Path(out)} "
        '({"commands": ["run"]}, for instance). Write the commands that wrote the folder into it in that form, or '
        "delete it if no biomd command wrote the folder, or choose another --out")


def json_with_keys(name: str, *keys: str) -> Callable[[Path], bool]:
    """An ``earlier_output`` test: whether the folder's JSON file ``name`` is an object holding ``keys``."""

    def holds(folder: Path) -> bool:
        try:
            document = json.loads((folder / name).read_text())
        except (OSError, ValueError):
            return False
        return isinstance(document, dict) and set(keys) <= set(document)

    return holds


def refuse_a_file(out: str | Path, command: str) -> None:
    """Refuse an ``--out`` that is a file (it was OSError's "[Errno 17] File exists" once writing began)."""
    if Path(out).exists() and not Path(out).is_dir():
        raise OutputFolderError(f"--out {out} is a file, not a folder: give `biomd {command}` a folder (a new one, "
                                "or one it wrote)")


def check_output_folder(out: str | Path, command: str, writes: Iterable[str],
                        earlier_output: Callable[[Path], bool] | None = None) -> None:
    """Refuse ``out`` as the output folder of ``biomd COMMAND``, before anything is written or computed.

    ``writes``: the file names (glob patterns allowed) the command writes at the folder's top.
    ``earlier_output``: recognises a folder that this command wrote before folders were claimed
    (accepted, not refused).  Raises :class:`OutputFolderError` when the folder holds one of
    ``writes`` and the command has not claimed it.
    """
    out = Path(out)
    refuse_a_file(out, command)
    owners = folder_owners(out)
    if command in owners or not out.is_dir() or (earlier_output is not None and earlier_output(out)):
        return
    clashes = sorted({p.name for pattern in writes for p in out.glob(pattern)})
    if not clashes:
        return
    held = f"holds the output of `biomd {' and '.join(owners)}`" if owners else "holds files not written by it"
    raise OutputFolderError(
        f"`biomd {command}` would overwrite {', '.join(clashes)} in {out}, which {held}: choose another --out"
        + ("" if owners else ", or move those files away"))


def claim_output_folder(out: str | Path, command: str, writes: Iterable[str],
                        earlier_output: Callable[[Path], bool] | None = None) -> bool:
    """:func:`check_output_folder`, then make ``out`` (if needed) and add ``COMMAND`` to its marker.

    Returns whether the marker was written now (``False``: the command had claimed the folder before).
    """
    check_output_folder(out, command, writes, earlier_output)
    out = Path(out)
    owners = folder_owners(out)
    if command in owners:
        return False
    out.mkdir(parents=True, exist_ok=True)
    _write_marker(out, [*owners, command])
    return True


def _write_marker(out: Path, owners: list[str]) -> None:
    """Replace the marker atomically (a kill while writing it would leave a damaged one, which is refused)."""
    tmp = out / f"{MARKER}.tmp{os.getpid()}"
    tmp.write_text(json.dumps({"commands": owners}) + "\n")
    os.replace(tmp, out / MARKER)


def abandon_output_folder(out: str | Path, command: str, created: bool, claimed: bool) -> None:
    """After ``COMMAND`` was refused: remove the folder when it ``created`` it, else undo the claim it
    ``claimed`` now (:func:`release_output_folder`), so that the folder is left as it was found."""
    if created:
        shutil.rmtree(out, ignore_errors=True)
    elif claimed:
        release_output_folder(out, command)


def release_output_folder(out: str | Path, command: str) -> None:
    """Undo :func:`claim_output_folder` (a refused command leaves the folder as it found it)."""
    out = Path(out)
    owners = [owner for owner in folder_owners(out) if owner != command]
    if owners:
        _write_marker(out, owners)
    else:
        (out / MARKER).unlink(missing_ok=True)


def refuse_results_without_record(out: str | Path, record: str, results: Iterable[str]) -> None:
    """Refuse ``out`` when its ``record`` (the JSON file holding a run's settings, written before its first result)
    is gone or unreadable while results it covered (``results``: glob patterns under the folder, e.g.
    ``seed_[0-9][0-9][0-9]/result.json``: finished results, not the folders a killed run leaves) remain.

    Without the record nothing can check those results against this call's settings: a rerun under other settings
    had taken them for its own (an umbrella profile of windows sampled at another force constant, a campaign's
    seeds labelled with another bias) or deleted them (a sample's extra replicas).
    """
    out = Path(out)
    try:
        document = json.loads((out / record).read_text())
    except FileNotFoundError:
        state = "missing"
    except (OSError, ValueError) as e:  # (UnicodeDecodeError is a ValueError)
        state = f"damaged: it is not valid JSON ({e})"
    else:
        if isinstance(document, dict):
            return
        state = "damaged: it is not a JSON object"
    found = sorted({p.relative_to(out).as_posix() for pattern in results for p in out.glob(pattern)})
    if not found:
        return
    listed = ", ".join(found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
    raise OutputFolderError(
        f"{out / record} is {state}, but {out} holds the results it recorded the settings of ({listed}): they cannot "
        f"be checked against this call's settings, and would be taken for its own or written over. Restore {record} "
        "from a copy, or move those results away (or choose another --out) to start afresh")


def recorded_settings(out: str | Path, name: str, key: str | None = None) -> dict | None:
    """The settings an earlier run recorded in its folder's JSON file ``name`` (the object under ``key``, or
    the whole document); ``None`` when there is none to compare with (no file, not JSON, no such object)."""
    try:
        document = json.loads((Path(out) / name).read_text())
    except (OSError, ValueError):
        return None
    recorded = document.get(key) if isinstance(document, dict) and key is not None else document
    return recorded if isinstance(recorded, dict) else None


def refuse_other_settings(out: str | Path, earlier: dict | None, now: dict, what: str,
                          again: str = "run it again") -> None:
    """Refuse a command into ``out`` whose settings ``now`` differ from those of the ``earlier`` output there
    (``None``: nothing to compare), naming each that differs: it would replace (or, resumed, mix with) the
    earlier output.  ``what`` names that output (``"a sample"``), ``again`` what the same settings do."""
    from ..config import differences

    if earlier is None or earlier == now:
        return
    raise OutputFolderError(f"{out} holds {what} with other settings: {'; '.join(differences(earlier, now))}. "
                            f"Use a new --out, or the same settings to {again}")
