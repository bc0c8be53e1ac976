"""What one generated window costs, and what the ODE solver does to the gate's verdicts (host–guest).

1. **Network**: one velocity evaluation of the shipped ``host-guest`` model
   (156 atoms) and ``alanine-dipeptide`` model (22 atoms) on the window shapes
   their samplers use, three ways in the same run: as before 2026-12-02
   (PyTorch's ``scaled_dot_product_attention`` with a broadcast bias, the
   trunk's pair biases recomputed at every evaluation), with the explicit
   attention of :func:`biomd_core.model.attention.attend`, and with the pair
   biases computed once per window as well (what samplers do now).
2. **Solvers on a Gaussian target**: the exact covariance error of each solver
   (no sampling noise: the solver's affine map from noise to sample is
   recovered by least squares), against the number of network evaluations.
3. **Gate verdicts per solver**: coarse unbinding blocks drawn from held-out
   bound frames (the recipe's held-out metadynamics campaign) with the same
   initial noise for every solver, steered as ``biomd unbind`` steers, checked
   frame by frame and block by block with the shipped unbinding gate.
4. With ``--paths N``: ``N`` whole gated paths per start and solver: successes,
   time to the first path, wall time per attempt, re-draws, path RMSD to the
   nearest held-out metadynamics path.

Writes ``benchmarks/results/sampler_cpu.json`` and the "Sampler" section of
BENCHMARKS.md.

    python benchmarks/bench_sampler.py --paths 5
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from bench_steering import draw_blocks, verdicts
from benchmarks_md import publish

REPO = Path(__file__).resolve().parents[1]

#: (solver, steps) compared at the gate; the first is the unbinding default before 2026-12-02
SOLVERS = (("heun", 6), ("ab2", 6), ("euler", 6), ("ab2", 4))
#: window shapes (model, batch, frames): a coarse block with its history frame, a batch of interpolation windows
WINDOWS = (("host-guest", 1, 5), ("host-guest", 4, 6), ("alanine-dipeptide", 1, 5), ("alanine-dipeptide", 8, 21))


@contextlib.contextmanager
def sdpa_attention():
    """The attention of the network before 2026-12-02: PyTorch's SDPA with the bias as its mask."""
    from biomd_core.model import attention

    explicit = attention.attend
    attention.attend = lambda q, k, v, bias: explicit(q, k, v, bias, explicit_budget=0)
    try:
        yield
    finally:
        attention.attend = explicit


def network(reps: int) -> list[dict]:
    """Median time of one velocity evaluation per window shape and way of computing it."""
    from biomd_core.flow.space import centroid
    from openmm_biomd.data.systems import get_system
    from openmm_biomd.propagator.model_source import resolve_model

    rows = []
    for name, b, t in WINDOWS:
        loaded = get_system(name).load()
        model = resolve_model(name, "cpu")
        graph = model.featurize(loaded.topology, positions_nm=np.asarray(loaded.positions))
        system = model.bind(graph).system.expand(b)
        net = model.net
        anchor = torch.tensor(np.asarray(loaded.positions)[graph.atom_indices], dtype=torch.float32)
        anchor = anchor.expand(b, -1, -1).contiguous()
        g = torch.Generator().manual_seed(0)
        n = anchor.shape[1]
        y, tau = torch.randn(b, t, n, 3, generator=g), torch.full((b, t, n), 0.5)
        tau[:, 0] = 1.0  # the known first frame
        t_ps = (torch.arange(t, dtype=torch.float32) * model.time.frame_interval_ps).expand(b, -1)
        with torch.inference_mode():
            s, z, idx, key_mask = net.encode(anchor - centroid(anchor), *system.encoder_inputs())
            biases = net.pair_biases(z, key_mask)

            def timed(call) -> float:
                call()
                walls = []
                for _ in range(reps):
                    t0 = time.perf_counter()
                    call()
                    walls.append(time.perf_counter() - t0)
                return 1000.0 * statistics.median(walls)

            with sdpa_attention():
                before = timed(lambda: net.denoise(y, tau, t_ps, s, z, idx, key_mask))
            explicit = timed(lambda: net.denoise(y, tau, t_ps, s, z, idx, key_mask))
            cached = timed(lambda: net.denoise_biased(y, tau, t_ps, s, biases, idx))
            encode = timed(lambda: net.encode(anchor - centroid(anchor), *system.encoder_inputs()))
        rows.append({"model": name, "atoms": n, "batch": b, "frames": t, "sdpa_ms": before,
                     "explicit_attention_ms": explicit, "explicit_and_cached_biases_ms": cached, "encode_ms": encode})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def gaussian_errors() -> list[dict]:
    """Exact covariance errors of each solver on the Gaussian target of the sampler tests."""
    from biomd_core.sampling import SolverConfig, schedules
    from biomd_core.sampling.analytic import GaussianProcessField, ou_kernel, solver_covariance_error

    # the targets of tests/core/test_samplers.py: two atoms correlated 0.8, frames 1 ps apart
    atoms = torch.tensor([[1.0, 0.8], [0.8, 1.0]], dtype=torch.float64)
    mean = torch.tensor([[0.5, -0.2, 0.1], [1.0, 0.3, -0.4]], dtype=torch.float64)
    targets = {"OU, variance 0.8": GaussianProcessField(ou_kernel(0.8, 3.0), atoms, mean),
               "OU, variance 0.001 (narrow)": GaussianProcessField(ou_kernel(1e-3, 3.0), atoms, torch.zeros_like(mean))}
    plan = schedules.forecast(3, 1.0)
    rows = []
    for target_name, target in targets.items():
        for solver, steps, power in (("euler", 6, 1.0), ("heun", 6, 1.0), ("ab2", 6, 1.0), ("euler", 11, 1.0),
                                     ("ab2", 11, 1.0), ("heun", 20, 1.0), ("ab2", 20, 1.0), ("ab2", 39, 1.0),
                                     ("heun", 6, 2.0), ("ab2", 11, 2.0)):
            config = SolverConfig(solver, steps, grid_power=power)
            rows.append({"target": target_name, "solver": config.describe(), "evaluations": config.evaluations,
                         "covariance_error": solver_covariance_error(target, plan, config)})
    return rows


def gate_verdicts(loaded, starts: np.ndarray, draws: int, seed: int) -> list[dict]:
    """Paired coarse blocks per solver (same initial noise), checked with the shipped unbinding gate."""
    from biomd_core.sampling import SolverConfig
    from openmm_biomd.enhanced.unbind import Unbinder, UnbindSettings

    unbinder = Unbinder(loaded, "host-guest", settings=UnbindSettings())
    rows = []
    for solver, steps in SOLVERS:
        config = unbinder.generator.sampler.solver = SolverConfig(solver, steps)
        blocks, per_block_s = draw_blocks(unbinder, starts, draws, seed)
        rows.append({"solver": solver, "ode_steps": steps, "evaluations": config.evaluations,
                     "sampling_s_per_block": per_block_s, **verdicts(unbinder.gate, blocks)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def whole_paths(loaded, starts: np.ndarray, references: list, per_start: int, work: Path) -> list[dict]:
    """Gated paths per solver (the shipped unbinding settings otherwise)."""
    from openmm_biomd.enhanced.recipe import evaluate_unbinding
    from openmm_biomd.enhanced.unbind import Unbinder, UnbindSettings

    rows = []
    for solver, steps in SOLVERS[:2]:
        unbinder = Unbinder(loaded, "host-guest", settings=UnbindSettings(max_time_ps=100.0, solver=solver,
                                                                         ode_steps=steps))
        out = work / f"{solver}-{steps}"
        shutil.rmtree(out, ignore_errors=True)
        q = evaluate_unbinding(unbinder, starts, references, out, per_start)
        rmsd = q["path_rmsd_to_nearest_metad_nm"]
        rows.append({"solver": solver, "ode_steps": steps, "attempts": q["attempts"], "successes": q["successes"],
                     "time_to_first_path_s": q["time_to_first_path_s"],
                     "mean_wall_s_per_attempt": q["mean_wall_s_per_attempt"], "gate_retries": q["gate_retries"],
                     "mean_exit_time_ps": q["mean_exit_time_ps"], "path_rmsd_mean_nm": rmsd["mean"],
                     "path_rmsd_median_nm": rmsd["median"], "path_rmsd_n": rmsd["n"]})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heldout", default=str(REPO / "runs/data/host-guest-heldout"))
    parser.add_argument("--starts", type=int, default=2, help="held-out starting frames")
    parser.add_argument("--draws", type=int, default=16, help="coarse blocks drawn per start and solver")
    parser.add_argument("--reps", type=int, default=20, help="timed network evaluations per row")
    parser.add_argument("--paths", type=int, default=0, help="whole gated paths per start and solver (0: none)")
    parser.add_argument("--work", default=str(REPO / "runs/bench-sampler"), help="where --paths writes its paths")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/sampler_cpu.json"))
    args = parser.parse_args()

    from openmm_biomd.data.systems import get_system
    from openmm_biomd.enhanced.path_metrics import campaign_paths
    from openmm_biomd.recipes import hardware

    loaded = get_system("host-guest").load()
    references = campaign_paths(args.heldout)
    starts = np.stack([ref[0] for ref in references[: args.starts]])
    result = {"benchmark": "bench_sampler", "machine": hardware(), "torch_threads": torch.get_num_threads(),
              "date": time.strftime("%Y-%m-%d"), "network": network(args.reps), "gaussian": gaussian_errors(),
              "starts": int(len(starts)), "draws_per_start": args.draws, "seed": args.seed,
              "gate": gate_verdicts(loaded, starts, args.draws, args.seed)}
    if args.paths:
        result["paths"] = whole_paths(loaded, starts, references, args.paths, Path(args.work))
    publish(Path(args.out), result, "bench_sampler",
            "Sampler: network evaluations and ODE solvers (`benchmarks/bench_sampler.py`)", table(result))


def table(r: dict) -> str:
    lines = [
        f"{r['machine']}, {r['torch_threads']} torch threads, {r['date']}. One velocity evaluation (median of the "
        "timed calls, ms):",
        "",
        "| model | atoms | windows × frames | SDPA, biases every call (before) | explicit attention | "
        "+ biases once per window (now) | encoding (once per window) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in r["network"]:
        lines.append(f"| {row['model']} | {row['atoms']} | {row['batch']} × {row['frames']} | {row['sdpa_ms']:.1f} | "
                     f"{row['explicit_attention_ms']:.1f} | {row['explicit_and_cached_biases_ms']:.1f} | "
                     f"{row['encode_ms']:.1f} |")
    lines += ["", "Exact covariance error of the generated window on Gaussian targets (forecast of 3 frames, 2 "
              "correlated atoms; no sampling noise):", "",
              "| solver | evaluations | " + " | ".join(sorted({g["target"] for g in r["gaussian"]})) + " |",
              "|---|---:|" + "---:|" * len({g["target"] for g in r["gaussian"]})]
    by_solver: dict = {}
    for g in r["gaussian"]:
        by_solver.setdefault((g["solver"], g["evaluations"]), {})[g["target"]] = g["covariance_error"]
    for (solver, evaluations), errors in by_solver.items():
        lines.append(f"| {solver} | {evaluations} | " + " | ".join(f"{errors[t]:.3f}" for t in sorted(errors)) + " |")
    first = r["gate"][0]
    lines += ["", f"Gate verdicts: {r['starts']} held-out starts × {r['draws_per_start']} coarse blocks of "
              f"{first['frames'] // first['blocks']} frames per solver, the same initial noise, steered as "
              "`biomd unbind` steers, the shipped unbinding gate:", "",
              "| solver | evaluations per window | frames accepted | blocks accepted | frames refused by | "
              "sampling (s per block) |", "|---|---:|---:|---:|---|---:|"]
    for row in r["gate"]:
        refused = ", ".join(f"{k} {v}" for k, v in sorted(row["refused_by"].items(), key=lambda kv: -kv[1])) or "—"
        lines.append(f"| {row['solver']} {row['ode_steps']} | {row['evaluations']} | {row['frames_accepted']}/"
                     f"{row['frames']} | {row['blocks_accepted']}/{row['blocks']} | {refused} | "
                     f"{row['sampling_s_per_block']:.2f} |")
    if r.get("paths"):
        lines += ["", "Whole gated paths (100 ps at most, the shipped unbinding settings but the solver):", "",
                  "| solver | successes | time to first path (s) | wall time per attempt (s) | re-draws | "
                  "mean exit (ps) | path RMSD to nearest metadynamics path (nm, mean / median, n) |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for row in r["paths"]:
            first_s = "—" if row["time_to_first_path_s"] is None else f"{row['time_to_first_path_s']:.1f}"
            exit_ps = "—" if row["mean_exit_time_ps"] is None else f"{row['mean_exit_time_ps']:.0f}"
            lines.append(f"| {row['solver']} {row['ode_steps']} | {row['successes']}/{row['attempts']} | {first_s} | "
                         f"{row['mean_wall_s_per_attempt']:.1f} | {row['gate_retries']} | {exit_ps} | "
                         f"{row['path_rmsd_mean_nm']:.2f} / {row['path_rmsd_median_nm']:.2f}, {row['path_rmsd_n']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
