"""The layout of a DCD file, read from its header (for checks mdtraj's reader does not make)."""

from __future__ import annotations

import contextlib
import os
import struct
import sys
from pathlib import Path
from typing import Any, Iterator

#: DCD stores its timestep in AKMA time units of this many ps (as OpenMM's DCDFile).
AKMA_TIME_PS = 0.04888821


def read_dcd_header(path: str | Path) -> dict:
    """The fields of an OpenMM-written DCD header.

    Returns
    -------
    dict
        ``n_frames``, ``first_step`` (step of the first frame), ``interval_steps``,
        ``timestep_ps``.
    """
    with open(path, "rb") as fh:
        head = fh.read(48)
    if len(head) < 48 or head[4:8] != b"CORD" or struct.unpack("<i", head[:4])[0] != 84:
        raise ValueError(f"{path} is not a DCD file")
    n_frames, first_step, interval = struct.unpack("<3i", head[8:20])
    (dt_akma,) = struct.unpack("<f", head[44:48])
    return {
        "n_frames": n_frames,
        "first_step": first_step,
        "interval_steps": interval,
        "timestep_ps": dt_akma * AKMA_TIME_PS,
    }


def dcd_frame_spacing_ps(header: dict) -> float | None:
    """Time between the frames of a DCD (:func:`read_dcd_header`'s ``header``), ps; ``None`` when the header
    does not say: no step, or mdtraj's placeholder of exactly 1 AKMA unit (0.0489 ps, no MD step)."""
    step, interval = header["timestep_ps"], header["interval_steps"]
    placeholder = abs(step / AKMA_TIME_PS - 1.0) < 1e-5
    return None if step <= 0 or interval <= 0 or placeholder else step * interval


def dcd_layout(fh) -> tuple[int, int, int, int]:
    """``(header_bytes, frame_bytes, first_step, interval)`` of a DCD file as OpenMM and mdtraj write it (CHARMM
    layout, little-endian, 32-bit record markers, no fixed atoms, three dimensions); ``ValueError`` for one that
    is not (an X-PLOR file, fixed atoms or a fourth dimension change the layout)."""
    head = fh.read(100)
    if len(head) < 100 or head[4:8] != b"CORD" or struct.unpack("<i", head[:4])[0] != 84:
        raise ValueError(f"{fh.name} is not a DCD file")
    fixed_atoms, box, four_d, charmm = (struct.unpack("<i", head[at:at + 4])[0] for at in (40, 48, 52, 84))
    if not charmm or fixed_atoms or four_d:
        raise ValueError(f"{fh.name} is a DCD file of another layout (X-PLOR, fixed atoms or 4-D)")
    first_step, interval = struct.unpack("<2i", head[12:20])
    fh.seek(92)
    comments = struct.unpack("<i", fh.read(4))[0]
    fh.seek(104 + comments)
    n_atoms = struct.unpack("<i", fh.read(4))[0]
    header = 104 + comments + 8
    frame = (56 if box else 0) + 3 * (8 + 4 * n_atoms)
    return header, frame, first_step, interval


def dcd_cut_short(path: str | Path) -> str | None:
    """Why the DCD file ``path`` is not whole, in words (``None`` when it holds as many complete frames as
    its header counts and no part of another, or when its layout is not the plain one OpenMM and mdtraj
    write: then the reader decides).

    mdtraj reads a file cut short as the frames it still has, with no more than a message from its C
    plugin: a path cut short would seed windows or walkers from part of it, and training data would hold a
    gap in time, without a word.
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        return "it is empty"
    with open(path, "rb") as fh:
        start = fh.read(8)
        fh.seek(0)
        try:
            header, frame, _, _ = dcd_layout(fh)
            fh.seek(8)
            counted = struct.unpack("<i", fh.read(4))[0]
        except struct.error:  # the header's records run past the end of the file
            return f"it ends inside its header ({size} bytes)"
        except ValueError:  # not a plain DCD (the reader decides), or one cut before its first 100 bytes
            signed = len(start) == 8 and start[4:8] == b"CORD" and struct.unpack("<i", start[:4])[0] == 84
            return f"it ends inside its header ({size} bytes)" if signed and size < 100 else None
    whole, partial = divmod(size - header, frame)
    if whole >= 0 and not partial and whole >= counted:
        return None
    return (f"its header counts {counted} frames of {frame} bytes, the file holds {max(whole, 0)} whole ones"
            f"{' and part of another' if partial else ''}")


@contextlib.contextmanager
def quiet_c_stdout() -> Iterator[None]:
    """Silence text that C code prints to file descriptor 1 (mdtraj's DCD plugin greets every file it opens,
    which put two lines of "dcdplugin) ..." ahead of the JSON a command prints on stdout)."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no real stdout (some embedded interpreters): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def load_quietly(path: str | Path, **kwargs: Any):
    """``mdtraj.load(path, **kwargs)`` without the DCD plugin's greeting on stdout (:func:`quiet_c_stdout`)."""
    import mdtraj

    with quiet_c_stdout():
        return mdtraj.load(str(path), **kwargs)
