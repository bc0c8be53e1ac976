"""Hybrid generative simulation vs plain OpenMM MD: speed and Ramachandran quality, same machine, same run.

1. ``biomd run`` on alanine dipeptide (shipped weights) for ``--time``; it
   picks the fastest CPU thread count for plain MD and times plain MD in 2 ps
   slices after every hybrid cycle (the speed-up: both measured over the same
   stretch of time, which matters on machines whose speed drifts);
2. plain OpenMM MD of the *same length* with the fastest setting and the same
   report interval (the quality yardstick, and a second, sequential timing);
3. the Ramachandran JSD of both trajectories against independent reference MD
   (a ``generate-data`` directory; the recipe's reference set by default).

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


def plain_md(system: str, total_ps: float, report_ps: float, properties: dict, seed: int, out: Path) -> dict:
    """Plain MD with the same settings and equilibration as ``biomd run``; returns its timing."""
    import openmm
    import openmm.app as app

    from openmm_biomd.data.md import equilibrate
    from openmm_biomd.data.systems import get_system
    from openmm_biomd.run import EQUILIBRATION_STEPS, TEMPERATURE_K, TIMESTEP_PS, simulation_for
    from openmm_biomd.trajectory_io import write_pdb

    loaded = get_system(system).load()
    simulation = simulation_for(loaded, openmm.Platform.getPlatformByName("CPU"), properties, seed)
    equilibrate(simulation, np.asarray(loaded.positions), TEMPERATURE_K, seed, EQUILIBRATION_STEPS)
    out.mkdir(parents=True, exist_ok=True)
    simulation.reporters.append(app.DCDReporter(str(out / "trajectory.dcd"), int(round(report_ps / TIMESTEP_PS))))
    steps = int(round(total_ps / TIMESTEP_PS))
    t0 = time.perf_counter()
    simulation.step(steps)
    wall = time.perf_counter() - t0
    write_pdb(out / "topology.pdb", loaded.topology, np.asarray(loaded.positions))
    return {"wall_s": wall, "ns_per_day": total_ps / 1000.0 / (wall / 86400.0), "properties": properties}


def table(result: dict) -> str:
    h, m = result["hybrid"], result["plain_md"]
    t = result["targets"]
    ok = {True: "✓", False: "✗"}
    return "\n".join([
        f"Alanine dipeptide (implicit solvent), {result['time_ps'] / 1000:g} ns each, CPU platform, "
        f"{result['machine']}; model `{h['model']}`; report interval {h['frame_interval_ps']} ps.",
        "",
        "| quantity | hybrid (`biomd run`) | plain OpenMM MD | target |",
        "|---|---:|---:|---|",
        f"| wall time (s) | {h['wall_s']:.1f} | {m['wall_s']:.1f} | |",
        f"| ns/day | {h['hybrid_ns_per_day']:,.0f} | {h['md_ns_per_day']:,.0f} interleaved with the hybrid run "
        f"({m['ns_per_day']:,.0f} in the long run{', an earlier run' if m.get('reused_from_earlier_run') else ' after it'}) | |",
        f"| speed-up (interleaved timing / vs the long plain-MD run) | {h['speedup']:.0f}× / "
        f"{result['speedup_vs_long_md']:.0f}× | 1× | ≥ 50× {ok[t['speedup']]} |",
        f"| Ramachandran JSD vs reference MD | {result['jsd_hybrid']:.3f} | {result['jsd_md']:.3f} | "
        f"hybrid − MD ≤ 0.05 {ok[t['jsd']]} |",
        f"| jumps accepted without MD fallback | {h['jumps_accepted']}/{h['jumps_attempted']} "
        f"({h['shortened_note']}) | — | ≥ 90 % {ok[t['acceptance']]} |",
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
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/hybrid_alanine_cpu.json"))
    parser.add_argument("--reuse-md", action="store_true",
                        help="keep the plain-MD run (trajectory and timing) of the previous result in --work/--out "
                             "(it does not depend on the model); only the hybrid run is redone")
    args = parser.parse_args()

    from openmm_biomd.data.md import parse_time_ps
    from openmm_biomd.recipes import hardware
    from openmm_biomd.run import RunRequest, ramachandran_jsd_vs_reference, run_hybrid

    reference = Path(args.reference)
    if not (reference / "metadata.json").exists():
        raise SystemExit(f"no reference MD at {reference}: run `biomd reproduce-weights alanine-dipeptide` first "
                         "(its reference step) or pass --reference")
    work = Path(args.work)
    total_ps = parse_time_ps(args.time)
    previous = json.loads(Path(args.out).read_text()) if args.reuse_md else None
    if previous is not None and previous["time_ps"] != total_ps:
        raise SystemExit("--reuse-md needs a previous result of the same --time")
    shutil.rmtree(work / "hybrid", ignore_errors=True)
    if previous is None:
        shutil.rmtree(work / "md", ignore_errors=True)
    hybrid = run_hybrid(RunRequest(time=args.time, seed=args.seed, md_benchmark_ps=20.0), work / "hybrid",
                        progress=True)
    if previous is None:
        md = plain_md("alanine-dipeptide", total_ps, hybrid["frame_interval_ps"], hybrid["platform_properties"],
                      args.seed + 1, work / "md")
    else:
        md = {**previous["plain_md"], "reused_from_earlier_run": True}
    jsd_hybrid = ramachandran_jsd_vs_reference(work / "hybrid", reference)
    jsd_md = ramachandran_jsd_vs_reference(work / "md", reference)
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
        "reference": str(reference),
    }
    acceptance = hybrid["jumps_accepted"] / max(hybrid["jumps_attempted"], 1)
    result["targets"] = {
        "speedup": hybrid["speedup"] >= 50,
        "jsd": jsd_hybrid - jsd_md <= 0.05,
        "acceptance": acceptance >= 0.9,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=str))
    text = table(result)
    replace_section("bench_hybrid", "Hybrid propagator vs plain MD (`benchmarks/bench_hybrid.py`)", text)
    print(text)


if __name__ == "__main__":
    main()
