"""Reporter dispatch at exact steps inside a jump, as ``Simulation._simulate`` does it.

``Simulation`` has no propagator hook, so the propagator reproduces OpenMM's
dispatch (OpenMM 8.6, ``app/simulation.py``): ask every reporter for its next
report, convert the old tuple answer (mdtraj's reporters still return it) to
the dict form, group the due reporters by whether they want positions wrapped
into the box, and hand each group one ``State``.

Planning happens *before* a jump is generated (the propagator must know which
sub-grid frames to make): :func:`plan_reports` asks each reporter with a
stand-in simulation whose ``currentStep`` is the step being planned.  Stock
reporters only read ``currentStep`` in ``describeNextReport``; anything else
is looked up on the real simulation.
"""

from __future__ import annotations

from typing import Any

_INCLUDES = ("positions", "velocities", "forces", "energy")


def describe(reporter: Any, simulation: Any) -> dict:
    """``reporter.describeNextReport`` as the dict form (``steps``, ``include``, ``periodic``)."""
    report = reporter.describeNextReport(simulation)
    if isinstance(report, tuple):
        converted = {"steps": report[0], "include": [_INCLUDES[i] for i in range(4) if report[i + 1]]}
        if len(report) > 5:
            converted["periodic"] = report[5]
        return converted
    return report


class _AtStep:
    """The simulation as it will be at ``step`` (for planning only)."""

    def __init__(self, simulation: Any, step: int) -> None:
        self._simulation = simulation
        self.currentStep = step

    def __getattr__(self, name: str) -> Any:
        return getattr(self._simulation, name)


def plan_reports(simulation: Any, start_step: int, n_steps: int) -> list[tuple[int, list[int]]]:
    """Reports due in ``(start_step, start_step + n_steps]``.

    Returns ``[(step offset, [reporter index, ...]), ...]`` in step order.
    """
    end = start_step + n_steps
    current = start_step
    plan = []
    while current < end and simulation.reporters:
        due: list[int] = []
        step_to = end - current
        for i, reporter in enumerate(simulation.reporters):
            steps = describe(reporter, _AtStep(simulation, current))["steps"]
            if 0 < steps < step_to:
                step_to, due = steps, [i]
            elif steps == step_to and steps > 0:
                due.append(i)
        if not due:
            break
        current += step_to
        plan.append((current - start_step, due))
    return plan


def emit_reports(simulation: Any, reporter_indices: list[int]) -> None:
    """Call the given reporters now, with states grouped like ``Simulation._generate_reports``."""
    uses_pbc = getattr(simulation, "_usesPBC", simulation.system.usesPeriodicBoundaryConditions())
    wrapped, unwrapped, either = [], [], []
    for i in reporter_indices:
        reporter = simulation.reporters[i]
        report = describe(reporter, simulation)
        want_wrap = uses_pbc if report.get("periodic") is None else report["periodic"]
        if "positions" not in report["include"]:
            either.append((reporter, report))
        elif want_wrap:
            wrapped.append((reporter, report))
        else:
            unwrapped.append((reporter, report))
    if len(wrapped) > len(unwrapped):
        wrapped += either
    else:
        unwrapped += either
    for group, periodic in ((wrapped, True), (unwrapped, False)):
        if not group:
            continue
        include = set().union(*(set(r["include"]) for _, r in group))
        state = simulation.context.getState(
            groups=simulation.context.getIntegrator().getIntegrationForceGroups(),
            enforcePeriodicBox=periodic, parameters=True, **{name: True for name in include},
        )
        for reporter, _ in group:
            reporter.report(simulation, state)
