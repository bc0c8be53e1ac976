"""Hybrid generative simulation vs plain OpenMM MD: speed and Ramachandran quality, same machine, same run.

1. ``biomd run`` on alanine dipeptide (shipped weights) for ``--time``; it
   picks the fastest CPU setting for plain MD (each thread count, and one
   thread pinned to a core: ``openmm_biomd.affinity``) and times plain MD in 2 ps
   slices after every hybrid cycle (the speed-up: both measured over the same
   stretch of time, which matters on machines whose speed drifts);
2. plain OpenMM MD of the *same length* with the fastest setting and the same
   report interval (the quality yardstick, and a second, sequential timing);
3. the Ramachandran JSD of both trajectories against independent reference MD
   (a ``generate-data`` directory; the recipe's reference set by default).

One 5 ns trajectory gives a noisy JSD, so ``--seeds N`` runs N hybrid
trajectories (seeds 0..N−1) and ``--md-runs`` adds independent plain-MD runs
of the same length that already exist (``generate-data`` directories, e.g.
the recipe's training MD, read at the report interval): the target compares
the means, and the table shows every value.  ``--hybrid-runs`` adds hybrid
runs made earlier with the same settings (other seeds; checked).

Targets (issue #4): speed-up ≥ 50×; JSD(hybrid) − JSD(plain MD) ≤ 0.05;
≥ 90 % of jumps accepted without falling back to MD.  Writes JSON and
replaces the "Hybrid propagator" section of BENCHMARKS.md.

    python benchmarks/bench_hybrid.py --time 5ns
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
from benchmarks_md import replace_section

REPO = Path(__file__).resolve().parents[1]


def plain_md(system: str, total_ps: float, report_ps: float, properties: dict, pinned_cpu: int | None, seed: int,
             out: Path) -> dict:
    """Plain MD with the same settings and equilibration as ``biomd run`` (and its fastest setting: thread
    count, pinned to a core or not); returns its timing."""
    import openmm
    import openmm.app as app

    from openmm_biomd.affinity import pinned_to_cpu
    from openmm_biomd.data.md import equilibrate
    from openmm_biomd.data.systems import get_system
    from openmm_biomd.run import EQUILIBRATION_STEPS, TEMPERATURE_K, TIMESTEP_PS, simulation_for
    from openmm_biomd.trajectory_io import write_pdb

    loaded = get_system(system).load()
    out.mkdir(parents=True, exist_ok=True)
    steps = int(round(total_ps / TIMESTEP_PS))
    with pinned_to_cpu(pinned_cpu):
        simulation = simulation_for(loaded, openmm.Platform.getPlatformByName("CPU"), properties, seed)
        equilibrate(simulation, np.asarray(loaded.positions), TEMPERATURE_K, seed, EQUILIBRATION_STEPS)
        simulation.reporters.append(app.DCDReporter(str(out / "trajectory.dcd"), int(round(report_ps / TIMESTEP_PS))))
        t0 = time.perf_counter()
        simulation.step(steps)
        wall = time.perf_counter() - t0
    write_pdb(out / "topology.pdb", loaded.topology, np.asarray(loaded.positions))
    return {"wall_s": wall, "ns_per_day": total_ps / 1000.0 / (wall / 86400.0), "properties": properties,
            "pinned_cpu": pinned_cpu}


def jsd_of_md_runs(directories: list[str], report_ps: float, total_ps: float, ref: np.ndarray) -> list[float]:
    """Ramachandran JSD vs reference angles ``ref`` of every replica in ``directories`` (plain MD), cut to
    ``total_ps`` and read every ``report_ps`` like the hybrid trajectory."""
    from biomd_core.evaluation.metrics import ramachandran_angles, ramachandran_jsd
    from openmm_biomd.data.md import iter_replica_trajectories, read_metadata

    values = []
    for directory in directories:
        interval = float(read_metadata(directory)["frame_interval_ps"])
        stride = int(round(report_ps / interval))
        for traj in iter_replica_trajectories(directory):
            frames = traj[stride - 1::stride][: int(round(total_ps / report_ps))]
            values.append(ramachandran_jsd(ramachandran_angles(frames), ref))
    return values


def _check_same_settings(runs: list[tuple[Path, dict]]) -> None:
    """Refuse hybrid runs (``--hybrid-runs``) that differ from the first in anything but the seed."""
    keys = ("system", "model_sha256", "solver", "ode_steps", "frame_md_steps", "thermalize_steps", "simulated_ps",
            "frame_interval_ps", "jump_ps")
    first_dir, first = runs[0]
    seeds = [summary["seed"] for _, summary in runs]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"hybrid runs repeat a seed: {sorted(seeds)}")
    for run_dir, summary in runs[1:]:
        differ = [k for k in keys if summary.get(k) != first.get(k)]
        if differ:
            raise SystemExit(f"{run_dir} differs from {first_dir} in {', '.join(differ)}")


def _or_default(value, default):
    return default if value is None else value


def _gap_standard_error(result: dict) -> float:
    """Standard error of mean(hybrid JSD) − mean(plain-MD JSD) over the runs."""

    def squared_error_of_mean(values: list[float]) -> float:
        return float(np.var(values, ddof=1)) / len(values) if len(values) > 1 else 0.0

    return float(np.sqrt(squared_error_of_mean(result["jsd_hybrid_runs"]) + squared_error_of_mean(result["jsd_md_runs"])))


def table(result: dict) -> str:
    h, m = result["hybrid"], result["plain_md"]
    t = result["targets"]
    ok = {True: "✓", False: "✗"}
    gap, gap_se = result["jsd_hybrid"] - result["jsd_md"], _gap_standard_error(result)
    return "\n".join([
        f"Alanine dipeptide (implicit solvent), {result['time_ps'] / 1000:g} ns each, CPU platform, "
        f"{result['machine']}; model `{h['model']}` ({h['solver']}, {h['ode_steps']} steps per window, "
        f"{h.get('frame_md_steps', 0)} MD steps per written frame, {h.get('thermalize_steps', 500)} "
        f"thermalisation steps per hand-back); "
        f"report interval {h['frame_interval_ps']} ps.",
        "",
        "| quantity | hybrid (`biomd run`) | plain OpenMM MD | target |",
        "|---|---:|---:|---|",
        f"| wall time (s) | {h['wall_s']:.1f} | {m['wall_s']:.1f} | |",
        f"| ns/day | {h['hybrid_ns_per_day']:,.0f} | {h['md_ns_per_day']:,.0f} interleaved with the hybrid run "
        f"({m['ns_per_day']:,.0f} in the long run{', an earlier run' if m.get('reused_from_earlier_run') else ' after it'}) | |",
        f"| speed-up (interleaved timing; all seeds: {', '.join(f'{v:.0f}×' for v in result['speedup_runs'])}"
        f" / vs the long plain-MD run) | {h['speedup']:.0f}× / "
        f"{result['speedup_vs_long_md']:.0f}× | 1× | ≥ 50× {ok[t['speedup']]} |",
        f"| Ramachandran JSD vs reference MD, mean over runs | {np.mean(result['jsd_hybrid_runs']):.3f} "
        f"({len(result['jsd_hybrid_runs'])} runs: {', '.join(f'{v:.3f}' for v in result['jsd_hybrid_runs'])}) | "
        f"{np.mean(result['jsd_md_runs']):.3f} ({len(result['jsd_md_runs'])} runs: "
        f"{', '.join(f'{v:.3f}' for v in result['jsd_md_runs'])}) | hybrid − MD ≤ 0.05: "
        f"{gap:.4f} ± {gap_se:.4f} (SE) {ok[t['jsd']]}{' (within 1 SE of the bar)' if abs(gap - 0.05) < gap_se else ''} |",
        f"| jumps accepted without MD fallback | {h['jumps_accepted']}/{h['jumps_attempted']} "
        f"({h['shortened_note']}; lowest over the runs {min(result['acceptance_runs']):.0%}) | — | "
        f"≥ 90 % {ok[t['acceptance']]} |",
        f"| frames re-drawn after a gate rejection | {h['retries']} ({h['rejections']}) | — | |",
        "",
        f"Wall time of the hybrid run by stage (s): "
        f"{ {k: round(v, 1) for k, v in h['wall_breakdown_s'].items()} }. Plain-MD timing for the speed-up: "
        f"{h['md_timing_method']}.",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time", default="5ns")
    parser.add_argument("--reference", default=str(REPO / "runs/data/alanine-dipeptide-reference"))
    parser.add_argument("--work", default=str(REPO / "runs/bench-hybrid"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", help="checkpoint or model name to try (default: the shipped alanine-dipeptide weights, "
                             "whose table replaces BENCHMARKS.md's; another model's goes to --out only)")
    parser.add_argument("--solver", help="heun, ab2, euler or sde (default: biomd run's)")
    parser.add_argument("--ode-steps", type=int, help="solver steps per generated window (default: biomd run's)")
    parser.add_argument("--frame-md-steps", type=int,
                        help="MD steps each written frame gets (default: biomd run's)")
    parser.add_argument("--thermalize-steps", type=int,
                        help="uncounted MD steps after each hand-back's minimisation (default: biomd run's)")
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/hybrid_alanine_cpu.json"))
    parser.add_argument("--seeds", type=int, default=1, help="hybrid runs with seeds 0..N-1 (the first is the one timed in the table)")
    parser.add_argument("--md-runs", nargs="*", default=[],
                        help="generate-data directories of further independent plain MD (same settings) for the JSD yardstick")
    parser.add_argument("--hybrid-runs", nargs="*", default=[],
                        help="further `biomd run` directories of the same settings (other seeds) to include in the "
                             "JSD, speed-up and acceptance statistics")
    parser.add_argument("--reuse-md", action="store_true",
                        help="keep the plain-MD run (its timing and JSD) of the previous result in --out "
                             "(it does not depend on the model); only the hybrid runs are redone")
    args = parser.parse_args()

    from openmm_biomd.data.md import parse_time_ps
    from openmm_biomd.recipes import hardware
    from openmm_biomd.run import RunRequest, ramachandran_jsd_vs_reference, reference_ramachandran, run_hybrid

    reference = Path(args.reference)
    if not (reference / "metadata.json").exists():
        raise SystemExit(f"no reference MD at {reference}: run `biomd reproduce-weights alanine-dipeptide` first "
                         "(its reference step) or pass --reference")
    work = Path(args.work)
    total_ps = parse_time_ps(args.time)
    previous = json.loads(Path(args.out).read_text()) if args.reuse_md else None
    if previous is not None and (previous["time_ps"] != total_ps or previous["reference"] != str(reference)):
        raise SystemExit("--reuse-md needs a previous result of the same --time and --reference")
    shutil.rmtree(work / "hybrid", ignore_errors=True)
    if previous is None:
        shutil.rmtree(work / "md", ignore_errors=True)
    runs = []
    for k in range(args.seeds):
        run_dir = work / ("hybrid" if k == 0 else f"hybrid_seed{args.seed + k}")
        shutil.rmtree(run_dir, ignore_errors=True)
        runs.append((run_dir, run_hybrid(RunRequest(model=args.model, time=args.time, seed=args.seed + k,
                                                    solver=_or_default(args.solver, RunRequest.solver),
                                                    ode_steps=_or_default(args.ode_steps, RunRequest.ode_steps),
                                                    frame_md_steps=_or_default(args.frame_md_steps,
                                                                               RunRequest.frame_md_steps),
                                                    thermalize_steps=_or_default(args.thermalize_steps,
                                                                                 RunRequest.thermalize_steps),
                                                    md_benchmark_ps=20.0),
                                         run_dir, progress=True)))
    hybrid = runs[0][1]
    runs += [(Path(d), json.loads((Path(d) / "summary.json").read_text())) for d in args.hybrid_runs]
    _check_same_settings(runs)
    if previous is None:
        md = plain_md("alanine-dipeptide", total_ps, hybrid["frame_interval_ps"], hybrid["platform_properties"],
                      hybrid.get("md_pinned_cpu"), args.seed + 1, work / "md")
    else:
        md = {**previous["plain_md"], "reused_from_earlier_run": True}
    ref_angles = reference_ramachandran(reference)  # read once for every comparison
    jsd_hybrid_runs = [ramachandran_jsd_vs_reference(d, ref_angles) for d, _ in runs]
    # the benchmark's own plain-MD run: measured now, or its JSD from the previous result (same reference)
    jsd_md_runs = [ramachandran_jsd_vs_reference(work / "md", ref_angles) if previous is None
                   else previous["jsd_md_runs"][0]]
    jsd_md_runs += jsd_of_md_runs(args.md_runs, hybrid["frame_interval_ps"], total_ps, ref_angles)
    jsd_hybrid, jsd_md = float(np.mean(jsd_hybrid_runs)), float(np.mean(jsd_md_runs))
    hybrid["shortened_note"] = f"{hybrid['jumps_shortened']} shortened"
    result = {
        "benchmark": "bench_hybrid",
        "machine": hardware(),
        "time_ps": total_ps,
        "hybrid": hybrid,
        "plain_md": md,
        "speedup_vs_long_md": hybrid["hybrid_ns_per_day"] / md["ns_per_day"],
        "jsd_hybrid": jsd_hybrid,
        "jsd_md": jsd_md,
        "jsd_hybrid_runs": jsd_hybrid_runs,
        "jsd_md_runs": jsd_md_runs,
        "md_runs": args.md_runs,
        "hybrid_runs": args.hybrid_runs,
        "speedup_runs": [h["speedup"] for _, h in runs],
        "acceptance_runs": [h["jumps_accepted"] / max(h["jumps_attempted"], 1) for _, h in runs],
        "reference": str(reference),
    }
    acceptance = min(result["acceptance_runs"])
    result["targets"] = {
        "speedup": min(result["speedup_runs"]) >= 50,
        "jsd": jsd_hybrid - jsd_md <= 0.05,
        "acceptance": acceptance >= 0.9,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=str))
    text = table(result)
    if args.model is None:  # the table in BENCHMARKS.md is the shipped weights'
        replace_section("bench_hybrid", "Hybrid propagator vs plain MD (`benchmarks/bench_hybrid.py`)", text)
    print(text)


if __name__ == "__main__":
    main()
