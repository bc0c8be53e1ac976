"""Pinning single-thread OpenMM CPU Contexts to one core (:mod:`openmm_biomd.affinity`).

The speed it buys depends on the machine (a VM whose idle vCPUs halt: several times), so nothing here
times anything; what is tested is that the pin holds where it should, is undone after, and changes no
number.  Real OpenMM (the bundled alanine dipeptide).
"""

from __future__ import annotations

import os
import threading

import numpy as np
import openmm
import openmm.unit as unit
import pytest

from openmm_biomd.affinity import DedicatedThreads, available_cpus, cpu_for, pinned_to_cpu, run_pinned
from openmm_biomd.data.systems import get_system
from openmm_biomd.run import InterleavedMD, time_plain_md

needs_affinity = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this OS")


@needs_affinity
def test_pin_holds_in_the_block_for_the_calling_thread_only_and_is_undone():
    before = os.sched_getaffinity(0)
    cpu = cpu_for(1)
    assert cpu in available_cpus() and cpu_for(len(available_cpus()) + 1) == cpu  # cyclic
    seen: dict = {}
    outside = threading.Thread(target=lambda: seen.update(outside=os.sched_getaffinity(0)))
    with pinned_to_cpu(cpu) as pinned:
        assert pinned and os.sched_getaffinity(0) == {cpu}
        inside = threading.Thread(target=lambda: seen.update(inside=os.sched_getaffinity(0)))
        inside.start()
        inside.join()
    outside.start()
    outside.join()
    assert os.sched_getaffinity(0) == before
    assert seen["inside"] == {cpu}  # a thread made in the block inherits the pin: so do a Context's workers
    assert seen["outside"] == before


def test_pin_to_nothing_or_to_a_missing_cpu_changes_nothing():
    before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    with pinned_to_cpu(None) as pinned:
        assert not pinned
    with pinned_to_cpu(10**6) as pinned:  # not a CPU of this machine: refused by the OS, no pin
        assert not pinned
        if before is not None:
            assert os.sched_getaffinity(0) == before


@needs_affinity
def test_plain_md_yardstick_tries_a_pinned_context_and_pinned_dynamics_are_the_same():
    loaded = get_system("alanine-dipeptide").load()
    before = os.sched_getaffinity(0)
    timing = time_plain_md(loaded, "CPU", 0.2, seed=1)
    pinned = [t for t in timing["trials"] if t["pinned_cpu"] is not None]
    assert len(pinned) == 1 and pinned[0]["properties"] == {"Threads": "1"}
    assert len(timing["trials"]) == (os.cpu_count() or 1) + 1
    assert os.sched_getaffinity(0) == before

    platform = openmm.Platform.getPlatformByName("CPU")
    free = InterleavedMD(loaded, platform, {"Threads": "1"}, seed=3, slice_ps=0.1)
    held = InterleavedMD(loaded, platform, {"Threads": "1"}, seed=3, slice_ps=0.1, pinned_cpu=cpu_for(0))
    records: list[dict] = [{}, {}]
    for md, record in zip((free, held), records):
        md.time_slice(record)
    assert records[0]["steps"] == records[1]["steps"] == 50 and os.sched_getaffinity(0) == before

    def positions(md):
        return md.simulation.context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(
            unit.nanometer)

    np.testing.assert_array_equal(positions(free), positions(held))  # the same trajectory, pinned or not


@needs_affinity
def test_run_pinned_runs_each_call_on_its_own_core_one_call_per_core_and_stops_at_an_error():
    cpus = sorted({cpu_for(0), cpu_for(1)})
    lock = threading.Lock()
    busy: set = set()
    seen = []

    def call(item: int) -> int:
        (core,) = os.sched_getaffinity(0)  # pinned for the whole call
        with lock:
            assert core not in busy  # never two calls on one core at once
            busy.add(core)
        try:
            return item * item
        finally:
            with lock:
                busy.discard(core)
                seen.append(core)

    before = os.sched_getaffinity(0)
    results = dict(run_pinned(call, range(8), cpus))
    assert results == {i: i * i for i in range(8)} and set(seen) <= set(cpus)
    assert os.sched_getaffinity(0) == before

    started = []

    def fails_at_two(item: int) -> int:
        started.append(item)
        if item == 2:
            raise RuntimeError("window 2 exploded")
        return item

    with pytest.raises(RuntimeError, match="window 2 exploded"):
        list(run_pinned(fails_at_two, range(50), [cpus[0]]))  # one core: calls in order
    assert started == [0, 1, 2]  # nothing started after the failure
    with pytest.raises(ValueError, match="at least one CPU"):
        list(run_pinned(call, range(2), []))


@needs_affinity
def test_dedicated_threads_keep_one_pinned_thread_per_slot_and_raise_only_after_every_call_ended():
    cpus = available_cpus()[:2]
    before = os.sched_getaffinity(0)

    def where() -> tuple[int, frozenset]:
        return threading.get_ident(), frozenset(os.sched_getaffinity(0))

    with DedicatedThreads(3, cpus) as threads:  # three slots on (at most) two cores: slot 2 shares slot 0's
        first = threads.run([(slot, where) for slot in range(3)])
        again = threads.run([(slot, where) for slot in (2, 1, 0)])
        assert [t for t, _ in first] == [t for t, _ in reversed(again)]  # each slot keeps its thread
        assert [m for _, m in first] == [{cpus[i % len(cpus)]} for i in range(3)]
        threads_of = [t for t, _ in first]
        assert len(set(threads_of)) == len(cpus) and threading.get_ident() not in threads_of
        assert threads_of[2] == threads_of[0]  # one thread per core: slots sharing a core share it

        order = []
        threads.run([(0, lambda: order.append("slot 0")), (2, lambda: order.append("slot 2"))])
        assert order == ["slot 0", "slot 2"]  # on one core's thread: one after another, in the order given
        with pytest.raises(IndexError, match="slot 3"):
            threads.run([(3, where)])

        ended = threading.Event()

        def slow() -> str:
            ended.wait(0.2)
            ended.set()
            return "slow"

        def fails() -> str:
            raise RuntimeError("walker 1 exploded")

        with pytest.raises(RuntimeError, match="walker 1 exploded"):
            threads.run([(0, slow), (1, fails)])
        assert ended.is_set()  # the other call had ended before the error reached the caller
    assert os.sched_getaffinity(0) == before

    in_order = []
    assert DedicatedThreads(2, None).run([(1, lambda: in_order.append(1) or 1), (0, lambda: in_order.append(0) or 0)]) \
        == [1, 0] and in_order == [1, 0]  # cpus=None: on the calling thread, one after another
    with pytest.raises(ValueError, match="at least one CPU"):
        DedicatedThreads(1, [])
    with pytest.raises(ValueError, match="at least one slot"):
        DedicatedThreads(0, [0])
