"""A standard OpenMM script with ``simulation.step()`` replaced by generative jumps.

Everything but two lines is the OpenMM script you already have: system,
integrator, Simulation, stock reporters.  The propagator drives the
Context: reporters fire at their own steps inside each jump (with the
generated frame for that step), every jump is checked by the physics gate,
minimised and thermalised before OpenMM goes on.

    python examples/replace_step.py --time-ps 1000 --out runs/example-replace-step
"""

import argparse
from pathlib import Path

import openmm
import openmm.app as app
import openmm.unit as unit
from openmmtools import testsystems

from openmm_biomd.propagator import GenerativePropagator, PropagatorCheckpointReporter

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--time-ps", type=float, default=1000.0, help="simulated time (ps)")
parser.add_argument("--out", default="runs/example-replace-step")
args = parser.parse_args()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)

# --- an ordinary OpenMM set-up ------------------------------------------------
system = testsystems.AlanineDipeptideImplicit()
integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 2 * unit.femtoseconds)
platform = openmm.Platform.getPlatformByName("CPU")
simulation = app.Simulation(system.topology, system.system, integrator, platform, {"Threads": "1"})
simulation.context.setPositions(system.positions)
simulation.minimizeEnergy()
simulation.context.setVelocitiesToTemperature(300 * unit.kelvin)
simulation.reporters.append(app.DCDReporter(str(out / "trajectory.dcd"), 2500))  # every 5 ps
simulation.reporters.append(app.StateDataReporter(str(out / "state.csv"), 2500, step=True, time=True,
                                                  potentialEnergy=True, temperature=True))

# --- the two new lines ----------------------------------------------------------
propagator = GenerativePropagator(simulation, "alanine-dipeptide")   # shipped weights, by name
simulation.reporters.append(PropagatorCheckpointReporter(propagator, out / "checkpoint.zip", 50000))
n_steps = int(round(args.time_ps / 0.002))
propagator.step(n_steps)                                               # was: simulation.step(n_steps)

print(f"step {simulation.currentStep}, time {simulation.context.getTime()}")
summary = propagator.summary()
print(f"jumps accepted {summary['jumps_accepted']}/{summary['jumps_attempted']}, "
      f"generated {summary['generated_ps']:.0f} ps, fallback MD {summary['fallback_md_ps']:.0f} ps")
