"""Alternating generative jumps and physical MD, and how much time each produced.

Phases by time (``--ml-ps`` of jumps, then ``--md-ps`` of plain MD), repeated
for ``--time-ps``.  Every reporter sees one continuous trajectory with a
correct time axis; the report says which part was generated.

    python examples/alternate_ml_md.py --time-ps 1000 --ml-ps 400 --md-ps 20
"""

import argparse
import json
from pathlib import Path

import openmm
import openmm.app as app
import openmm.unit as unit
from openmmtools import testsystems

from openmm_biomd.propagator import GenerativePropagator
from openmm_biomd.propagator.schedule import alternate

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--time-ps", type=float, default=1000.0)
parser.add_argument("--ml-ps", type=float, default=400.0, help="ps of generative jumps per ML phase")
parser.add_argument("--md-ps", type=float, default=20.0, help="ps of plain MD per MD phase")
parser.add_argument("--out", default="runs/example-alternate")
args = parser.parse_args()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)

system = testsystems.AlanineDipeptideImplicit()
integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 2 * unit.femtoseconds)
simulation = app.Simulation(system.topology, system.system, integrator,
                            openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
simulation.context.setPositions(system.positions)
simulation.minimizeEnergy()
simulation.context.setVelocitiesToTemperature(300 * unit.kelvin)
simulation.reporters.append(app.DCDReporter(str(out / "trajectory.dcd"), 2500))

propagator = GenerativePropagator(simulation, "alanine-dipeptide", jump_ps=100)
report = alternate(propagator, args.time_ps, ml_ps=args.ml_ps, md_ps=args.md_ps)
print(json.dumps(report.to_dict(), indent=2))
(out / "alternation.json").write_text(json.dumps(report.to_dict(), indent=2))
