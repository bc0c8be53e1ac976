"""Training throughput (windows per second) of ``tiny`` and ``small`` on the bundled systems.

Throughput depends on system size and window length, not on what the frames
contain, so the windows are cut from a stand-in trajectory: the system's start
structure with 0.02 nm Gaussian jitter per frame.  Each setting trains for a
fixed number of steps after warm-up steps, on the CPU (or ``--device cuda``,
with bf16 autocast).  Writes JSON and prints a markdown table.

    python benchmarks/bench_training.py --out benchmarks/results/training_cpu.json
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


def measure(preset: str, system: str, batch: int, device: str, steps: int, warmup: int) -> dict:
    import numpy as np
    import torch

    from biomd_core.config import ModelConfig, TimeConfig, TrainingConfig
    from biomd_core.featurize import DEFAULT_VOCABULARIES
    from biomd_core.model import BioMDModel, batch_systems
    from biomd_core.model.presets import get_preset
    from biomd_core.training import Trainer, TrajectorySet
    from biomd_core.training.distributed import DistributedContext
    from openmm_biomd.data import get_system

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
                      ctx=DistributedContext(device=torch.device(device)))
    trainer.fit(warmup)
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    trainer.fit(steps)
    if device == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    return {"preset": preset, "system": system, "n_atoms": graph.n_atoms, "batch_size": batch, "device": device,
            "steps": steps, "wall_s": wall, "samples_per_s": steps * batch / wall, "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--out", default="benchmarks/results/training_cpu.json")
    args = parser.parse_args()
    rows = []
    for preset, system, batch in SETTINGS:
        row = measure(preset, system, batch, args.device, args.steps, warmup=3)
        print(json.dumps(row), flush=True)
        rows.append(row)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"rows": rows, "date": time.strftime("%Y-%m-%d")}, indent=2))
    print("\n| preset | system | atoms | batch | device | windows/s |\n|---|---|---:|---:|---|---:|")
    for r in rows:
        print(f"| {r['preset']} | {r['system']} | {r['n_atoms']} | {r['batch_size']} | {r['device']} | {r['samples_per_s']:.1f} |")


if __name__ == "__main__":
    main()
