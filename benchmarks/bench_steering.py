"""What physics steering and a longer gate relaxation do to the unbinding gate's verdicts (host–guest).

Draws coarse blocks (the unbinding rollout's first piece: one history frame,
``block_frames`` new frames ``k·Δt`` apart) from held-out bound starting frames
(frame 0 of each path of the recipe's held-out metadynamics campaign) with the
shipped ``host-guest`` model, with and without steering
(:mod:`biomd_core.sampling.steering`), the same noise for both (paired draws),
and checks every frame and every block with the unbinding gate at each
relaxation length.  The gate's energy statistics for each length are measured
on every frame of the held-out paths, as the model card's are.

Reports, per setting: frames and blocks passing, the first failed check of
each refused frame, and the sampling time per block (steering's cost).  With
``--paths N`` it also generates ``N`` whole gated paths per start with and
without steering (the shipped unbinding gate) and reports successes, time to
the first path and the path RMSD to the nearest held-out metadynamics path —
what steering costs in realism — beside the metadynamics paths' own spread
(each one's path RMSD to the nearest other).
Writes ``benchmarks/results/steering_host_guest_cpu.json`` and the "Physics
steering" section of BENCHMARKS.md.

    python benchmarks/bench_steering.py
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from benchmarks_md import publish

REPO = Path(__file__).resolve().parents[1]


def draw_blocks(unbinder, starts: np.ndarray, draws: int, seed: int) -> tuple[np.ndarray, float]:
    """``draws`` coarse blocks from each start → ``[S·draws, block, N, 3]`` nm, and seconds per block."""
    from biomd_core.sampling import schedules

    time_grid = unbinder.time
    plan = schedules.autoregressive_block(1, time_grid.block_frames, time_grid.coarse_interval_ps)
    sampler = unbinder.generator.sampler
    blocks, wall = [], 0.0
    for s, start in enumerate(starts):
        generator = torch.Generator().manual_seed(seed + s)
        window = torch.from_numpy(np.asarray(start))[None, None].expand(1, plan.n_frames, -1, -1).clone()
        for _ in range(draws):  # one block per call, as the rollout draws them
            t0 = time.perf_counter()
            blocks.append(sampler.sample_window(plan, window, generator)[0, 1:].numpy())
            wall += time.perf_counter() - t0
    return np.asarray(blocks), wall / len(blocks)


def verdicts(gate, blocks: np.ndarray) -> dict:
    """Frames and blocks passing ``gate``; first failed check of each refused frame."""
    reasons: Counter = Counter()
    for frame in blocks.reshape(-1, *blocks.shape[2:]):
        reasons[gate.check(frame[None]).reason or "accepted"] += 1
    passed_blocks = sum(gate.check(block).accepted for block in blocks)
    n_frames = int(blocks.shape[0] * blocks.shape[1])
    return {"frames": n_frames, "frames_accepted": reasons.pop("accepted", 0), "blocks": int(len(blocks)),
            "blocks_accepted": int(passed_blocks), "refused_by": dict(reasons)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heldout", default=str(REPO / "runs/data/host-guest-heldout"))
    parser.add_argument("--starts", type=int, default=2, help="held-out starting frames")
    parser.add_argument("--draws", type=int, default=16, help="blocks drawn per start and setting")
    parser.add_argument("--strength", type=float, default=1.0, help="steering strength compared with 0")
    parser.add_argument("--iterations", type=int, nargs="+", default=[100, 300],
                        help="gate relaxation lengths (L-BFGS steps) to compare")
    parser.add_argument("--paths", type=int, default=0, help="whole gated paths per start and setting (0: none)")
    parser.add_argument("--work", default=str(REPO / "runs/bench-steering"), help="where --paths writes its paths")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/steering_host_guest_cpu.json"))
    args = parser.parse_args()

    from openmm_biomd.data.systems import get_system
    from openmm_biomd.enhanced.path_metrics import campaign_paths
    from openmm_biomd.enhanced.unbind import UNBIND_GATE, Unbinder, UnbindSettings
    from openmm_biomd.propagator.gate import PhysicsGate
    from openmm_biomd.recipes import hardware

    loaded = get_system("host-guest").load()
    references = campaign_paths(args.heldout)  # frames of the modelled atoms (all of them here)
    starts = np.stack([ref[0] for ref in references[: args.starts]])
    no_energy = replace(UNBIND_GATE, check_energy=False)  # the gates below carry their own statistics
    samplers = {strength: Unbinder(loaded, "host-guest", gate_config=no_energy,
                                   settings=UnbindSettings(steering=strength))
                for strength in (0.0, args.strength)}
    some = samplers[0.0]
    gates = {}
    for iterations in args.iterations:
        gate = PhysicsGate(some.gate.solute, some.graph.bonds, some.graph.element_labels,
                           np.asarray(loaded.positions)[some.modelled],
                           replace(UNBIND_GATE, minimize_iterations=iterations))
        gate.calibrate(np.concatenate(references), f"every frame of {len(references)} held-out paths")
        gates[iterations] = gate

    rows = []
    for strength, unbinder in samplers.items():
        blocks, per_block_s = draw_blocks(unbinder, starts, args.draws, args.seed)
        for iterations, gate in gates.items():
            rows.append({"steering": strength, "gate_iterations": iterations, "sampling_s_per_block": per_block_s,
                         **verdicts(gate, blocks)})
            print(json.dumps(rows[-1]), flush=True)
    result = {"benchmark": "bench_steering", "machine": hardware(), "model": "host-guest",
              "model_hash": some.model_hash, "starts": int(len(starts)), "draws_per_start": args.draws,
              "seed": args.seed, "solver": f"{some.settings.solver} {some.settings.ode_steps} steps",
              "gate_reference": {it: g.energy_reference.to_dict() for it, g in gates.items()}, "rows": rows}
    if args.paths:
        result["paths"] = whole_paths(loaded, starts, references, args.paths, args.strength, Path(args.work))
    publish(Path(args.out), result, "bench_steering",
            "Physics steering: gate verdicts on generated unbinding blocks (`benchmarks/bench_steering.py`)",
            table(result))


def whole_paths(loaded, starts: np.ndarray, references: list, per_start: int, strength: float, work: Path) -> dict:
    """Gated paths with and without steering (the shipped gate), and the metadynamics paths' own spread."""
    import shutil

    from openmm_biomd.enhanced.path_metrics import nearest_path_rmsd_nm
    from openmm_biomd.enhanced.recipe import evaluate_unbinding
    from openmm_biomd.enhanced.unbind import Unbinder, UnbindSettings

    rows = []
    for steering in (0.0, strength):
        unbinder = Unbinder(loaded, "host-guest", settings=UnbindSettings(max_time_ps=100.0, steering=steering))
        out = work / f"steering-{steering:g}"
        shutil.rmtree(out, ignore_errors=True)
        q = evaluate_unbinding(unbinder, starts, references, out, per_start)
        rmsd = q["path_rmsd_to_nearest_metad_nm"]
        rows.append({"steering": steering, "attempts": q["attempts"], "successes": q["successes"],
                     "time_to_first_path_s": q["time_to_first_path_s"],
                     "mean_wall_s_per_attempt": q["mean_wall_s_per_attempt"], "path_rmsd_mean_nm": rmsd["mean"],
                     "path_rmsd_median_nm": rmsd["median"], "path_rmsd_n": rmsd["n"],
                     "gate_relaxation_steps": unbinder.gate.config.minimize_iterations})
        print(json.dumps(rows[-1]), flush=True)
    pocket = unbinder.pocket
    spread = [nearest_path_rmsd_nm(path, references[:i] + references[i + 1:], pocket)
              for i, path in enumerate(references)]
    return {"rows": rows, "metad_nearest_other_rmsd_nm": {"mean": float(np.mean(spread)),
                                                           "median": float(np.median(spread)), "n": len(spread)}}


def table(r: dict) -> str:
    lines = [
        f"Host–guest CB7–B2, shipped `host-guest` weights, {r['solver']}; {r['starts']} held-out starts × "
        f"{r['draws_per_start']} coarse blocks of {r['rows'][0]['frames'] // r['rows'][0]['blocks']} frames, the same "
        f"noise with and without steering; {r['machine']}.",
        "",
        "| steering | gate relaxation (L-BFGS steps) | frames accepted | blocks accepted | frames refused by | "
        "sampling (s per block) |",
        "|---:|---:|---:|---:|---|---:|",
    ]
    for row in r["rows"]:
        refused = ", ".join(f"{k} {v}" for k, v in sorted(row["refused_by"].items(), key=lambda kv: -kv[1])) or "—"
        lines.append(f"| {row['steering']:g} | {row['gate_iterations']} | {row['frames_accepted']}/{row['frames']} | "
                     f"{row['blocks_accepted']}/{row['blocks']} | {refused} | {row['sampling_s_per_block']:.2f} |")
    if r.get("paths"):
        p = r["paths"]
        first = p["rows"][0]
        lines += [
            "",
            f"Whole gated paths ({first['attempts'] // r['starts']} per start, the shipped gate: "
            f"{first['gate_relaxation_steps']} relaxation steps):",
            "",
            "| steering | successes | time to first path (s) | wall time per attempt (s) | "
            "path RMSD to nearest metadynamics path (nm, mean / median, n) |",
            "|---:|---:|---:|---:|---:|",
        ]
        for row in p["rows"]:
            first_s = "—" if row["time_to_first_path_s"] is None else f"{row['time_to_first_path_s']:.1f}"
            lines.append(f"| {row['steering']:g} | {row['successes']}/{row['attempts']} | {first_s} | "
                         f"{row['mean_wall_s_per_attempt']:.1f} | {_nm(row['path_rmsd_mean_nm'])} / "
                         f"{_nm(row['path_rmsd_median_nm'])}, {row['path_rmsd_n']} |")
        m = p["metad_nearest_other_rmsd_nm"]
        lines.append(f"| metadynamics paths among themselves (each to the nearest other) | | | | "
                     f"{m['mean']:.2f} / {m['median']:.2f}, {m['n']} |")
    return "\n".join(lines)


def _nm(x) -> str:
    return "—" if x is None else f"{x:.2f}"


if __name__ == "__main__":
    main()
