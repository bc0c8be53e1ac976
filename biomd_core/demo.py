"""Engine demo: train a ``tiny`` model on a process with a known answer.

Particles in harmonic wells (:class:`~biomd_core.data.synthetic.HarmonicParticles`)
have a stationary variance known in closed form.  The demo generates exact
trajectories, trains a tiny BioMD model on them, rolls it out hierarchically
and compares the generated variance with the exact one.  ``make run`` runs it
until the hybrid OpenMM simulation (issue #4) takes its place.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import FlowConfig, ModelConfig, TimeConfig, TrainingConfig, require_at_least
from .data.synthetic import HarmonicParticles
from .featurize import featurize
from .io.output_folder import (
    OutputFolderError,
    check_output_folder,
    claim_output_folder,
    json_with_keys,
    recorded_settings,
    refuse_other_settings,
)
from .model.biomd import BioMDModel
from .model.presets import get_preset
from .model.system import batch_systems
from .sampling import HierarchicalSampler, SolverConfig
from .training import Trainer, TrajectorySet

DEMO_TIME = TimeConfig(frame_interval_ps=1.0, coarse_stride=5, history_frames=1, block_frames=4)


@dataclass
class DemoResult:
    """What :func:`train_harmonic` produced."""

    model: BioMDModel
    process: HarmonicParticles
    history: list[dict]
    train_seconds: float


def train_harmonic(steps: int = 1000, seed: int = 0, progress: bool = False, batch_size: int = 32) -> DemoResult:
    """Train a tiny model on exact harmonic-well trajectories (16 × 400 frames of 4 particles)."""
    torch.manual_seed(seed)
    process = HarmonicParticles.square()
    data = process.trajectories(n_traj=16, n_frames=400, frame_interval_ps=DEMO_TIME.frame_interval_ps, seed=seed)
    graph = featurize(process.topology())
    config = ModelConfig(
        preset="tiny", network=get_preset("tiny"), flow=FlowConfig(parameterization="abs", coord_scale_nm=0.3),
        time=DEMO_TIME,
    )
    model = BioMDModel(
        config, _default_vocabs(),
        provenance={"data": "synthetic harmonic particles (exact OU)", "seed": seed, "steps": steps},
    )
    training = TrainingConfig(steps=steps, batch_size=batch_size, lr=2e-3, warmup_steps=20, seed=seed)
    trainer = Trainer(model, batch_systems([graph]), TrajectorySet(data, [0] * len(data)), training)
    bar = _progress(steps, progress)
    start = time.perf_counter()
    trainer.fit(callback=(lambda r: bar.set_postfix(loss=f"{r['loss']:.3f}") or bar.update()) if bar else None)
    if bar:
        bar.close()
    return DemoResult(model.eval(), process, trainer.history, time.perf_counter() - start)


def pair_distance_variance(frames_nm: np.ndarray) -> np.ndarray:
    """Variance of each inter-particle distance over all frames: ``[..., N, 3]`` → ``[N·(N−1)/2]`` nm²."""
    flat = frames_nm.reshape(-1, *frames_nm.shape[-2:])
    d = np.linalg.norm(flat[:, :, None] - flat[:, None], axis=-1)
    iu = np.triu_indices(flat.shape[1], 1)
    return d[:, iu[0], iu[1]].var(axis=0)


def generated_variance(result: DemoResult, n_replicas: int = 64, n_coarse: int = 20, seed: int = 1) -> dict:
    """Roll the model out and compare its stationary fluctuations with the exact process.

    The model sees frames only relative to the anchor frame's centroid and in
    random orientations (augmentation), so it cannot know the lab frame: the
    global position and orientation of its rollouts diffuse.  The comparison
    therefore uses internal coordinates, the variance of every inter-particle
    distance, against that of 50,000 exact stationary samples.
    """
    process = result.process
    rng = np.random.default_rng(seed)
    exact = pair_distance_variance(process.stationary(50_000, rng))
    start = torch.from_numpy(process.stationary(n_replicas, rng)).float()
    bound = result.model.bind(featurize(process.topology()))
    sampler = HierarchicalSampler(bound, result.model.time, SolverConfig("heun", 10))
    traj = sampler.rollout(start, n_coarse, torch.Generator().manual_seed(seed))[:, 1:].double().numpy()
    ratios = pair_distance_variance(traj) / exact
    return {
        "variance_ratio": float(ratios.mean()),
        "variance_ratio_per_pair": [round(float(r), 3) for r in ratios],
        "exact_distance_variance_nm2": float(exact.mean()),
        "n_replicas": n_replicas,
        "n_frames": int(traj.shape[1]),
        "generated_ps": float((traj.shape[1]) * result.model.time.frame_interval_ps),
    }


#: the files the demo writes into its folder (claimed with biomd_core.io.output_folder)
DEMO_OUTPUTS = ("model.safetensors", "torchscript", "summary.json")


#: a demo written before output folders were claimed
_earlier_demo = json_with_keys("summary.json", "train_steps")


def run_engine_demo(out: Path, steps: int = 1000, seed: int = 0, progress: bool = True, replicas: int = 64) -> dict:
    """Train, sample ``replicas`` rollouts, save checkpoint + TorchScript + ``summary.json`` into ``out``."""
    from .export import export_torchscript
    from .io import save_model

    require_at_least([("--steps", steps, 1), ("--replicas", replicas, 1)])  # (steps had been training.steps)
    check_output_folder(out, "demo", DEMO_OUTPUTS, _earlier_demo)
    # (a second demo had replaced the first one's weights without a word; a summary from before the seed was
    # kept is compared on what it holds)
    settings = {"train_steps": steps, "seed": seed, "n_replicas": replicas}
    earlier = recorded_settings(out, "summary.json")
    if earlier is None and (out / "summary.json").exists():  # (taken for no record, a demo of other settings won)
        raise OutputFolderError(f"{out / 'summary.json'} is damaged (not a JSON object): the demo's settings cannot "
                                "be compared with this call's. Restore it from a copy, or delete it to write a new "
                                "demo here, or choose another --out")
    if earlier is not None and "train_steps" in earlier:
        refuse_other_settings(out, {**settings, **{k: earlier[k] for k in settings if k in earlier}}, settings,
                              "a demo")
    result = train_harmonic(steps, seed, progress)
    claim_output_folder(out, "demo", DEMO_OUTPUTS, _earlier_demo)
    quality = generated_variance(result, n_replicas=replicas)
    save_model(result.model, out / "model.safetensors")
    export_torchscript(result.model, out / "torchscript")
    first = float(np.mean([r["loss"] for r in result.history[:20]]))
    last = float(np.mean([r["loss"] for r in result.history[-20:]]))
    summary = {
        "task": "tiny BioMD model on harmonic-well particles (known stationary variance)",
        "parameters": result.model.n_parameters(),
        "train_steps": steps,
        "seed": seed,
        "train_seconds": round(result.train_seconds, 2),
        "loss_first20": first,
        "loss_last20": last,
        **quality,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _default_vocabs():
    from .featurize import DEFAULT_VOCABULARIES

    return DEFAULT_VOCABULARIES


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="training tiny model", unit="step")
