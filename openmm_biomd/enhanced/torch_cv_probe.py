"""Evaluate PyTorch CVs through one backend, in this interpreter, and print JSON.

openmm-torch lives in its own environment (``.venv/openmm-torch``: PyPI's
``openmmtorch`` wheel needs PyPI's torch 2.9.1, not the project's CPU torch), so
the only way to check a ``TorchForce`` CV against the main environment's
references is to run the same code there and compare numbers.  This module is
that code; it needs only torch, numpy and openmm (no mdtraj, no openmmtools)::

    .venv/openmm-torch/bin/python -m openmm_biomd.enhanced.torch_cv_probe request.json

Request (JSON)::

    {"backend": "torch" | "python" | "auto",
     "evaluations": [                                 # any number, each on its own bare System
        {"n_particles": N,
         "cvs": {"name": {"kind": "centroid-distance", "group_a": [...], "group_b": [...]}, ...},
         "configurations": [[[x, y, z], ...], ...],   # [C, N, 3] nm
         "box": [[ax, ay, az], [bx, by, bz], [cx, cy, cz]] | null,   # nm; periodic CVs when given
         "restraint": {"k": 1000.0, "x0": 0.5},       # CustomCVForce "k*(cv-x0)^2", kJ/mol/nm², nm
         "platform": "Reference"}],
     "metadynamics": null | {"system_xml": "...", "positions": [[...]], "cv": {CV spec},
                             "min": 0.0, "max": 2.0, "width": 0.05, "steps": 200,
                             "frequency": 20, "height_kj_mol": 1.0, "bias_factor": 5.0,
                             "temperature_k": 300.0, "timestep_fs": 2.0, "seed": 1,
                             "platform": "CPU"}}

Response (stdout, JSON): ``backend`` (the one used), ``versions``,
``evaluations`` (per request entry, per CV: :func:`evaluate_force`'s dict) and
``metadynamics`` (:func:`run_metadynamics`'s dict).
"""

from __future__ import annotations

import json
import sys
from typing import Any, Callable

import numpy as np

from .torch_cv import available_backend, cv_module_from_spec, torch_cv_force

__all__ = ["evaluate_force", "main", "run_metadynamics", "run_request"]


def _bare_system(n_particles: int, box_nm: Any = None) -> Any:
    """``n_particles`` unit-mass particles and no forces (the box as default box vectors when given)."""
    import openmm

    system = openmm.System()
    for _ in range(int(n_particles)):
        system.addParticle(1.0)
    if box_nm is not None:
        a, b, c = (openmm.Vec3(*map(float, row)) for row in np.asarray(box_nm, dtype=np.float64))
        system.setDefaultPeriodicBoxVectors(a, b, c)
    return system


def evaluate_force(
    make_force: Callable[[], Any],
    configurations_nm: Any,
    *,
    box_nm: Any = None,
    platform: str = "Reference",
    restraint: dict | None = None,
) -> dict:
    """Energy and forces of one force — alone and as the variable of a ``CustomCVForce`` — per configuration.

    Parameters
    ----------
    make_force : ``() -> openmm.Force``; called twice, because a ``CustomCVForce``
        takes ownership of the force added to it
    configurations_nm : ``[C, N, 3]`` nm
    box_nm : ``[3, 3]`` nm box vectors (rows), or None for a non-periodic system
    platform : OpenMM platform name
    restraint : ``{"k": kJ/mol/nm², "x0": nm}`` for ``k*(cv-x0)^2``; default k=1000, x0=0

    Returns
    -------
    dict
        ``alone`` and ``restrained``: lists of ``{"energy": kJ/mol, "forces": [N, 3] kJ/mol/nm}``;
        ``cv_values``: the CV per configuration as ``CustomCVForce`` reports it.
    """
    import openmm
    from openmm import unit

    configurations = np.asarray(configurations_nm, dtype=np.float64)  # [C, N, 3]
    n_particles = configurations.shape[1]
    restraint = {"k": 1000.0, "x0": 0.0, **(restraint or {})}
    plat = openmm.Platform.getPlatformByName(platform)

    def run(force: Any) -> tuple[list[dict], Any]:
        system = _bare_system(n_particles, box_nm)
        system.addForce(force)
        context = openmm.Context(system, openmm.VerletIntegrator(0.001), plat)
        out = []
        for xyz in configurations:
            context.setPositions(np.ascontiguousarray(xyz))  # float64 C-contiguous nm (DESIGN §4)
            state = context.getState(getEnergy=True, getForces=True)
            forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)  # [N, 3]
            out.append({"energy": state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
                        "forces": forces.tolist()})
        return out, context

    alone, _ = run(make_force())
    cv_force = openmm.CustomCVForce("k*(cv-x0)^2")
    cv_force.addGlobalParameter("k", float(restraint["k"]))
    cv_force.addGlobalParameter("x0", float(restraint["x0"]))
    cv_force.addCollectiveVariable("cv", make_force())
    restrained, context = run(cv_force)  # the System owns cv_force now; the Python handle stays valid with it
    cv_values = []
    for xyz in configurations:
        context.setPositions(np.ascontiguousarray(xyz))
        cv_values.append(float(cv_force.getCollectiveVariableValues(context)[0]))
    return {"alone": alone, "restrained": restrained, "cv_values": cv_values}


def run_metadynamics(
    system: Any,
    positions_nm: Any,
    force: Any,
    *,
    min_value: float,
    max_value: float,
    width: float,
    steps: int = 200,
    frequency: int = 20,
    height_kj_mol: float = 1.0,
    bias_factor: float = 5.0,
    temperature_k: float = 300.0,
    timestep_fs: float = 2.0,
    seed: int = 1,
    platform: str = "CPU",
) -> dict:
    """A short well-tempered metadynamics run with ``force`` as the only ``BiasVariable``.

    Parameters
    ----------
    system : openmm.System (copied; the bias goes into the copy)
    positions_nm : ``[N, 3]`` nm
    force : the CV force (a fresh one: ``Metadynamics`` takes ownership)
    min_value, max_value, width : bias grid range and Gaussian width, CV units
    steps, frequency : MD steps, and steps between hills
    height_kj_mol, bias_factor, temperature_k, timestep_fs, seed : well-tempered
        metadynamics and Langevin (1/ps friction) settings

    Returns
    -------
    dict
        ``cv_values`` (one per hill interval, CV units), ``bias_energy_kj_mol``
        (the bias at the end), ``n_hills``, ``free_energy_range_kj_mol`` (max − min of
        ``Metadynamics.getFreeEnergy()`` on the grid: > 0 once hills are deposited),
        ``potential_energy_kj_mol``.
    """
    import openmm
    from openmm import app, unit
    from openmm.app.metadynamics import BiasVariable, Metadynamics

    system = openmm.XmlSerializer.clone(system)
    used = {f.getForceGroup() for f in system.getForces()}
    variable = BiasVariable(force, float(min_value), float(max_value), float(width))
    meta = Metadynamics(system, [variable], temperature_k * unit.kelvin, float(bias_factor),
                        height_kj_mol * unit.kilojoule_per_mole, int(frequency))
    bias_group = max(set(range(32)) - used)  # where Metadynamics put its CustomCVForce
    integrator = openmm.LangevinMiddleIntegrator(temperature_k * unit.kelvin, 1.0 / unit.picosecond,
                                                 timestep_fs * unit.femtosecond)
    integrator.setRandomNumberSeed(int(seed))
    # An empty Topology is enough: nothing here reports, and Metadynamics needs only the Simulation.
    simulation = app.Simulation(app.Topology(), system, integrator, openmm.Platform.getPlatformByName(platform))
    context = simulation.context
    context.setPositions(np.ascontiguousarray(np.asarray(positions_nm, dtype=np.float64)))
    context.applyConstraints(1e-6)
    context.setVelocitiesToTemperature(temperature_k * unit.kelvin, int(seed))
    cv_values = []
    for _ in range(int(steps) // int(frequency)):
        meta.step(simulation, int(frequency))  # hills are deposited only here (DESIGN §4)
        cv_values.append(float(meta.getCollectiveVariables(simulation)[0]))
    state = context.getState(getEnergy=True)
    bias = context.getState(getEnergy=True, groups={bias_group}).getPotentialEnergy()
    return {
        "cv_values": cv_values,
        "bias_energy_kj_mol": bias.value_in_unit(unit.kilojoule_per_mole),
        "n_hills": int(simulation.currentStep) // int(frequency),
        "free_energy_range_kj_mol": float(np.ptp(meta.getFreeEnergy().value_in_unit(unit.kilojoule_per_mole))),
        "potential_energy_kj_mol": state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
    }


def run_request(request: dict) -> dict:
    """Everything a request asks for (see the module docstring), as a JSON-serialisable dict."""
    import openmm
    import torch

    backend = request.get("backend", "auto")
    backend = available_backend() if backend == "auto" else backend
    evaluations = []
    for job in request.get("evaluations", []):
        n_particles = int(job["n_particles"])
        box = job.get("box")
        results = {}
        for name, spec in job["cvs"].items():
            module = cv_module_from_spec(spec)
            results[name] = evaluate_force(
                # Default arguments bind this loop's module (a fresh force per call, see evaluate_force).
                lambda module=module: torch_cv_force(module, n_particles, backend=backend, periodic=box is not None),
                job["configurations"], box_nm=box, platform=job.get("platform", "Reference"),
                restraint=job.get("restraint"),
            )
        evaluations.append(results)
    response = {
        "backend": backend,
        "versions": {"torch": torch.__version__, "openmm": openmm.__version__},
        "evaluations": evaluations,
    }
    meta = request.get("metadynamics")
    if meta:
        system = openmm.XmlSerializer.deserialize(meta["system_xml"])
        force = torch_cv_force(cv_module_from_spec(meta["cv"]), system.getNumParticles(), backend=backend)
        keys = ("steps", "frequency", "height_kj_mol", "bias_factor", "temperature_k", "timestep_fs", "seed",
                "platform")
        response["metadynamics"] = run_metadynamics(
            system, meta["positions"], force, min_value=meta["min"], max_value=meta["max"], width=meta["width"],
            **{k: meta[k] for k in keys if k in meta},
        )
    return response


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m openmm_biomd.enhanced.torch_cv_probe REQUEST.json", file=sys.stderr)
        return 2
    with open(argv[0]) as fh:
        request = json.load(fh)
    json.dump(run_request(request), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
