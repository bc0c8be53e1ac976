"""Plain-MD speed (ns/day) of the bundled systems on an OpenMM platform (CPU by default, or CUDA).

For each bundled system: the raw integrator rate (``LangevinMiddleIntegrator``,
2 fs, HBonds constraints, the same setup as ``biomd generate-data``) with 1 and
with every CPU thread count up to the machine's cores (on CUDA: one setting,
mixed precision), and the rate :func:`openmm_biomd.data.generate_md` itself
achieves with its automatic choice (frames, DCD chunks and checkpoints
included).  The best raw setting is the honest baseline for any speed-up claim
(DESIGN.md §4).  ``--concurrent N`` also runs N simulations of each system side
by side, one process each, and reports their summed rate: what several replicas
(``biomd reproduce-weights --parallel-md``) get from one machine.  Writes JSON and
prints a markdown table for ``BENCHMARKS.md``.

    python benchmarks/bench_datagen.py                       # 2 ps per system and setting
    python benchmarks/bench_datagen.py --systems alanine-dipeptide host-guest --time-ps 10
    python benchmarks/bench_datagen.py --platform CUDA --time-ps 20 --concurrent 5 --out benchmarks/results/datagen_cuda.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform as _platform
import sys
import tempfile
import time
from pathlib import Path


def raw_rate(loaded, threads: int | None, time_ps: float, timestep_fs: float = 2.0, platform_name: str = "CPU",
             start=None) -> dict:
    """ns/day of bare ``simulation.step`` after a short warm-up (no reporters, no frames).

    ``threads`` is the CPU platform's thread count (ignored on a GPU platform); ``start``, a barrier that
    side-by-side runs pass after their warm-up, so that their timed steps coincide.
    """
    from openmm import unit

    from openmm_biomd.data.md import MDSettings, make_simulation, select_platform

    settings = MDSettings(time_ps=time_ps, frame_interval_ps=time_ps, timestep_fs=timestep_fs)
    platform, properties = select_platform(platform_name, threads=threads)
    simulation = make_simulation(loaded, settings, 1, platform, properties)
    simulation.context.setPositions(loaded.positions)
    simulation.minimizeEnergy(maxIterations=200)
    simulation.context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    steps = int(round(time_ps * 1000 / timestep_fs))
    simulation.step(max(10, steps // 20))  # warm-up: first steps build neighbour lists and caches
    if start is not None:
        start.wait()
    t0 = time.perf_counter()
    simulation.step(steps)
    simulation.context.getState(getEnergy=True)  # make sure all work has finished
    wall = time.perf_counter() - t0
    return {"threads": threads if platform_name == "CPU" else None, "steps": steps, "wall_s": wall,
            "ns_per_day": time_ps / 1000 / wall * 86400}


def _concurrent_worker(name: str, time_ps: float, platform_name: str, threads: int | None, start, results) -> None:
    """One of several side-by-side simulations: build, wait for the others, then time ``raw_rate``."""
    from openmm_biomd.data import BUNDLED_SYSTEMS

    loaded = BUNDLED_SYSTEMS[name].load()
    results.put(raw_rate(loaded, threads, time_ps, platform_name=platform_name, start=start))


def concurrent_rate(name: str, n: int, time_ps: float, platform_name: str, threads: int | None) -> dict:
    """Summed ns/day of ``n`` simulations of one system running side by side, one process each.

    Each process builds its context and warms up, then all start their clocks together; the sum over
    processes is the throughput of ``n`` replicas run at once (on a GPU: whether it is shared well; on a
    CPU: threads split ``n`` ways).
    """
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_concurrent_worker, args=(name, time_ps, platform_name, threads, start, results))
             for _ in range(n)]
    for proc in procs:
        proc.start()
    rates = [results.get() for _ in procs]
    for proc in procs:
        proc.join()
    total = sum(r["ns_per_day"] for r in rates)
    return {"processes": n, "threads_each": threads, "ns_per_day_each": [r["ns_per_day"] for r in rates],
            "ns_per_day_total": total}


def pipeline_rate(name: str, time_ps: float, platform_name: str = "CPU") -> dict:
    """ns/day that ``generate_md`` reports (production MD incl. frame writing, DCD chunks, checkpoints)."""
    from openmm_biomd.data import generate_md

    with tempfile.TemporaryDirectory() as tmp:
        meta = generate_md(name, Path(tmp) / "run", time_ps=time_ps, frame_interval_ps=0.2, chunk_frames=5,
                           equilibration_ps=0.0, platform=platform_name)
    return {
        "threads": int(meta["platform"]["properties"]["Threads"]) if platform_name == "CPU" else None,
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
    parser.add_argument("--platform", default="CPU", help="OpenMM platform: CPU (default) or CUDA")
    parser.add_argument("--threads", type=int, nargs="+", help="CPU thread counts (default 1 .. cores)")
    parser.add_argument("--concurrent", type=int, default=0, metavar="N",
                        help="also time N simulations side by side (CPU: threads split evenly)")
    parser.add_argument("--no-pipeline", action="store_true", help="skip the generate_md measurement")
    parser.add_argument("--out", default="benchmarks/results/datagen_cpu.json")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    on_cpu = args.platform == "CPU"
    thread_counts = (args.threads or list(range(1, cores + 1))) if on_cpu else [None]

    rows = []
    for name in args.systems:
        loaded = BUNDLED_SYSTEMS[name].load()
        row = {"system": name, "n_atoms": loaded.system.getNumParticles(), "raw": []}
        for threads in thread_counts:
            result = raw_rate(loaded, threads, args.time_ps, platform_name=args.platform)
            row["raw"].append(result)
            print(f"{name}: {_setting(threads, args.platform)} {result['ns_per_day']:.1f} ns/day", file=sys.stderr, flush=True)
        best = max(row["raw"], key=lambda r: r["ns_per_day"])
        row["best_threads"], row["best_ns_per_day"] = best["threads"], best["ns_per_day"]
        if args.concurrent > 1:
            threads = max(1, cores // args.concurrent) if on_cpu else None
            row["concurrent"] = concurrent_rate(name, args.concurrent, args.time_ps, args.platform, threads)
            print(f"{name}: {args.concurrent} side by side {row['concurrent']['ns_per_day_total']:.1f} ns/day in all",
                  file=sys.stderr, flush=True)
        if not args.no_pipeline:
            row["generate_md"] = pipeline_rate(name, args.time_ps, args.platform)
            print(f"{name}: generate_md {row['generate_md']['ns_per_day']:.1f} ns/day", file=sys.stderr, flush=True)
        rows.append(row)

    report = {
        "benchmark": "bench_datagen",
        "platform": args.platform,
        "device": _device_name(args.platform),
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

    header = "| system | atoms | " + " | ".join(f"{_setting(t, args.platform)} (ns/day)" for t in thread_counts)
    header += " | best |" + (f" {args.concurrent} side by side (ns/day, sum) |" if args.concurrent > 1 else "")
    header += " generate_md (ns/day) |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for row in rows:
        cells = [row["system"], str(row["n_atoms"])]
        cells += [f"{r['ns_per_day']:.1f}" for r in row["raw"]]
        cells.append(f"{row['best_ns_per_day']:.1f}" + (f" ({row['best_threads']} thr)" if on_cpu else ""))
        if args.concurrent > 1:
            cells.append(f"{row['concurrent']['ns_per_day_total']:.1f}")
        gm = row.get("generate_md")
        cells.append((f"{gm['ns_per_day']:.1f}" + (f" ({gm['threads']} thr)" if on_cpu else "")) if gm else "-")
        print("| " + " | ".join(cells) + " |")
    print(f"\n{args.time_ps:g} ps per measurement, 2 fs steps, {args.platform} platform "
          f"({report['device']}); JSON: {out}")
    return 0


def _setting(threads: int | None, platform_name: str) -> str:
    return f"{threads} thread{'s' * (threads > 1)}" if platform_name == "CPU" else platform_name


def _device_name(platform_name: str) -> str:
    """The GPU's name for a GPU platform (through PyTorch when it sees one), else the CPU's."""
    if platform_name != "CPU":
        try:
            import torch

            if torch.cuda.is_available():
                return torch.cuda.get_device_name()
        except ImportError:
            pass
    return _platform.processor() or _platform.machine()


if __name__ == "__main__":
    sys.exit(main())
