"""Short physical MD of each frame handed to the reporters inside a jump.

A generated frame, once the gate has relaxed it (a 20-step L-BFGS for the
shipped alanine model), sits nearer a local minimum than a Boltzmann sample
does: the minimisation narrows every soft coordinate's spread, and the
network's own errors in the shape of a basin remain.  ``FrameThermalizer``
gives each reported frame ~0.05–0.1 ps of physical dynamics before the
reporters see it: velocities drawn at the bath
temperature, then ``steps`` velocity-Verlet steps of the Simulation's own
System (its solvent model and constraints), velocities re-drawn every
``refresh_steps``.  Over 0.1 ps the soft
torsions swing through their local well, so the frame is then a local thermal
sample around the generated one; it does not leave its basin (basin changes in
alanine dipeptide take tens of ps), so the model still decides *where* the
trajectory goes and OpenMM only how a frame there is spread.

Measured on the shipped alanine model (2026-12-02, 2-core CPU): on 2 × 5 ns of
pure rollouts, Ramachandran JSD against the reference MD 0.130 raw, 0.115 after
the gate's 20-step relaxation, 0.097 with 25 steps (0.05 ps) of this MD after
it and 0.091 with 50; a longer minimisation instead (100 steps) collapses the
map onto its minima (0.415), and the same MD on the gate's vacuum System helps
less (0.105 with 25 steps: the implicit solvent matters).  In ``biomd run``
(5 ns, 9 seeds) 25 steps take the hybrid's JSD from 0.112 to 0.098
(BENCHMARKS.md).  The steps are uncounted: they move no simulated time (the
reported frame keeps its step and time) and are charged to the hybrid's wall
time, so the speed-up pays for them: 25 steps per 5 ps frame are 1 % of the
MD the frames stand for, which caps the speed-up at 100×.

The frames of a jump are independent of each other, so the propagator
thermalises all of them at once on ``workers`` Contexts side by side (one
single-thread CPU Context per core by default; OpenMM releases the GIL while it
integrates, so Python threads suffice), each frame with its own seed: the
frames are the same whatever the number of workers.  The calling thread is
worker 0; it may first run a task of its own (``beside``: the propagator hands
the jump back meanwhile), the workers take the next frame as they come free,
so the one that starts late takes fewer, and between its frames the calling
thread passes on each frame that is ready, in order (``each``: the propagator
calls the frame's reporters), so that work overlaps the other workers' MD too.

Velocity Verlet, not Langevin: with velocities drawn from a seed fixed by the
frame's step, the dynamics are deterministic, so a run resumed from a
checkpoint reports the same frames as one that was never stopped (a Langevin
integrator's noise stream cannot be re-seeded once its Context exists).  The
velocities are re-drawn every ``refresh_steps`` (an Andersen thermostat on
every atom at once) because constant-energy MD from near a minimum settles at
about half the bath temperature.  In the rollout test above a Langevin
integrator (γ = 1/ps) gave 0.098 with 25 steps, as Verlet does, and 0.083 with
50 (Verlet 0.091); that difference was not chased.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import openmm
import openmm.unit as unit

from ..affinity import cpu_for, pinned_to_cpu
from ..data.md import replica_seed


class FrameThermalizer:
    """``steps`` of velocity-Verlet MD of a whole System from a frame, velocities drawn at ``temperature_k``.

    Parameters
    ----------
    system : the Simulation's System (copied as it is now; every atom must be modelled, so that a frame is
        a whole configuration)
    temperature_k : bath temperature, K
    timestep_ps : integration step, ps (the Simulation's)
    steps : MD steps per frame (``> 0``)
    refresh_steps : steps between velocity draws (an Andersen thermostat acting on every atom at once)
    platform, properties : where it runs (default the CPU platform, one thread)
    workers : Contexts that thermalise frames side by side in :meth:`many` (threads; OpenMM releases the
        GIL while it integrates).  A frame's result does not depend on which Context ran it
    pin : make and drive worker ``w``'s Context on the ``w``-th allowed core (:mod:`openmm_biomd.affinity`;
        for single-thread CPU Contexts); the calling threads' CPU masks are restored after each use
    """

    def __init__(self, system: openmm.System, temperature_k: float, timestep_ps: float, steps: int,
                 refresh_steps: int, platform: openmm.Platform | None = None,
                 properties: dict | None = None, workers: int = 1, pin: bool = False) -> None:
        if steps <= 0 or refresh_steps <= 0:
            raise ValueError(f"FrameThermalizer needs steps > 0 and refresh_steps > 0, got {steps}, {refresh_steps}")
        if workers < 1:
            raise ValueError(f"FrameThermalizer needs workers >= 1, got {workers}")
        self.steps = int(steps)
        self.refresh_steps = int(refresh_steps)
        self.temperature_k = float(temperature_k)
        # The System is copied: the Simulation's own may gain forces later (a metadynamics bias, a restraint)
        # that belong to the Simulation's Context, not to a frame's thermalisation.
        system = openmm.XmlSerializer.clone(system)
        platform = platform or openmm.Platform.getPlatformByName("CPU")
        if properties is None:
            # one thread: a few steps of a small molecule, where the CPU platform's thread hand-offs cost more
            # than they save (alanine dipeptide: 0.22 ms a step on one thread, 0.32 on two)
            properties = {"Threads": "1"} if platform.getName() == "CPU" else {}
        self._cpus = [cpu_for(w) if pin else None for w in range(int(workers))]
        self._integrators = [openmm.VerletIntegrator(timestep_ps * unit.picosecond) for _ in range(int(workers))]
        self._contexts = []
        for integrator, cpu in zip(self._integrators, self._cpus):
            with pinned_to_cpu(cpu):  # the Context's own threads stay on the CPU it is made on
                self._contexts.append(openmm.Context(system, integrator, platform, properties))
        # workers 1.. run on the pool; worker 0 is the thread that calls many()
        self._pool = ThreadPoolExecutor(workers - 1, thread_name_prefix="biomd-frame-md") if workers > 1 else None
        self.has_constraints = system.getNumConstraints() > 0

    @property
    def workers(self) -> int:
        return len(self._contexts)

    def __call__(self, frame_nm: np.ndarray, seed: int) -> np.ndarray:
        """Thermalise one frame ``[N, 3]`` nm; returns ``[N, 3]`` nm (float64).

        ``seed`` fixes the dynamics: the ``j``-th velocity draw uses ``replica_seed(seed, j)`` (the propagator
        passes ``replica_seed(run seed, step)``, so a frame's MD depends on nothing but its run and step).

        A frame whose dynamics go non-finite (it cannot when the gate accepted it, but the gate's thresholds
        are the user's) is returned unchanged rather than reported as NaN.
        """
        return self._run(0, frame_nm, seed)

    def many(self, frames_nm: list[np.ndarray], seeds: list[int], beside: Callable[[], None] | None = None,
             each: Callable[[int, np.ndarray], None] | None = None) -> list[np.ndarray]:
        """Thermalise several frames, the workers' Contexts side by side; frame ``i`` gets ``seeds[i]``.

        ``beside`` : run on the calling thread first, while workers ``1..`` start on the frames (with one
        worker: before them); the calling thread then thermalises frames as worker 0.  Each worker takes the
        next frame not yet taken.
        ``each`` : ``each(i, frame)`` is called on the calling thread for every frame in input order, as soon
        as the calling thread is between two of its frames and frames ``0..i`` are done.
        Returns the frames in input order, each exactly what :meth:`__call__` returns for it, whichever
        worker ran it.  An exception of ``beside``, ``each`` or a worker is raised here, after every worker
        has stopped.
        """
        if len(frames_nm) != len(seeds):
            raise ValueError(f"{len(frames_nm)} frames but {len(seeds)} seeds")
        n = len(frames_nm)
        out: list = [None] * n
        taken = itertools.count()  # next() on a count is atomic under the GIL: each frame is taken once
        passed = 0  # frames handed to each()

        def pass_ready() -> None:
            nonlocal passed
            while each is not None and passed < n and out[passed] is not None:
                each(passed, out[passed])
                passed += 1

        def work(w: int) -> None:
            while (i := next(taken)) < n:
                out[i] = self._run(w, frames_nm[i], seeds[i])
                if w == 0:
                    pass_ready()

        helpers = [] if self._pool is None or n < 2 else [self._pool.submit(work, w) for w in range(1, self.workers)]
        try:
            if beside is not None:
                beside()
            pass_ready()
            work(0)
            for helper in helpers:
                helper.result()  # re-raises a helper's exception
            pass_ready()
        except BaseException:
            for _ in frames_nm:  # the helpers take no new frame; wait for the ones they hold
                next(taken)
            for helper in helpers:
                helper.exception()
            raise
        return out

    def _run(self, worker: int, frame_nm: np.ndarray, seed: int) -> np.ndarray:
        context, integrator = self._contexts[worker], self._integrators[worker]
        with pinned_to_cpu(self._cpus[worker]):
            context.setPositions(np.ascontiguousarray(frame_nm, dtype=np.float64))
            if self.has_constraints:
                context.applyConstraints(1e-6)
            for draw, start in enumerate(range(0, self.steps, self.refresh_steps)):
                context.setVelocitiesToTemperature(self.temperature_k * unit.kelvin, replica_seed(int(seed), draw))
                integrator.step(min(self.refresh_steps, self.steps - start))
            state = context.getState(getPositions=True)
        moved = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        moved = np.asarray(moved, dtype=np.float64)
        return moved if np.isfinite(moved).all() else np.asarray(frame_nm, dtype=np.float64)
