"""Running a single-thread OpenMM CPU Context with its threads on one core.

OpenMM's CPU platform hands every step's work from the calling thread to a
worker thread of the Context's pool and waits for it, even with
``Threads=1``.  On a virtual machine whose idle vCPUs halt, each hand-off to
a thread on another (idle) vCPU pays that vCPU's wake-up, and small systems
take many hand-offs per step: on this project's 2-core CI VM, alanine
dipeptide (22 atoms, OBC implicit solvent) ran at 1.6–2.1 ms a step with its
threads free to move, 0.19–0.24 ms with the Context made and driven on one
core (0.25 ms unpinned whenever another process kept the second vCPU busy).
So the fastest plain MD of a small system on such a machine is a
single-thread Context pinned to a core, and the plain-MD yardstick of
``biomd run`` tries it; the hybrid's own OpenMM work gets the same treatment.

The pin must hold both when the Context is created (its worker threads
inherit the creating thread's CPU mask) and while it is driven (the calling
thread's own mask): :func:`pinned_to_cpu` around both.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


def available_cpus() -> list[int]:
    """CPUs this process may run on (sorted; ``[]`` where the OS has no affinity interface)."""
    if not hasattr(os, "sched_getaffinity"):
        return []
    return sorted(os.sched_getaffinity(0))


def cpu_for(slot: int) -> int | None:
    """The ``slot``-th allowed CPU, cyclically (``None`` where affinity cannot be set)."""
    cpus = available_cpus()
    return cpus[slot % len(cpus)] if cpus else None


@contextlib.contextmanager
def pinned_to_cpu(cpu: int | None) -> Iterator[bool]:
    """Run the block with the *calling thread* on ``cpu`` only; its previous mask is restored after.

    Yields whether the pin took effect (``False`` for ``cpu=None``, where the OS has no affinity
    interface, or where the CPU is not allowed). Other threads are unaffected, so a library can use it
    around its own OpenMM calls without moving the user's threads.
    """
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        yield False
        return
    before = os.sched_getaffinity(0)  # pid 0: the calling thread on Linux
    try:
        os.sched_setaffinity(0, {int(cpu)})
    except OSError:
        yield False
        return
    try:
        yield True
    finally:
        os.sched_setaffinity(0, before)
