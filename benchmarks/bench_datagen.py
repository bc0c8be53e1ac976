"""Plain-MD speed (ns/day) of the bundled systems on OpenMM's CPU platform.

For each bundled system: the raw integrator rate (``LangevinMiddleIntegrator``,
2 fs, HBonds constraints, the same setup as ``biomd generate-data``) with 1 and
with every CPU thread count up to the machine's cores, and the rate
:func:`openmm_biomd.data.generate_md` itself achieves with its automatic thread
choice (frames, DCD chunks and checkpoints included).  The best raw setting is
the honest baseline for any speed-up claim (DESIGN.md §4).  Writes JSON and
prints a markdown table for ``BENCHMARKS.md``.

    python benchmarks/bench_datagen.py                       # 2 ps per system and setting
    python benchmarks/bench_datagen.py --systems alanine-dipeptide host-guest --time-ps 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform as _platform
import sys
import tempfile
import time
from pathlib import Path


def raw_rate(loaded, threads: int, time_ps: float, timestep_fs: float = 2.0) -> dict:
    """ns/day of bare ``simulation.step`` after a short warm-up (no reporters, no frames)."""
    import openmm
    from openmm import unit

    from openmm_biomd.data.md import MDSettings, make_simulation

    settings = MDSettings(time_ps=time_ps, frame_interval_ps=time_ps, timestep_fs=timestep_fs)
    platform = openmm.Platform.getPlatformByName("CPU")
    simulation = make_simulation(loaded, settings, 1, platform, {"Threads": str(threads)})
    simulation.context.setPositions(loaded.positions)
    simulation.minimizeEnergy(maxIterations=200)
    simulation.context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    steps = int(round(time_ps * 1000 / timestep_fs))
    simulation.step(max(10, steps // 20))  # warm-up: first steps build neighbour lists and caches
    t0 = time.perf_counter()
    simulation.step(steps)
    simulation.context.getState(getEnergy=True)  # make sure all work has finished
    wall = time.perf_counter() - t0
    return {"threads": threads, "steps": steps, "wall_s": wall, "ns_per_day": time_ps / 1000 / wall * 86400}


def pipeline_rate(name: str, time_ps: float) -> dict:
    """ns/day that ``generate_md`` reports (production MD incl. frame writing, DCD chunks, checkpoints)."""
    from openmm_biomd.data import generate_md

    with tempfile.TemporaryDirectory() as tmp:
        meta = generate_md(name, Path(tmp) / "run", time_ps=time_ps, frame_interval_ps=0.2, chunk_frames=5,
                           equilibration_ps=0.0, platform="CPU")
    return {
        "threads": int(meta["platform"]["properties"]["Threads"]),
        "ns_per_day": meta["ns_per_day"],
        "md_wall_s": meta["md_wall_s"],
        "wall_s": meta["wall_s"],
    }


def main() -> int:
    from openmm_biomd.data import BUNDLED_SYSTEMS
    from openmm_biomd.data.md import package_versions

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+", default=list(BUNDLED_SYSTEMS), choices=list(BUNDLED_SYSTEMS))
    parser.add_argument("--time-ps", type=float, default=2.0, help="simulated time per measurement, ps")
    parser.add_argument("--threads", type=int, nargs="+", help="thread counts (default 1 .. cores)")
    parser.add_argument("--no-pipeline", action="store_true", help="skip the generate_md measurement")
    parser.add_argument("--out", default="benchmarks/results/datagen_cpu.json")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    thread_counts = args.threads or list(range(1, cores + 1))

    rows = []
    for name in args.systems:
        loaded = BUNDLED_SYSTEMS[name].load()
        row = {"system": name, "n_atoms": loaded.system.getNumParticles(), "raw": []}
        for threads in thread_counts:
            result = raw_rate(loaded, threads, args.time_ps)
            row["raw"].append(result)
            print(f"{name}: {threads} thread(s) {result['ns_per_day']:.1f} ns/day", file=sys.stderr, flush=True)
        best = max(row["raw"], key=lambda r: r["ns_per_day"])
        row["best_threads"], row["best_ns_per_day"] = best["threads"], best["ns_per_day"]
        if not args.no_pipeline:
            row["generate_md"] = pipeline_rate(name, args.time_ps)
            print(f"{name}: generate_md {row['generate_md']['ns_per_day']:.1f} ns/day", file=sys.stderr, flush=True)
        rows.append(row)

    report = {
        "benchmark": "bench_datagen",
        "platform": "CPU",
        "time_ps_per_measurement": args.time_ps,
        "timestep_fs": 2.0,
        "integrator": "LangevinMiddleIntegrator, HBonds constraints",
        "machine": {"cpu_count": cores, "processor": _platform.processor() or _platform.machine(), "os": _platform.platform()},
        "versions": package_versions(),
        "results": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")

    header = "| system | atoms | " + " | ".join(f"{t} thread{'s' * (t > 1)} (ns/day)" for t in thread_counts)
    header += " | best | generate_md (ns/day, threads) |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for row in rows:
        cells = [row["system"], str(row["n_atoms"])]
        cells += [f"{r['ns_per_day']:.1f}" for r in row["raw"]]
        cells.append(f"{row['best_ns_per_day']:.1f} ({row['best_threads']} thr)")
        gm = row.get("generate_md")
        cells.append(f"{gm['ns_per_day']:.1f} ({gm['threads']} thr)" if gm else "-")
        print("| " + " | ".join(cells) + " |")
    print(f"\n{args.time_ps:g} ps per measurement, 2 fs steps, CPU platform; JSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
