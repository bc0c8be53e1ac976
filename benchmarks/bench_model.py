"""Forward time and peak memory of the velocity network.

Measures ``tiny`` and ``small`` on real openmmtools systems of 22 (alanine
dipeptide), 156 (CB7–B2 host–guest), 2,621 (T4 lysozyme L99A + p-xylene) and
~23,558 atoms (DHFR with its water), for 10 and 50 frames, dense attention
where the model's ``auto`` mode picks it and sparse beyond; then the scaling
exponent of sparse-mode memory in atoms (DHFR subsets).  Each measurement runs
in a fresh subprocess; peak memory is the rise of resident memory during the
forward pass (VmHWM after resetting it, minus VmRSS before; CPU) or
``max_memory_allocated`` (CUDA).  Writes JSON and prints a markdown table for ``BENCHMARKS.md``.

    python benchmarks/bench_model.py --out benchmarks/results/model_cpu.json
    python benchmarks/bench_model.py --device cuda --out benchmarks/results/model_gpu.json
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
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


# What a 2-core CPU cannot measure in reasonable time (extrapolated from tiny at the
# same size: ~36× the work per layer); these belong on a GPU.
_CPU_TOO_SLOW = "not run on CPU: several minutes per forward on 2 cores; GPU work"
CPU_SKIPS = {
    ("small", "t4l-pxylene", 50): _CPU_TOO_SLOW,
    ("small", "dhfr-explicit", 10): _CPU_TOO_SLOW,
    ("small", "dhfr-explicit", 50): _CPU_TOO_SLOW,
}


# DHFR subsets (all 23,558 atoms last) for the memory-scaling fit; 50 frames so activations dominate.
SCALING_ATOMS = (1000, 2000, 4000, 8000, 16000, 23558)
SCALING_FRAMES = 50


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

    del top, positions
    gc.collect()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _reset_peak_rss()
    t0 = time.perf_counter()
    forward()  # warm-up; also sets the memory high-water mark
    warmup_s = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated() if device == "cuda" else _peak_rss()) - base
    if warmup_s > 5.0:
        repeats = 1  # long forwards are stable enough; keep the benchmark's wall time sane
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


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> int:
    """Reset the kernel's resident-memory high-water mark; return current RSS in bytes.

    ``ru_maxrss`` counts from process start, so a forward pass using less memory
    than building the test system did would be invisible; VmHWM can be reset.
    """
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kib("VmRSS") * 1024


def _peak_rss() -> int:
    return _status_kib("VmHWM") * 1024


def run_isolated(**kwargs) -> dict:
    """Run :func:`measure` in a fresh interpreter (clean peak-memory counters)."""
    code = f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench_model as b; print(json.dumps(b.measure(**{kwargs!r})))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        return {**kwargs, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def scaling_fit(rows: list[dict]) -> dict:
    """Exponent of memory growth in atoms.

    Sparse attention keeps a bounded gather buffer (a constant), so memory is
    ``a + b·N^p``; the raw log–log slope mixes the constant in and understates
    ``p``.  Both are reported; ``p`` is the scaling exponent.
    """
    import numpy as np
    from scipy.optimize import curve_fit

    n = np.array([r["n_atoms"] for r in rows], float)
    m = np.array([r["peak_memory_mib"] for r in rows], float)
    raw = float(np.polyfit(np.log(n), np.log(m), 1)[0])
    (a, b, p), _ = curve_fit(lambda x, a, b, p: a + b * (x / 1000.0) ** p, n, m, p0=(m[0], 50.0, 1.0),
                             bounds=([0, 0, 0], [np.inf, np.inf, 3]))
    return {"exponent": float(p), "constant_mib": float(a), "mib_per_1000_atoms": float(b), "raw_loglog_slope": raw}


def markdown(results: dict) -> str:
    lines = [
        f"Device: {results['device_name']}; torch {results['torch']}; {results['date']}",
        "",
        "| preset | system | atoms | frames | attention | forward (s) | peak memory (MiB) |",
        "|---|---|---:|---:|---|---:|---:|",
    ]
    for r in results["forward"]:
        if "skipped" in r:
            lines.append(f"| {r['preset']} | {r['system']} | | {r['n_frames']} | | {r['skipped']} | |")
            continue
        if "error" in r:
            lines.append(f"| {r['preset']} | {r['system']} | | {r['n_frames']} | | error: {r['error'][:60]} | |")
            continue
        lines.append(
            f"| {r['preset']} | {r['system']} | {r['n_atoms']:,} | {r['n_frames']} | {r['attention']} |"
            f" {r['forward_s']:.3f} | {r['peak_memory_mib']:.0f} |"
        )
    s = results["sparse_scaling"]
    atoms = ", ".join(str(r["n_atoms"]) for r in s["rows"])
    mib = ", ".join(f"{r['peak_memory_mib']:.0f}" for r in s["rows"])
    lines += [
        "",
        f"Sparse-mode memory vs atoms ({s['preset']}, {s['n_frames']} frames, DHFR subsets {atoms}; MiB {mib}):",
        f"fit `a + b·N^p`: **p = {s['exponent']:.2f}** (a = {s['constant_mib']:.0f} MiB bounded gather buffer, "
        f"b = {s['mib_per_1000_atoms']:.0f} MiB per 1000 atoms at p); raw log–log slope {s['raw_loglog_slope']:.2f}",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="benchmarks/results/model_cpu.json")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny preset, 10 frames only")
    parser.add_argument("--scaling-only", action="store_true", help="rerun only the memory-scaling fit (reuses --out)")
    args = parser.parse_args()

    import torch

    plan, forward = [], []
    for preset in ("tiny",) if args.quick else ("tiny", "small"):
        for system in SYSTEMS:
            for frames in (10,) if args.quick else (10, 50):
                reason = CPU_SKIPS.get((preset, system, frames)) if args.device == "cpu" else None
                if reason:
                    forward.append(dict(preset=preset, system=system, n_frames=frames, skipped=reason))
                else:
                    plan.append(dict(preset=preset, system=system, n_frames=frames))
    if args.scaling_only:
        forward = json.loads(Path(args.out).read_text())["forward"]
        plan = []
    for item in plan:
        row = run_isolated(device=args.device, max_atoms=None, repeats=args.repeats, **item)
        print(json.dumps(row), flush=True)
        forward.append(row)
    scaling_rows = []
    for n in SCALING_ATOMS:
        row = run_isolated(preset="tiny", system="dhfr-explicit", n_frames=SCALING_FRAMES, device=args.device,
                           max_atoms=n, repeats=1)
        print(json.dumps(row), flush=True)
        scaling_rows.append(row)
    results = {
        "device": args.device,
        "device_name": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d"),
        "forward": forward,
        "sparse_scaling": {"preset": "tiny", "n_frames": SCALING_FRAMES, "rows": scaling_rows, **scaling_fit(scaling_rows)},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(markdown(results))


if __name__ == "__main__":
    main()
