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
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any, TypeVar

T = TypeVar("T")


def available_cpus() -> list[int]:
    """CPUs this process may run on (sorted; ``[]`` where the OS has no affinity interface)."""
    if not hasattr(os, "sched_getaffinity"):
        return []
    return sorted(os.sched_getaffinity(0))


def cpu_for(slot: int) -> int | None:
    """The ``slot``-th allowed CPU, cyclically (``None`` where affinity cannot be set)."""
    cpus = available_cpus()
    return cpus[slot % len(cpus)] if cpus else None


def pin_calling_thread(cpu: int | None) -> bool:
    """Keep the calling thread on ``cpu`` from now on (for a worker thread of one's own, for its whole life);
    whether it took effect (as :func:`pinned_to_cpu`)."""
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return False
    try:
        os.sched_setaffinity(0, {int(cpu)})
    except OSError:
        return False
    return True


@contextlib.contextmanager
def pinned_to_cpu(cpu: int | None) -> Iterator[bool]:
    """Run the block with the *calling thread* on ``cpu`` only; its previous mask is restored after.

    Yields whether the pin took effect (``False`` for ``cpu=None``, where the OS has no affinity
    interface, or where the CPU is not allowed). Other threads are unaffected, so a library can use it
    around its own OpenMM calls without moving the user's threads.
    """
    before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None  # pid 0: the calling thread
    if not pin_calling_thread(cpu):
        yield False
        return
    try:
        yield True
    finally:
        os.sched_setaffinity(0, before)


def run_pinned(function: Callable[[T], Any], items: Iterable[T], cpus: list[int]) -> Iterator[tuple[int, Any]]:
    """Call ``function(item)`` for every item, side by side on ``cpus``: one call at a time per core, each
    made on a worker thread pinned to its core for the whole call (so a Context it makes runs there).

    Yields ``(index in items, result)`` as calls finish (not in order). When a call raises, no new call
    starts, the running ones finish, and the first exception is raised. ``function`` must be safe to run
    on several threads at once (OpenMM releases the GIL while it computes).
    """
    items = list(items)
    if not cpus:
        raise ValueError("run_pinned needs at least one CPU")
    free: queue.SimpleQueue = queue.SimpleQueue()
    for cpu in cpus:
        free.put(int(cpu))
    stop = threading.Event()  # set by a failing call (or a caller that stopped early): start no more

    def call(item: T) -> Any:
        cpu = free.get()  # a worker takes a core only once it runs: never two calls on one core
        try:
            if stop.is_set():
                return None
            with pinned_to_cpu(cpu):
                return function(item)
        except BaseException:
            stop.set()
            raise
        finally:
            free.put(cpu)

    with ThreadPoolExecutor(min(len(cpus), max(1, len(items))), thread_name_prefix="biomd-pinned") as pool:
        futures = {pool.submit(call, item): i for i, item in enumerate(items)}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for future in sorted(done, key=futures.get):
                    if future.exception() is not None:
                        raise future.exception()
                    yield futures[future], future.result()
        finally:  # the running calls end; the others are cancelled
            stop.set()
            for future in pending:
                future.cancel()


def run_on_cpus(function: Callable[[T], Any], items: Iterable[T],
                cpus: Sequence[int] | None) -> Iterator[tuple[int, Any]]:
    """:func:`run_pinned` on ``cpus``; with ``cpus=None`` the calls one after another on the calling thread
    (yielded in order)."""
    return enumerate(map(function, items)) if cpus is None else run_pinned(function, items, list(cpus))


def distinct_cpus(cpus: Iterable[int] | None) -> tuple[int, ...] | None:
    """``cpus`` as a tuple of distinct CPU numbers ≥ 0 (a settings field's check); ``None`` stays ``None``."""
    if cpus is None:
        return None
    checked = tuple(int(c) for c in cpus)
    if not checked or min(checked) < 0 or len(set(checked)) != len(checked):
        raise ValueError(f"cpus must be distinct CPU numbers >= 0, not {cpus}")
    for cpu in checked:
        allowed_cpu(cpu)
    return checked


def allowed_cpu(cpu: int | None) -> int | None:
    """``cpu``, once checked to be a CPU this process may run on (where the OS says which; ``None`` passes).

    A pin to any other CPU would silently not take effect, and the run would record a core it never used.
    """
    allowed = available_cpus()
    if cpu is not None and allowed and int(cpu) not in allowed:
        raise ValueError(f"CPU {cpu} is not one this process may run on (allowed: {' '.join(map(str, allowed))})")
    return cpu


class DedicatedThreads:
    """A worker thread of its own for each core of ``cpus``, pinned there for its whole life; slot ``i``
    of ``n_slots`` belongs to the thread of ``cpus[i % len(cpus)]``, so a Context made by a call in slot
    ``i`` is made and driven from that core. Slots sharing a core share its thread: their calls run one
    after another there (threads taking turns on one core only wait for each other).

    Unlike :func:`run_pinned`, every slot keeps its thread between calls: a long-lived object (an
    OpenMM Context with its pinned worker threads) made in slot ``i`` is used by later calls in slot
    ``i``. ``cpus=None``: no threads, calls run one after another on the calling thread.
    """

    def __init__(self, n_slots: int, cpus: Sequence[int] | None) -> None:
        self.cpus = None if cpus is None else list(cpus)
        if self.cpus is not None and not self.cpus:
            raise ValueError("DedicatedThreads needs at least one CPU (or cpus=None)")
        self.n_slots = int(n_slots)
        if self.n_slots < 1:
            raise ValueError(f"DedicatedThreads needs at least one slot, not {n_slots}")
        self._pools = [] if self.cpus is None else [
            ThreadPoolExecutor(1, thread_name_prefix=f"biomd-cpu{cpu}", initializer=pin_calling_thread,
                               initargs=(cpu,))
            for cpu in self.cpus[: self.n_slots]
        ]

    def run(self, calls: Sequence[tuple[int, Callable[[], T]]]) -> list[T]:
        """Each ``(slot, call)`` on its slot's thread, side by side (calls on one thread in the order
        given); their results in order once every call has returned. When calls raise, the first one's
        exception (in order) is raised after all have ended, so no call is left running behind the
        caller's back."""
        if self.cpus is None:
            return [call() for _, call in calls]
        for slot, _ in calls:
            if not 0 <= slot < self.n_slots:
                raise IndexError(f"slot {slot} is not in 0..{self.n_slots - 1}")
        futures = [self._pools[slot % len(self._pools)].submit(call) for slot, call in calls]
        wait(futures)
        for future in futures:
            if future.exception() is not None:
                raise future.exception()
        return [future.result() for future in futures]

    def close(self) -> None:
        for pool in self._pools:
            pool.shutdown(wait=True)

    def __enter__(self) -> DedicatedThreads:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
