"""Forward time and peak memory of the velocity network.

Measures ``tiny`` and ``small`` on real openmmtools systems of 22 (alanine
dipeptide), 156 (CB7–B2 host–guest), 2,621 (T4 lysozyme L99A + p-xylene) and
~23,558 atoms (DHFR with its water), for 10 and 50 frames, dense attention
where the model's ``auto`` mode picks it and sparse beyond; then the scaling
exponent of sparse-mode memory in atoms (DHFR subsets).  Each measurement runs
in a fresh subprocess so peak RSS (CPU) or ``max_memory_allocated`` (CUDA) is
its own.  Writes JSON and prints a markdown table for ``BENCHMARKS.md``.

    python benchmarks/bench_model.py --out benchmarks/results/model_cpu.json
    python benchmarks/bench_model.py --device cuda --out benchmarks/results/model_gpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

SYSTEMS = {
    "alanine-dipeptide": ("AlanineDipeptideImplicit", "solute"),
    "host-guest": ("HostGuestImplicit", "solute"),
    "t4l-pxylene": ("LysozymeImplicit", "solute"),
    "dhfr-explicit": ("DHFRExplicit", "all"),
}


def _topology(system: str):
    from openmmtools import testsystems

    cls, selection = SYSTEMS[system]
    ts = getattr(testsystems, cls)()
    return ts.topology, ts.positions, selection


def measure(preset: str, system: str, n_frames: int, device: str, max_atoms: int | None, repeats: int) -> dict:
    """One measurement (run inside a fresh subprocess)."""
    import numpy as np
    import torch
    from openmm import unit

    from biomd_core.config import ModelConfig
    from biomd_core.featurize import DEFAULT_VOCABULARIES, featurize
    from biomd_core.model import BioMDModel, batch_systems
    from biomd_core.model.presets import get_preset

    torch.set_num_threads(max(1, torch.get_num_threads()))
    top, positions, selection = _topology(system)
    pos = np.asarray(positions.value_in_unit(unit.nanometer))
    if max_atoms is not None:
        selection = np.arange(min(max_atoms, top.getNumAtoms()))
    graph = featurize(top, selection=selection)
    n = graph.n_atoms
    model = BioMDModel(ModelConfig(preset=preset, network=get_preset(preset)), DEFAULT_VOCABULARIES).eval().to(device)
    system_batch = batch_systems([graph]).to(device)
    start = torch.tensor(pos[graph.atom_indices], dtype=torch.float32, device=device).unsqueeze(0)
    start = start - start.mean(1, keepdim=True)
    x = torch.randn(1, n_frames, n, 3, device=device)
    tau = torch.rand(1, n_frames, n, device=device)
    t_ps = torch.arange(n_frames, dtype=torch.float32, device=device).unsqueeze(0) * 10.0
    dense = model.net.use_dense(n)

    def forward():
        with torch.inference_mode():
            out = model.net(x, tau, t_ps, start, *system_batch.encoder_inputs())
        if device == "cuda":
            torch.cuda.synchronize()
        return out

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    forward()  # warm-up; also sets the memory high-water mark
    peak = (torch.cuda.max_memory_allocated() if device == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) - base
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        forward()
        times.append(time.perf_counter() - t0)
    return {
        "preset": preset, "system": system, "n_atoms": n, "n_frames": n_frames, "device": device,
        "attention": "dense" if dense else "sparse", "forward_s": float(np.median(times)),
        "peak_memory_mib": peak / 2**20, "parameters": model.n_parameters(),
    }


def run_isolated(**kwargs) -> dict:
    """Run :func:`measure` in a fresh interpreter (clean peak-memory counters)."""
    code = f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench_model as b; print(json.dumps(b.measure(**{kwargs!r})))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        return {**kwargs, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def scaling_exponent(rows: list[dict]) -> float:
    """Least-squares slope of log(memory) against log(atoms)."""
    import numpy as np

    n = np.log([r["n_atoms"] for r in rows])
    m = np.log([r["peak_memory_mib"] for r in rows])
    return float(np.polyfit(n, m, 1)[0])


def markdown(results: dict) -> str:
    lines = [
        f"Device: {results['device_name']}; torch {results['torch']}; {results['date']}",
        "",
        "| preset | system | atoms | frames | attention | forward (s) | peak memory (MiB) |",
        "|---|---|---:|---:|---|---:|---:|",
    ]
    for r in results["forward"]:
        if "error" in r:
            lines.append(f"| {r['preset']} | {r['system']} | | {r['n_frames']} | | error: {r['error'][:60]} | |")
            continue
        lines.append(
            f"| {r['preset']} | {r['system']} | {r['n_atoms']:,} | {r['n_frames']} | {r['attention']} |"
            f" {r['forward_s']:.3f} | {r['peak_memory_mib']:.0f} |"
        )
    s = results["sparse_scaling"]
    lines += ["", f"Sparse-mode memory vs atoms ({s['preset']}, {s['n_frames']} frames, DHFR subsets "
              f"{', '.join(str(r['n_atoms']) for r in s['rows'])}): exponent **{s['exponent']:.2f}**"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="benchmarks/results/model_cpu.json")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny preset, 10 frames only")
    args = parser.parse_args()

    import torch

    plan = []
    for preset in ("tiny",) if args.quick else ("tiny", "small"):
        for system in SYSTEMS:
            for frames in (10,) if args.quick else (10, 50):
                # small × 23k atoms × 50 frames needs ~15 GB of activations and tens of
                # minutes on 2 CPU cores: measured on a GPU only.
                if args.device == "cpu" and preset == "small" and system == "dhfr-explicit" and frames == 50:
                    continue
                plan.append(dict(preset=preset, system=system, n_frames=frames))
    forward = []
    for item in plan:
        row = run_isolated(device=args.device, max_atoms=None, repeats=args.repeats, **item)
        print(json.dumps(row), flush=True)
        forward.append(row)
    scaling_rows = [
        run_isolated(preset="tiny", system="dhfr-explicit", n_frames=10, device=args.device, max_atoms=n, repeats=1)
        for n in (1000, 2000, 4000, 8000, 16000)
    ]
    results = {
        "device": args.device,
        "device_name": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d"),
        "forward": forward,
        "sparse_scaling": {"preset": "tiny", "n_frames": 10, "rows": scaling_rows, "exponent": scaling_exponent(scaling_rows)},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(markdown(results))


if __name__ == "__main__":
    main()
