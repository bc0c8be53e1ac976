"""Training throughput (windows per second) of ``tiny`` and ``small`` on the bundled systems.

Throughput depends on system size and window length, not on what the frames
contain, so the windows are cut from a stand-in trajectory: the system's start
structure with 0.02 nm Gaussian jitter per frame.  Each setting trains for a
fixed number of steps after warm-up steps, on the CPU (or ``--device cuda``,
with bf16 autocast; ``--amp both`` times float32 and bf16 side by side).
Writes JSON and prints a markdown table.

    python benchmarks/bench_training.py --out benchmarks/results/training_cpu.json
    python benchmarks/bench_training.py --device cuda --amp both --gpu-settings --out benchmarks/results/training_cuda.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

SETTINGS = [  # (preset, system, batch size)
    ("tiny", "alanine-dipeptide", 16),
    ("tiny", "host-guest", 8),
    ("small", "alanine-dipeptide", 16),
]
#: on a GPU also the protein–ligand system (first: benchmarks/gpu_session.py sizes its training from it)
#: and the configs' GPU batch sizes
GPU_SETTINGS = [("tiny", "t4l-pxylene", 4), ("small", "t4l-pxylene", 4)] + SETTINGS + [
    ("small", "alanine-dipeptide", 64),
    ("small", "host-guest", 16),
]


def measure(preset: str, system: str, batch: int, device: str, steps: int, warmup: int, amp: bool = True) -> dict:
    import numpy as np
    import torch

    from biomd_core.config import ModelConfig, TimeConfig, TrainingConfig
    from biomd_core.featurize import DEFAULT_VOCABULARIES
    from biomd_core.model import BioMDModel, batch_systems
    from biomd_core.model.presets import get_preset
    from biomd_core.training import Trainer, TrajectorySet
    from biomd_core.training.distributed import DistributedContext
    from openmm_biomd.data import get_system

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    loaded = get_system(system).load()
    model = BioMDModel(
        ModelConfig(preset=preset, network=get_preset(preset), time=TimeConfig(5.0, 20, 1, 4)), DEFAULT_VOCABULARIES
    )
    graph = model.featurize(loaded.topology, positions_nm=loaded.positions)
    rng = np.random.default_rng(0)
    start = loaded.positions[graph.atom_indices]
    frames = (start + 0.02 * rng.standard_normal((200, *start.shape))).astype(np.float32)
    config = TrainingConfig(steps=steps + warmup, batch_size=batch, seed=0)
    trainer = Trainer(model, batch_systems([graph]), TrajectorySet([frames], [0]), config,
                      ctx=DistributedContext(device=torch.device(device)), amp=amp)
    trainer.fit(warmup)
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    trainer.fit(steps)
    if device == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
    return {"preset": preset, "system": system, "n_atoms": graph.n_atoms, "batch_size": batch, "device": device,
            "precision": _precision(amp, device),
            "steps": steps, "wall_s": wall, "samples_per_s": steps * batch / wall, "threads": torch.get_num_threads(),
            "peak_memory_mib": peak}


def _precision(amp: bool, device: str) -> str:
    """What a row's training ran in: the trainer autocasts to bf16 only on CUDA."""
    return "bf16 autocast" if amp and device == "cuda" else "float32"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--amp", choices=("on", "off", "both"), default="on",
                        help="bf16 autocast on CUDA: on (the trainer's default), off (float32) or both")
    parser.add_argument("--gpu-settings", action="store_true", help="also the larger batches and T4 lysozyme")
    parser.add_argument("--out", default="benchmarks/results/training_cpu.json")
    args = parser.parse_args()
    import torch

    amps = {"on": [True], "off": [False], "both": [False, True]}[args.amp] if args.device == "cuda" else [False]
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for preset, system, batch in GPU_SETTINGS if args.gpu_settings else SETTINGS:
        for amp in amps:
            try:
                row = measure(preset, system, batch, args.device, args.steps, warmup=3, amp=amp)
            except torch.cuda.OutOfMemoryError as exc:  # a result too: this setting does not fit the GPU
                torch.cuda.empty_cache()
                row = {"preset": preset, "system": system, "batch_size": batch, "device": args.device,
                       "precision": _precision(amp, args.device), "samples_per_s": None,
                       "out_of_memory": str(exc).splitlines()[0]}
            print(json.dumps(row), flush=True)
            rows.append(row)
            # after every row: a run stopped at a time limit keeps what it measured
            Path(args.out).write_text(json.dumps({"rows": rows, "device_name": device_name, "torch": torch.__version__,
                                                  "date": time.strftime("%Y-%m-%d")}, indent=2))
    print(f"\n{device_name}, torch {torch.__version__}")
    print("\n| preset | system | atoms | batch | device | precision | windows/s |\n|---|---|---:|---:|---|---|---:|")
    for r in rows:
        rate = "out of memory" if r.get("out_of_memory") else f"{r['samples_per_s']:.1f}"
        print(f"| {r['preset']} | {r['system']} | {r.get('n_atoms', '')} | {r['batch_size']} | {r['device']} "
              f"| {r['precision']} | {rate} |")


if __name__ == "__main__":
    main()
