"""Small CSV tables of numbers (CV rows, profiles), written atomically and read back with their damage named.

Every command writes its tables with :func:`write_csv` (or in the same form: a header row of names, then rows of
numbers) and reads them with :func:`read_csv`, which turns a file cut short, edited or holding a NaN into a
:class:`~openmm_biomd.data.md.DamagedRunFileError` naming it.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .md import _atomic_write_bytes, damaged_file

__all__ = ["read_csv", "write_csv"]


def write_csv(path: Path, header: list[str], rows: np.ndarray | list, fmt: str = "%.8g") -> None:
    """A small CSV, atomically (NaN written as ``nan``)."""
    buffer = io.StringIO()
    array = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(header)) if len(rows) else \
        np.zeros((0, len(header)))
    np.savetxt(buffer, array, delimiter=",", header=",".join(header), comments="", fmt=fmt)
    _atomic_write_bytes(path, buffer.getvalue().encode())


def read_csv(path: Path, finite: bool = False, remedy: str | None = None,
             columns: list[str] | None = None) -> tuple[list[str], np.ndarray]:
    """``(header, [R, C] float64)`` of a CSV written by :func:`write_csv`; with ``finite``, a value that is not a
    finite number is damage (a NaN in a window's cv.csv had surfaced as pymbar's "cannot convert float NaN to
    integer"; a profile's empty bins are NaN); with ``columns``, so is another header (an emptied file had come
    back as ``[0, 1]``, an IndexError further on).  ``remedy``: what the damage message tells the user to do
    (:func:`~openmm_biomd.data.md.damaged_file`'s default)."""
    try:
        with open(path) as fh:
            header = fh.readline().strip().split(",")
    except UnicodeDecodeError as e:
        raise damaged_file(path, f"it is not text ({e})", remedy) from e
    if columns is not None and header != list(columns):
        raise damaged_file(path, f"its header is {header}, not {list(columns)}", remedy)
    try:
        data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
        if not data.size:  # (no rows: loadtxt's shape is [0, 1])
            data = data.reshape(0, len(header))
        if data.shape[1] != len(header):  # (a reshape had dealt rows of 4 into twice as many rows of 2)
            raise ValueError(f"its rows hold {data.shape[1]} numbers, its header names {len(header)} columns")
    except ValueError as e:
        raise damaged_file(path, f"its rows cannot be read as {len(header)} numbers each ({e})", remedy) from e
    if finite and not np.isfinite(data).all():
        row = int(np.flatnonzero(~np.isfinite(data).all(axis=1))[0])
        raise damaged_file(path, f"row {row + 1} holds a value that is not a finite number ({data[row].tolist()})",
                           remedy)
    return header, data
