"""Refused coarse blocks: re-drawn whole, or kept up to the refused frame (host–guest unbinding).

``biomd unbind`` gates each coarse block of generated frames; by default a block with one refused frame
is re-drawn whole (``JumpGenerator``), with ``--keep-passing-prefix`` its frames before the refused one
are kept and the path goes on from them.  Both rules generate the same attempts (the bench's held-out
starts, the same attempt seeds per master seed) and are compared on what matters for a first path:
successes, time to the first path, exit time, generated ps per wall second, re-draws, and the path RMSD
to the nearest held-out metadynamics path.  The rules alternate seed by seed in one run, so a drift of
the machine's speed touches both.

Writes ``benchmarks/results/redraw_cpu.json`` and the "Re-draws" section of BENCHMARKS.md.

    python benchmarks/bench_redraw.py --seeds 1 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
from benchmarks_md import publish

REPO = Path(__file__).resolve().parents[1]

#: (row label, keep_passing_prefix)
RULES = (("re-draw the whole block (default)", False), ("keep the passing prefix", True))


def run_rule(unbinder, starts: np.ndarray, references: list, per_start: int, seed: int, out: Path) -> dict:
    """One rule's attempts for one master seed: the row of the table."""
    from openmm_biomd.enhanced.recipe import evaluate_unbinding

    shutil.rmtree(out, ignore_errors=True)
    q = evaluate_unbinding(unbinder, starts, references, out, per_start, seed=seed)
    results = json.loads((out / "summary.json").read_text())["results"]
    rmsd = q["path_rmsd_to_nearest_metad_nm"]
    return {"seed": seed, "attempts": q["attempts"], "successes": q["successes"],
            "success_at_1": q["success_at_1"], "time_to_first_path_s": q["time_to_first_path_s"],
            "mean_exit_time_ps": q["mean_exit_time_ps"],
            "generated_ps_per_wall_s": sum(r["path_time_ps"] for r in results) / sum(r["wall_s"] for r in results),
            "gate_retries": q["gate_retries"], "gate_rejections": q["gate_rejections"],
            "path_rmsd_per_attempt_nm": rmsd.get("per_attempt"),
            "path_rmsd_mean_nm": rmsd["mean"], "path_rmsd_median_nm": rmsd["median"], "path_rmsd_n": rmsd["n"]}


def totals(rows: list[dict]) -> dict:
    """One rule over all its seeds: attempts, successes, mean exit, re-draws, path RMSD over all paths."""
    exits = [row["mean_exit_time_ps"] * row["successes"] for row in rows if row["successes"]]
    rmsd = [v for row in rows for v in (row["path_rmsd_per_attempt_nm"] or {}).values()]
    return {"attempts": sum(row["attempts"] for row in rows), "successes": sum(row["successes"] for row in rows),
            "mean_exit_time_ps": sum(exits) / max(sum(row["successes"] for row in rows), 1),
            "mean_time_to_first_path_s": float(np.mean([row["time_to_first_path_s"] for row in rows
                                                        if row["time_to_first_path_s"] is not None])),
            "generated_ps_per_wall_s": float(np.mean([row["generated_ps_per_wall_s"] for row in rows])),
            "gate_retries": sum(row["gate_retries"] for row in rows),
            "path_rmsd_mean_nm": float(np.mean(rmsd)), "path_rmsd_median_nm": float(np.median(rmsd)),
            "path_rmsd_n": len(rmsd)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heldout", default=str(REPO / "runs/data/host-guest-heldout"))
    parser.add_argument("--starts", type=int, default=2, help="held-out starting frames")
    parser.add_argument("--attempts", type=int, default=10, help="generated paths per start, rule and seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2],
                        help="master seeds of the attempts (1: bench_unbind's)")
    parser.add_argument("--work", default=str(REPO / "runs/bench-redraw"))
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/redraw_cpu.json"))
    args = parser.parse_args()

    from openmm_biomd.data.systems import get_system
    from openmm_biomd.enhanced.path_metrics import campaign_paths
    from openmm_biomd.enhanced.unbind import Unbinder, UnbindSettings
    from openmm_biomd.recipes import hardware

    loaded = get_system("host-guest").load()
    references = campaign_paths(args.heldout)
    starts = np.stack([ref[0] for ref in references[: args.starts]])
    unbinders = {keep: Unbinder(loaded, "host-guest", settings=UnbindSettings(max_time_ps=100.0,
                                                                             keep_passing_prefix=keep))
                 for _, keep in RULES}
    rows: dict[str, list] = {label: [] for label, _ in RULES}
    for seed in args.seeds:
        for label, keep in RULES:
            out = Path(args.work) / f"{'prefix' if keep else 'whole'}-seed{seed}"
            rows[label].append(run_rule(unbinders[keep], starts, references, args.attempts, seed, out))
            print(label, json.dumps(rows[label][-1], default=str), flush=True)
    result = {"benchmark": "bench_redraw", "machine": hardware(), "date": time.strftime("%Y-%m-%d"),
              "model": unbinders[False].model_label, "model_hash": unbinders[False].model_hash,
              "starts": int(len(starts)), "attempts_per_start": args.attempts, "max_time_ps": 100.0,
              "rules": {label: {"keep_passing_prefix": keep, "seeds": rows[label], "all_seeds": totals(rows[label])}
                        for label, keep in RULES}}
    publish(Path(args.out), result, "bench_redraw",
            "Re-draws: refused coarse blocks whole or up to the refused frame (`benchmarks/bench_redraw.py`)",
            table(result))


def table(r: dict) -> str:
    lines = [f"Host–guest CB7–B2, model `{r['model']}`, shipped unbinding settings (paths of 100 ps at most); "
             f"{r['starts']} held-out starts × {r['attempts_per_start']} attempts per rule and master seed; "
             f"{r['machine']}, {r['date']}.", "",
             "| rule | seed | successes | time to first path (s) | mean exit (ps) | generated ps per wall s | "
             "re-draws | path RMSD to nearest metadynamics path (nm, mean / median, n) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for label, rule in r["rules"].items():
        for row in [*rule["seeds"], {**rule["all_seeds"], "seed": "all"}]:
            first = row.get("time_to_first_path_s", row.get("mean_time_to_first_path_s"))
            lines.append(f"| {label} | {row['seed']} | {row['successes']}/{row['attempts']} | "
                         f"{'—' if first is None else f'{first:.1f}'}{' (mean)' if row['seed'] == 'all' else ''} | "
                         f"{row['mean_exit_time_ps']:.0f} | {row['generated_ps_per_wall_s']:.1f} | "
                         f"{row['gate_retries']} | {row['path_rmsd_mean_nm']:.2f} / {row['path_rmsd_median_nm']:.2f}, "
                         f"{row['path_rmsd_n']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
