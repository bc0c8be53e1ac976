"""Handing a generated frame back to OpenMM (DESIGN.md §4).

After a jump the Context receives the last frame and is made physical again:

1. positions as a C-contiguous float64 array in nm (modelled atoms replaced,
   the rest as they were), box unchanged;
2. ``applyConstraints`` (which also places virtual sites; ``computeVirtualSites``
   when the system has no constraints);
3. with atoms that the model does not move (explicit solvent, ions, an
   unmodelled partner), those are relaxed around the new solute: the modelled
   atoms are held by a harmonic restraint while the system is minimised and
   run for ``solvent_relax_steps`` of restrained MD (the barostat acts here),
   then released;
4. energy minimisation of everything (``minimize_iterations``);
5. velocities drawn at the integrator's temperature;
6. optionally a timestep ramp: ``ramp_steps`` steps at a fraction of the
   timestep rising to the full one;
7. ``thermalize_steps`` of MD at the full timestep.

Steps 3, 6 and 7 are *relaxation*: the step counter and clock are put back
afterwards, reporters do not see them, and they are counted separately.  The
physical MD that follows (``relax_steps`` at the full timestep, 0 by default)
is ordinary MD: it advances time and reporters see it.

Why thermalisation is not counted as simulated time by default: a cycle is
then exactly one jump long, so jumps start on the report grid and every
report inside a jump falls on a generated frame (counted MD of 1 ps after a
jump of 5 ps frames would shift every later report off the model's grid and
make each one a sub-grid frame).  The price is a clock that skips the
``thermalize_steps`` of dynamics after each jump (1 ps per 400 ps jump by
default, 0.25 %); the propagator reports them as ``uncounted_relaxation_steps``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import openmm
import openmm.unit as unit

#: Global parameter of the solute restraint (kJ/mol/nm²); 0 outside the hand-back.
RESTRAINT_PARAMETER = "biomd_restraint_k"


@dataclass(frozen=True)
class HandBackConfig:
    """Settings of the hand-back (see the module docstring).

    Attributes
    ----------
    minimize_iterations : L-BFGS iterations on the full system (0 = to convergence)
    minimize_tolerance : kJ/mol/nm
    relax_steps : physical MD steps after each jump (counted, reported)
    thermalize_steps : uncounted MD steps at the full timestep after the minimisation
    ramp_steps : uncounted steps with a reduced timestep before ``relax_steps``
    ramp_start_fraction : first timestep of the ramp, as a fraction of the full one
    solvent_relax_steps : uncounted restrained MD steps for unmodelled atoms
    restraint_k : kJ/mol/nm², the solute restraint while the rest relaxes
    constraint_tolerance : passed to ``applyConstraints``
    frame_md_steps : uncounted MD steps of the whole System that each frame handed to the reporters
        inside a jump receives before they see it (:class:`~.thermalize.FrameThermalizer`; velocity
        Verlet from Maxwell–Boltzmann velocities; 0: the reporters get the gate's relaxed frame as it is).
        Only for systems whose every atom is modelled (implicit solvent or vacuum)
    frame_md_refresh_steps : steps between those velocity draws
    frame_md_workers : Contexts thermalising a jump's frames side by side (0: one per CPU core, at most 8,
        on the CPU platform; one on a GPU); the frames do not depend on it
    """

    minimize_iterations: int = 100
    minimize_tolerance: float = 10.0
    relax_steps: int = 0
    thermalize_steps: int = 500
    ramp_steps: int = 0
    ramp_start_fraction: float = 0.25
    solvent_relax_steps: int = 500
    restraint_k: float = 1.0e4
    constraint_tolerance: float = 1.0e-6
    frame_md_steps: int = 0
    frame_md_refresh_steps: int = 25
    frame_md_workers: int = 0

    def __post_init__(self) -> None:
        for name in ("minimize_iterations", "relax_steps", "thermalize_steps", "ramp_steps", "solvent_relax_steps",
                     "frame_md_steps", "frame_md_workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"HandBackConfig.{name} must be >= 0")
        if self.frame_md_refresh_steps < 1:
            raise ValueError("HandBackConfig.frame_md_refresh_steps must be >= 1")
        if not 0 < self.ramp_start_fraction <= 1:
            raise ValueError("ramp_start_fraction must be in (0, 1]")


def add_solute_restraint(simulation, atom_indices: np.ndarray, positions_nm: np.ndarray) -> openmm.CustomExternalForce:
    """Add the (switched-off) positional restraint on the modelled atoms and reinitialise the Context."""
    periodic = simulation.system.usesPeriodicBoundaryConditions()
    distance = "periodicdistance(x, y, z, x0, y0, z0)^2" if periodic else "(x-x0)^2 + (y-y0)^2 + (z-z0)^2"
    force = openmm.CustomExternalForce(f"0.5*{RESTRAINT_PARAMETER}*{distance}")
    force.addGlobalParameter(RESTRAINT_PARAMETER, 0.0)
    for name in ("x0", "y0", "z0"):
        force.addPerParticleParameter(name)
    for a in atom_indices:
        force.addParticle(int(a), positions_nm[int(a)].tolist())
    force.setName("BioMD solute restraint")
    simulation.system.addForce(force)
    simulation.context.reinitialize(preserveState=True)
    return force


def set_positions(context: openmm.Context, positions_nm: np.ndarray, has_constraints: bool, tolerance: float) -> None:
    """Positions in (float64, C-contiguous, nm), then constraints and virtual sites."""
    context.setPositions(np.ascontiguousarray(positions_nm, dtype=np.float64))
    if has_constraints:
        context.applyConstraints(tolerance)
    else:
        context.computeVirtualSites()


def _uncounted_md(simulation, steps: int) -> None:
    """Integrate ``steps`` steps, then put the step counter and clock back."""
    if steps <= 0:
        return
    context = simulation.context
    step, time = context.getStepCount(), context.getTime()
    simulation.integrator.step(steps)
    context.setStepCount(step)
    context.setTime(time)


def _ramp(simulation, config: HandBackConfig) -> None:
    integrator = simulation.integrator
    if config.ramp_steps <= 0 or not hasattr(integrator, "setStepSize"):
        return
    full = integrator.getStepSize()
    context = simulation.context
    step, time = context.getStepCount(), context.getTime()
    stages = 4
    per_stage = max(1, config.ramp_steps // stages)
    try:
        for s in range(stages):
            fraction = config.ramp_start_fraction + (1 - config.ramp_start_fraction) * s / stages
            integrator.setStepSize(full * fraction)
            integrator.step(per_stage)
    finally:
        integrator.setStepSize(full)
        context.setStepCount(step)
        context.setTime(time)


def hand_back(simulation, positions_nm: np.ndarray, *, config: HandBackConfig, temperature_k: float,
              seed: int, restraint: openmm.CustomExternalForce | None, modelled: np.ndarray) -> None:
    """Make the Context physical at ``positions_nm [N_total, 3]`` (steps 1–7 of the module docstring)."""
    context = simulation.context
    has_constraints = simulation.system.getNumConstraints() > 0
    set_positions(context, positions_nm, has_constraints, config.constraint_tolerance)
    if restraint is not None:
        placed = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        for slot, a in enumerate(modelled):
            restraint.setParticleParameters(slot, int(a), placed[int(a)].tolist())
        restraint.updateParametersInContext(context)
        context.setParameter(RESTRAINT_PARAMETER, config.restraint_k)
        try:
            openmm.LocalEnergyMinimizer.minimize(context, config.minimize_tolerance, config.minimize_iterations)
            context.setVelocitiesToTemperature(temperature_k * unit.kelvin, seed)
            _uncounted_md(simulation, config.solvent_relax_steps)
        finally:
            context.setParameter(RESTRAINT_PARAMETER, 0.0)
    openmm.LocalEnergyMinimizer.minimize(context, config.minimize_tolerance, config.minimize_iterations)
    context.setVelocitiesToTemperature(temperature_k * unit.kelvin, seed)
    _ramp(simulation, config)
    _uncounted_md(simulation, config.thermalize_steps)


def uncounted_steps(config: HandBackConfig, restrained: bool) -> int:
    """MD steps one hand-back integrates without advancing the clock."""
    return config.ramp_steps + config.thermalize_steps + (config.solvent_relax_steps if restrained else 0)


def integrator_temperature(integrator) -> float | None:
    """The integrator's bath temperature in K, or ``None`` when it has none."""
    if hasattr(integrator, "getTemperature"):
        return float(integrator.getTemperature().value_in_unit(unit.kelvin))
    return None
