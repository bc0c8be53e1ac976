"""Alternating generative jumps and physical MD.

:func:`alternate` splits a stretch of simulated time into phases: an *ML
phase* (``propagator.step``: gated jumps, each followed by its hand-back MD)
and an *MD phase* (plain ``simulation.step``), repeated until the time is
used up.  Phases are given by time (``ml_ps`` and ``md_ps``) or by ratio
(``ml_fraction`` of the time in ML phases, with one of the two lengths).
The report says how much physical time each kind of propagation produced, so
a user can state exactly what fraction of a trajectory was generated.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .propagator import GenerativePropagator


@dataclass(frozen=True)
class AlternationReport:
    """Physical time produced by each kind of propagation, ps.

    ``generated_ps`` came from accepted jumps; ``handback_md_ps`` is the MD
    after each jump; ``fallback_md_ps`` replaced rejected jumps;
    ``ml_phase_md_ps`` is the MD that filled the end of ML phases too short for
    another jump; ``md_phase_ps`` the MD phases.  They add up to ``total_ps``.
    """

    total_ps: float
    phases: int
    generated_ps: float
    handback_md_ps: float
    fallback_md_ps: float
    ml_phase_md_ps: float
    md_phase_ps: float
    wall_s: float

    @property
    def generated_fraction(self) -> float:
        return self.generated_ps / self.total_ps if self.total_ps else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "generated_fraction": self.generated_fraction}


def phase_lengths_ps(ml_ps: float | None, md_ps: float | None, ml_fraction: float | None) -> tuple[float, float]:
    """``(ml_ps, md_ps)`` from two of the three settings (see :func:`alternate`)."""
    given = sum(x is not None for x in (ml_ps, md_ps, ml_fraction))
    if given != 2:
        raise ValueError("give exactly two of ml_ps, md_ps and ml_fraction")
    if ml_fraction is not None:
        if not 0 < ml_fraction < 1:
            raise ValueError(f"ml_fraction must be in (0, 1), got {ml_fraction}")
        if md_ps is not None:
            ml_ps = md_ps * ml_fraction / (1 - ml_fraction)
        else:
            md_ps = ml_ps * (1 - ml_fraction) / ml_fraction
    if ml_ps <= 0 or md_ps < 0:
        raise ValueError("phase lengths must be positive")
    return float(ml_ps), float(md_ps)


def alternate(propagator: GenerativePropagator, total_ps: float, *, ml_ps: float | None = None,
              md_ps: float | None = None, ml_fraction: float | None = None) -> AlternationReport:
    """Run ML and MD phases in turn for ``total_ps`` (rounded to whole integrator steps).

    Examples
    --------
    ``alternate(prop, 2000, ml_ps=400.5, md_ps=20)``: 400.5 ps of jumps (one
    400 ps jump + 0.5 ps hand-back MD), then 20 ps of MD, repeated.
    ``alternate(prop, 2000, ml_fraction=0.9, md_ps=50)``: 450 ps ML phases.
    """
    ml_ps, md_ps = phase_lengths_ps(ml_ps, md_ps, ml_fraction)
    dt = propagator.timestep_ps
    ml_steps, md_steps = round(ml_ps / dt), round(md_ps / dt)
    remaining = round(total_ps / dt)
    stats = propagator.statistics
    before = {k: getattr(stats, k) for k in ("generated_steps", "relax_md_steps", "fallback_md_steps",
                                             "remainder_md_steps", "generation_wall_s", "handback_wall_s",
                                             "md_wall_s")}
    phases = md_phase_steps = 0
    while remaining > 0:
        ml = min(ml_steps, remaining)
        propagator.step(ml)
        remaining -= ml
        md = min(md_steps, remaining)
        if md:
            propagator.physical_md(md)
            md_phase_steps += md
            remaining -= md
        phases += 1
    delta = {k: getattr(stats, k) - v for k, v in before.items()}
    return AlternationReport(
        total_ps=round(total_ps / dt) * dt,
        phases=phases,
        generated_ps=delta["generated_steps"] * dt,
        handback_md_ps=delta["relax_md_steps"] * dt,
        fallback_md_ps=delta["fallback_md_steps"] * dt,
        ml_phase_md_ps=(delta["remainder_md_steps"] - md_phase_steps) * dt,
        md_phase_ps=md_phase_steps * dt,
        wall_s=delta["generation_wall_s"] + delta["handback_wall_s"] + delta["md_wall_s"],
    )
