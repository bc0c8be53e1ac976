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

from openmm_biomd.affinity import available_cpus, cpu_for, pinned_to_cpu, run_pinned
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
