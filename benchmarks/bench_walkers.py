"""Metadynamics walkers one after another or side by side on pinned cores (host–guest, CPU).

``biomd walkers`` runs K well-tempered metadynamics walkers sharing one bias directory. In lockstep
(the default exchange) every walker writes its hills before any reads the others', so the walkers can
run side by side, each on a thread of its own pinned to a core (``WalkerSettings.cpus``, ``--cpus``),
without changing a number. This measures what that buys on this machine: the same walkers, the same
seeds, run one after another on the calling thread and side by side on all cores, alternately, with
plain OpenMM MD of the same system (its fastest CPU setting, :func:`openmm_biomd.run.time_plain_md`)
timed in the same run as the yardstick. It also checks that all three give bit-identical bias files.

The path that seeds the walkers is generated here by the shipped model (``Unbinder.attempt`` from the
bundled bound pose, the first attempt seed that leaves), so the walkers start along a real generated path.

Writes ``benchmarks/results/walkers_cpu.json`` and the "Metadynamics walkers" section of BENCHMARKS.md.

    python benchmarks/bench_walkers.py --walkers 2 4 --time-ps 40 --repeats 2
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
from benchmarks_md import publish

REPO = Path(__file__).resolve().parents[1]
#: How the walkers are run: one after another on the calling thread (unpinned, one OpenMM thread: the
#: package's default for this small system), one after another on one pinned core's thread (what pinning
#: alone buys), side by side on every allowed core (``cpus``: walkers spread over the cores' threads).
ARRANGEMENTS = ("one after another, unpinned", "one after another, one pinned core", "side by side on all cores")


def generated_path(unbinder, max_attempts: int) -> tuple[np.ndarray, dict]:
    """A dissociation path ``[T, N, 3]`` nm from the shipped model, and which attempt it was."""
    loaded = unbinder.loaded
    start = np.asarray(loaded.positions, dtype=np.float64)[unbinder.modelled]
    for seed in range(max_attempts):
        frames, result = unbinder.attempt(start, seed)
        if result["success"]:
            full = np.repeat(np.asarray(loaded.positions, dtype=np.float64)[None], len(frames), axis=0)
            full[:, unbinder.modelled] = frames
            return full, {"attempt_seed": seed, "frames": int(len(frames)), "model": unbinder.model_label,
                          "exit_time_ps": result.get("exit_time_ps"), "wall_s": result.get("wall_s")}
    raise SystemExit(f"none of {max_attempts} generated attempts left the host")


def run_once(loaded, path_nm, cv, n_walkers: int, time_ps: float, cpus, work: Path) -> dict:
    """One walker run from scratch: its MD wall time and the bias files it left."""
    from openmm_biomd.enhanced.walkers import WalkerSettings, run_walkers

    shutil.rmtree(work, ignore_errors=True)
    settings = WalkerSettings(n_walkers=n_walkers, time_ps=time_ps, save_interval_ps=10.0, deposit_interval_ps=1.0,
                              frame_interval_ps=1.0, equilibration_ps=2.0, threads=1, seed=0,
                              cpus=None if cpus is None else tuple(cpus))
    run = run_walkers(loaded, path_nm, cv, settings, work)
    md_ns = n_walkers * time_ps / 1000.0
    bias = {p.name: np.load(p) for p in sorted((work / "bias").iterdir())}
    return {"md_wall_s": run.summary["md_wall_s"], "walker_ns_per_day": md_ns / (run.summary["md_wall_s"] / 86400.0),
            "protocol": run.summary["protocol"], "bias": bias}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--walkers", type=int, nargs="+", default=[2, 4], help="numbers of walkers to time")
    parser.add_argument("--time-ps", type=float, default=40.0, help="MD per walker, ps (whole 10 ps exchanges)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating repeats of each arrangement")
    parser.add_argument("--work", default=str(REPO / "runs/bench-walkers"))
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/walkers_cpu.json"))
    args = parser.parse_args()

    from openmm_biomd.affinity import available_cpus
    from openmm_biomd.data.systems import get_system
    from openmm_biomd.enhanced.seeding_common import DistanceCV
    from openmm_biomd.enhanced.unbind import UnbindSettings, Unbinder
    from openmm_biomd.recipes import hardware
    from openmm_biomd.run import time_plain_md

    loaded = get_system("host-guest").load()
    unbinder = Unbinder(loaded, "host-guest", settings=UnbindSettings(max_time_ps=100.0))
    # The CV of bench_unbind's umbrella windows: the guest–pocket centroid distance of the unbinder's pocket.
    modelled = unbinder.modelled
    cv = DistanceCV(modelled[unbinder.pocket.ligand], modelled[unbinder.pocket.pocket])
    path_nm, path_record = generated_path(unbinder, max_attempts=10)
    cpus = available_cpus()
    work = Path(args.work)
    rows = []
    plain = []
    for n_walkers in args.walkers:
        arrangements = {ARRANGEMENTS[0]: None, ARRANGEMENTS[1]: cpus[:1], ARRANGEMENTS[2]: cpus}
        timings: dict[str, list] = {label: [] for label in arrangements}
        identical = True
        for _ in range(args.repeats):
            plain.append(time_plain_md(loaded, "CPU", args.time_ps, seed=0)["best"])
            runs = {label: run_once(loaded, path_nm, cv, n_walkers, args.time_ps, where, work / f"arrangement{i}")
                    for i, (label, where) in enumerate(arrangements.items())}
            reference = runs[ARRANGEMENTS[0]]["bias"]
            identical &= all(r["bias"].keys() == reference.keys() and all(
                np.array_equal(a, r["bias"][name]) for name, a in reference.items()) for r in runs.values())
            for label, r in runs.items():
                timings[label].append({k: v for k, v in r.items() if k != "bias"})
        rate = {label: float(np.median([t["walker_ns_per_day"] for t in ts])) for label, ts in timings.items()}
        rows.append({"walkers": n_walkers, "time_ps_per_walker": args.time_ps, "runs": timings,
                     "median_walker_ns_per_day": rate, "bias_files_identical": bool(identical)})
        print(rows[-1], flush=True)
    plain_rate = float(np.median([p["ns_per_day"] for p in plain]))
    for row in rows:
        row["per_plain_md"] = {label: v / plain_rate for label, v in row["median_walker_ns_per_day"].items()}
    result = {"benchmark": "bench_walkers", "machine": hardware(), "date": time.strftime("%Y-%m-%d"), "cpus": cpus,
              "path": path_record, "cv": "guest–host centroid distance (nm)", "plain_md": plain,
              "plain_md_median_ns_per_day": plain_rate, "repeats": args.repeats, "rows": rows}
    publish(Path(args.out), result, "bench_walkers",
            "Metadynamics walkers: one after another or side by side (`benchmarks/bench_walkers.py`)", table(result))


def table(r: dict) -> str:
    lines = [f"Host–guest CB7–B2 (156 atoms, CPU platform, one thread per walker), walkers seeded along a path "
             f"generated by `{r['path']['model']}` (attempt seed {r['path']['attempt_seed']}, {r['path']['frames']} "
             f"frames), lockstep exchange every 10 ps; CPUs {r['cpus']}; {r['machine']}, {r['date']}; medians of "
             f"{r['repeats']} alternating repeats. "
             "Plain OpenMM MD of the same system, timed between the runs: "
             f"{r['plain_md_median_ns_per_day']:.0f} ns/day (median, its fastest CPU setting).", "",
             "| walkers × ps | " + " | ".join(f"{a}: ns/day, all walkers together (× plain MD)" for a in ARRANGEMENTS)
             + " | bias files bit-identical |",
             "|---|" + "---:|" * len(ARRANGEMENTS) + "---|"]
    for row in r["rows"]:
        rate, per = row["median_walker_ns_per_day"], row["per_plain_md"]
        cells = " | ".join(f"{rate[a]:.0f} ({per[a]:.2f})" for a in ARRANGEMENTS)
        lines.append(f"| {row['walkers']} × {row['time_ps_per_walker']:g} | {cells} | "
                     f"{'yes' if row['bias_files_identical'] else 'NO'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
