"""How far apart a trajectory's frames are, from the frame times its file carries (XTC, TRR, NetCDF...).

A DCD says it in its header (:mod:`biomd_core.io.dcd`); these formats store a time per frame instead.
mdtraj writes ``0, 1, 2, ...`` when it was given no times, so that sequence counts as unsaid.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: trajectory formats whose frames carry their own times (mdtraj's ``time``, ps); a DCD's are in its header
TIMED_FORMATS = (".xtc", ".trr", ".nc", ".ncdf", ".h5")


def spacing_from_times(times_ps) -> float | None:
    """Mean time between frames ``[T]`` ps, first to last (float32 times 50 ns in vary ±0.4 % frame to frame);
    ``None`` for fewer than two frames, times that do not increase, or mdtraj's placeholder 0, 1, 2, ..."""
    times = np.asarray(times_ps, dtype=np.float64)
    if len(times) < 2 or np.array_equal(times, np.arange(len(times))) or not np.all(np.diff(times) > 0):
        return None
    return float((times[-1] - times[0]) / (len(times) - 1))


def file_frame_spacing_ps(path: str | Path) -> float | None:
    """:func:`spacing_from_times` of the frame times in the file ``path`` of a :data:`TIMED_FORMATS` format
    other than HDF5 (read without a topology); ``None`` for other formats, or a file mdtraj cannot read."""
    import mdtraj

    suffix = Path(path).suffix.lower()
    if suffix not in TIMED_FORMATS or suffix == ".h5":  # (an HDF5 file's reader wants its topology)
        return None
    try:
        with mdtraj.open(str(path)) as trajectory_file:
            # (xyz, time, ...) for each of these formats; one atom's coordinates, not the whole file's
            times = trajectory_file.read(atom_indices=[0])[1]
    except (OSError, ValueError, IndexError, TypeError):
        return None
    return spacing_from_times(times)
