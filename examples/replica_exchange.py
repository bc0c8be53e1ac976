"""Temperature replica exchange whose replicas move by generative jumps followed by Langevin dynamics.

Each replica's move is ``SequenceMove([GenerativeJumpMove, LangevinDynamicsMove])``:
a gated generative jump of the BioMD model (hand-back: minimisation, velocities,
short relax MD), then ordinary Langevin MD at the replica's temperature.
openmmtools' ``ReplicaExchangeSampler`` swaps configurations between temperatures
and stores everything (including the moves, by model name + weights sha256) in
a NetCDF file; running the script again with the same ``--out`` resumes it.

Read before using the numbers: the generative jump has no Metropolis–Hastings
correction, so it does not satisfy detailed balance.  The swaps are still
correct Metropolis steps, but the per-replica ensembles are only approximately
Boltzmann: use this for exploration and seeding, and re-sample with plain MD
where you need exact thermodynamics.

    python examples/replica_exchange.py --iterations 3 --out re_run
    python examples/replica_exchange.py --iterations 3 --out re_run   # resumes: 3 more iterations

Defaults are small: about 10 s of sampling (plus imports) on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=3, help="replica-exchange iterations to run (default 3)")
    parser.add_argument("--replicas", type=int, default=2, choices=(2, 3, 4), help="temperatures (default 2)")
    parser.add_argument("--t-min", type=float, default=300.0, help="lowest temperature, K (default 300)")
    parser.add_argument("--t-max", type=float, default=330.0, help="highest temperature, K (default 330)")
    parser.add_argument("--model", default="alanine-dipeptide",
                        help="shipped model name, .safetensors or exported .pt (default alanine-dipeptide)")
    parser.add_argument("--jump-ps", type=float, default=100.0, help="generated time per jump, ps (default 100)")
    parser.add_argument("--langevin-steps", type=int, default=250, help="2 fs Langevin steps after each jump")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--platform", default="CPU", help="OpenMM platform (default CPU)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for OpenMM and torch (default 1)")
    parser.add_argument("--out", default="replica_exchange_out", help="output directory")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)

    import openmm
    import openmm.unit as unit
    import torch
    from openmmtools import cache, mcmc, multistate, states

    from openmm_biomd.data.systems import get_system
    from openmm_biomd.propagator import GenerativeJumpMove, HandBackConfig

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    storage = out / "replica_exchange.nc"

    # One ContextCache per use, pinned to the chosen platform (openmmtools would pick the fastest).
    platform = openmm.Platform.getPlatformByName(args.platform)
    properties = {"Threads": str(args.threads)} if args.platform == "CPU" else None

    def context_cache():
        return cache.ContextCache(platform=platform, platform_properties=properties)

    if storage.exists():
        # Resume: the moves come back from the YAML in the NetCDF file; the model is
        # reloaded by name and refused if its weights hash changed.
        reporter = multistate.MultiStateReporter(str(storage), checkpoint_interval=1)
        sampler = multistate.ReplicaExchangeSampler.from_storage(reporter)
        print(f"resuming {storage} at iteration {sampler.iteration}")
        run = lambda: sampler.extend(args.iterations)  # noqa: E731
    else:
        # The bundled alanine dipeptide (OBC1 implicit solvent): topology, System, positions [N, 3] nm.
        loaded = get_system("alanine-dipeptide").load()

        # Geometric temperature ladder.
        temperatures = np.geomspace(args.t_min, args.t_max, args.replicas)
        thermodynamic_states = [states.ThermodynamicState(loaded.system, t * unit.kelvin) for t in temperatures]

        # The move: a generative jump (openmmtools states carry no topology, so pass it),
        # then Langevin dynamics to re-equilibrate at the replica's temperature.
        jump = GenerativeJumpMove(args.model, jump_ps=args.jump_ps, topology=loaded.topology, seed=args.seed,
                                  handback=HandBackConfig(relax_steps=50, minimize_iterations=50))
        langevin = mcmc.LangevinDynamicsMove(timestep=2.0 * unit.femtosecond, collision_rate=1.0 / unit.picosecond,
                                             n_steps=args.langevin_steps)
        move = mcmc.SequenceMove([jump, langevin])

        # ReplicaExchangeSampler deep-copies the move for every state.
        sampler = multistate.ReplicaExchangeSampler(mcmc_moves=move, number_of_iterations=args.iterations,
                                                    online_analysis_interval=None)
        reporter = multistate.MultiStateReporter(str(storage), checkpoint_interval=1)
        sampler.create(thermodynamic_states, states.SamplerState(loaded.positions * unit.nanometer), reporter)
        print("temperatures (K): " + ", ".join(f"{t:.1f}" for t in temperatures))
        run = sampler.run

    sampler.energy_context_cache = context_cache()
    sampler.sampler_context_cache = context_cache()

    wall = time.perf_counter()
    run()
    wall = time.perf_counter() - wall
    print(f"ran to iteration {sampler.iteration} in {wall:.1f} s")

    # Swap acceptance between neighbouring temperatures, summed over all stored iterations.
    accepted, proposed = reporter.read_mixing_statistics()
    accepted, proposed = np.atleast_3d(accepted).sum(axis=0), np.atleast_3d(proposed).sum(axis=0)
    for i in range(sampler.n_states - 1):
        n_prop = proposed[i, i + 1] + proposed[i + 1, i]
        n_acc = accepted[i, i + 1] + accepted[i + 1, i]
        rate = f"{n_acc / n_prop:.2f}" if n_prop else "n/a"
        print(f"swap acceptance states {i}<->{i + 1}: {rate} ({n_acc}/{n_prop})")

    # Per-state jump statistics: gate acceptance (not a Metropolis acceptance), fall-backs, retries.
    thermodynamic_states, _ = reporter.read_thermodynamic_states()
    for i, (state, move) in enumerate(zip(thermodynamic_states, sampler.mcmc_moves)):
        stats = move.move_list[0].statistics
        fraction = stats["n_accepted"] / stats["n_proposed"] if stats["n_proposed"] else float("nan")
        print(f"state {i} ({state.temperature.value_in_unit(unit.kelvin):.1f} K): jump acceptance {fraction:.2f} "
              f"({stats['n_accepted']}/{stats['n_proposed']}), fallbacks {stats['n_fallback']}, "
              f"retries {stats['n_retries']}, generated {stats['generated_ps']:.0f} ps, "
              f"rejections {stats['rejections'] or {}}")

    energies = [s.potential_energy for s in sampler.sampler_states]
    print("replica potential energies (kJ/mol): "
          + ", ".join(f"{e.value_in_unit(unit.kilojoule_per_mole):.1f}" if e is not None else "n/a"
                      for e in energies))
    print(f"storage: {storage}")
    reporter.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
