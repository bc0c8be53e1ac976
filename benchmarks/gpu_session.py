"""One GPU session's measurements and T4 lysozyme training, in one call with a deadline.

GPU time is rare and short here (one call of a few minutes), so everything that needs a GPU is one
script that sizes its work from what it measures and always leaves its results behind:

1. ``bench_datagen.py --platform CUDA``: MD ns/day of the bundled systems, and T4L runs side by side.
2. ``bench_training.py --device cuda --amp both``: training windows/s, float32 against bf16 autocast.
3. The ``t4l-pxylene`` recipe at GPU size: as much MD (4 training runs + 1 reference of at most
   400 ps, side by side) and as many training steps as the measured rates fit into the time left, then
   ``reproduce_recipe(..., stop_after_training=True)``; the plan it chose is written to ``plan.json``
   and the training config to ``--config-out`` (commit both into the recipe so that
   ``biomd reproduce-weights t4l-pxylene`` makes the same).  Evaluation happens elsewhere
   (:func:`openmm_biomd.recipes.reproduce_recipe` resumes from the training record).
4. ``biomd run --platform CUDA``: the main job's hybrid against plain MD on the GPU.
5. The propagator tests on the CUDA platform.
6. T4L generative rollouts with the new weights on the GPU (their ns/day).

Each stage is a subprocess with its own time limit inside the overall deadline; a failed stage is
logged and the next one runs.  Results go to ``--out`` (``summary.json``, logs, benchmark JSON) and
``--root`` (runs).  Rehearse on a CPU with ``--platform CPU --system alanine-dipeptide --scale 0.01``.

    python benchmarks/gpu_session.py --out $OUT/results --deadline-s 520
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class Session:
    """Runs stages as subprocesses against one deadline; records what each did."""

    def __init__(self, out: Path, deadline_s: float) -> None:
        self.out = out
        self.t0 = time.monotonic()
        self.deadline = self.t0 + deadline_s
        self.stages: list[dict] = []
        out.mkdir(parents=True, exist_ok=True)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, name: str, cmd: list[str], budget_s: float, env: dict | None = None) -> bool:
        """Run ``cmd`` for at most ``budget_s`` (and never past the deadline); log to ``out/NAME.log``."""
        limit = min(budget_s, self.left())
        record = {"stage": name, "cmd": " ".join(cmd), "limit_s": round(limit, 1)}
        self.stages.append(record)
        if limit < 5:
            record["status"] = "skipped: no time left"
            self.save()
            return False
        t0 = time.monotonic()
        with open(self.out / f"{name}.log", "w") as log:
            try:
                proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=limit, cwd=REPO,
                                      env={**os.environ, **(env or {})})
                record["status"] = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
            except subprocess.TimeoutExpired:
                record["status"] = "timed out"
        record["wall_s"] = round(time.monotonic() - t0, 1)
        print(f"[{time.monotonic() - self.t0:6.1f} s] {name}: {record['status']} in {record['wall_s']} s", flush=True)
        self.save()
        return record["status"] == "ok"

    def save(self, **extra) -> None:
        path = self.out / "summary.json"
        data = json.loads(path.read_text()) if path.exists() else {}
        data.update(extra, stages=self.stages, elapsed_s=round(time.monotonic() - self.t0, 1))
        path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def size_plan(rate_each_ns_day: float, windows_per_s: float, md_budget_s: float, train_budget_s: float,
              batch: int, scale: float) -> dict:
    """MD length per run (ps, whole 50 ps) and training steps (whole 100) that fit the budgets.

    ``rate_each_ns_day`` is one run's rate while all run side by side; 25 % of the MD budget is kept
    for minimisation, equilibration and start-up, 15 % of the training budget for start-up.
    """
    md_ps = rate_each_ns_day * 1000.0 / 86400.0 * md_budget_s * 0.75 * scale
    steps = windows_per_s / batch * train_budget_s * 0.85 * scale
    # at least 30 frames: a coarse training window spans stride × block + 1 = 21 of them
    return {"time_ps": max(30, int(md_ps // 50 * 50) if md_ps >= 50 else int(md_ps // 10 * 10)),
            "steps": max(20, int(steps // 100 * 100) if steps >= 100 else int(steps // 10 * 10))}


def write_config(path: Path, data_dirs: list[Path], steps: int, batch: int) -> None:
    """The tiny T4L GPU training config (data paths relative to the file, as the loader expects)."""
    rel = [os.path.relpath(d, path.parent) for d in data_dirs]
    trajectories = ", ".join(f'"{r}/replica_*"' for r in rel)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"""# The tiny T4 lysozyme L99A + p-xylene model trained on one GPU (`biomd reproduce-weights t4l-pxylene`).
# Written by benchmarks/gpu_session.py, which sized the MD and the step count to the time one GPU call
# had (see the model card); the recipe's MD plans in openmm_biomd/recipes.py match these data.
# Frames 1 ps apart, coarse frames every 5 ps, blocks of 4 (20 ps per autoregressive block); one of the
# four training runs is held out for the validation loss; bf16 autocast on the GPU.
model:
  preset: tiny
  flow: {{parameterization: rel, coord_scale_nm: 0.3}}
  time: {{frame_interval_ps: 1.0, coarse_stride: 5, history_frames: 1, block_frames: 4}}
training: {{steps: {steps}, batch_size: {batch}, lr: 0.001, warmup_steps: {max(10, steps // 20)}, ema_decay: 0.995, seed: 0}}
data:
  - trajectories: [{trajectories}]
    topology: {rel[0]}/topology.pdb
    frame_interval_ps: 1.0
validation_fraction: 0.25
validate_every: {max(10, steps // 5)}
checkpoint_every: {max(10, steps // 5)}
device: auto
amp: true
""")


def sized_recipe(system: str, time_ps: int, config: Path):
    """The system's recipe at the chosen size: 4 training runs and a reference (at most 400 ps) of ``time_ps``."""
    from dataclasses import replace

    from openmm_biomd.recipes import RECIPES, MDPlan

    def plan(seed: int, ps: int) -> MDPlan:
        return MDPlan(replicas=1, time=f"{ps}ps", frame_interval="1ps", seed=seed, equilibration="10ps")

    return replace(RECIPES[system], train_data=plan(100, time_ps),
                   extra_train_data=tuple(plan(seed, time_ps) for seed in (300, 400, 500)),
                   reference_data=plan(200, min(time_ps, 400)), train_config=os.path.relpath(config, REPO),
                   finetune_configs=())


def train_sized(system: str, time_ps: int, config: Path, root: Path, out: Path) -> None:
    """Stage 3's own process: the MD side by side and the training, stopping there (evaluation elsewhere)."""
    from openmm_biomd.recipes import reproduce_recipe

    facts = reproduce_recipe(sized_recipe(system, time_ps, config), root, progress=False, parallel_md=True,
                             stop_after_training=True)
    (out / "training-facts.json").write_text(json.dumps(facts, indent=2, default=str))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "runs/gpu-session"), help="results folder")
    parser.add_argument("--root", default="runs", help="working directory of the recipe (data, train, eval)")
    parser.add_argument("--deadline-s", type=float, default=520.0, help="the whole session's wall time")
    parser.add_argument("--platform", default="CUDA", help="OpenMM platform (CPU to rehearse)")
    parser.add_argument("--system", default="t4l-pxylene", help="the recipe trained in stage 3")
    parser.add_argument("--scale", type=float, default=1.0, help="shrink every budget (rehearsal)")
    parser.add_argument("--config-out", default="examples/configs/t4l-pxylene-tiny-gpu.yaml")
    parser.add_argument("--md-budget-s", type=float, default=100.0)
    parser.add_argument("--train-budget-s", type=float, default=120.0)
    parser.add_argument("--train-sized", type=int, metavar="PS", help=argparse.SUPPRESS)  # stage 3's process
    args = parser.parse_args()
    out, root = Path(args.out).resolve(), (REPO / args.root).resolve()
    if args.train_sized:
        train_sized(args.system, args.train_sized, (REPO / args.config_out).resolve(), root, out)
        return 0
    session = Session(out, args.deadline_s)
    py = sys.executable
    device = "cuda" if args.platform != "CPU" else "cpu"
    scale = args.scale
    batch = 4

    # 1. MD speed of every bundled system, and of T4L runs side by side (sizes stage 3's MD)
    datagen = out / "datagen.json"
    session.run("bench_datagen", [py, "benchmarks/bench_datagen.py", "--platform", args.platform,
                                  "--time-ps", str(20 * scale), "--threads", str(os.cpu_count()), "--no-pipeline",
                                  "--out", str(datagen)], 80)
    concurrent = out / "datagen_concurrent.json"
    session.run("bench_datagen_concurrent", [py, "benchmarks/bench_datagen.py", "--platform", args.platform,
                                             "--systems", args.system, "--time-ps", str(10 * scale),
                                             "--threads", str(os.cpu_count()), "--concurrent", "5", "--no-pipeline",
                                             "--out", str(concurrent)], 60)
    # 2. training throughput, float32 against bf16 autocast (sizes stage 3's training)
    training = out / "training.json"
    gpu_settings = ["--gpu-settings"] if device == "cuda" else []  # T4L and `small` at GPU batches: GPU work
    session.run("bench_training", [py, "benchmarks/bench_training.py", "--device", device, "--amp", "both",
                                   *gpu_settings, "--steps", str(max(2, int(20 * scale))), "--out", str(training)], 90)

    # 3. the recipe at GPU size
    rate_each, windows_per_s = _measured_rates(concurrent, training, args.system, batch)
    plan = size_plan(rate_each, windows_per_s, args.md_budget_s, args.train_budget_s, batch, scale)
    plan.update(rate_each_ns_day=rate_each, windows_per_s=windows_per_s)
    session.save(plan=plan)
    print(f"plan: {plan}", flush=True)
    config = (REPO / args.config_out).resolve()
    data_dirs = [root / "data" / args.system, *[root / "data" / f"{args.system}-seed{s}" for s in (300, 400, 500)]]
    write_config(config, data_dirs, plan["steps"], batch)
    session.run("t4l_recipe", [py, __file__, "--train-sized", str(plan["time_ps"]), "--system", args.system,
                                "--root", str(root), "--config-out", str(config), "--out", str(out)],
                args.md_budget_s + args.train_budget_s + 60)

    # 4. the main job on the GPU: hybrid against plain MD, same platform, same run
    session.run("biomd_run", [py, "-m", "openmm_biomd.cli", "run", "--platform", args.platform, "--time",
                              f"{max(10, int(200 * scale))}ps", "--out", str(root / "run-gpu"), "--quiet"], 70)
    # 5. the propagator's tests on this platform (they are parametrised over the platforms present)
    session.run("pytest_platform", [py, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                                    "tests/openmm/test_propagator.py", "-k", args.platform], 70)
    # 6. generation speed of the new T4L weights on this device
    weights = root / "train" / args.system / "model.safetensors"
    if weights.exists():
        session.run("t4l_sample", [py, "-m", "openmm_biomd.cli", "sample", "--model", str(weights), "--system",
                                   args.system, "--time", f"{max(10, int(100 * scale))}ps", "--replicas", "4",
                                   "--out", str(root / "eval" / f"{args.system}-gpu-sample")], 60)
    session.save(done=True)
    return 0


def _measured_rates(concurrent: Path, training: Path, system: str, batch: int) -> tuple[float, float]:
    """One side-by-side run's MD rate (slowest of them) and tiny-model training windows/s on ``system``.

    Conservative stand-ins when a measurement is missing (its stage failed): 100 ns/day, 2 windows/s.
    """
    rate_each, windows = 100.0, 2.0
    if concurrent.exists():
        rows = json.loads(concurrent.read_text())["results"]
        rate_each = min(rows[0]["concurrent"]["ns_per_day_each"])
    if training.exists():
        rows = [r for r in json.loads(training.read_text())["rows"]
                if r["preset"] == "tiny" and r["system"] == system and r["batch_size"] == batch]
        if rows:
            windows = max(r["samples_per_s"] for r in rows)
    if not math.isfinite(rate_each) or rate_each <= 0:
        rate_each = 100.0
    return rate_each, windows


if __name__ == "__main__":
    sys.exit(main())
