"""``biomd sample``: generative trajectories with a model alone (no OpenMM relaxation).

Generated frames are projected onto constrained bond lengths, as an MD
integrator does after every step (``--constraints``): a bundled system's own
constraints, or for a structure file every bond to a hydrogen at its length
in that structure (OpenMM's ``HBonds``); ``none`` keeps the raw network output.

Writes into the output directory ``topology.pdb`` (modelled atoms),
``trajectory.dcd`` (replica 0 at full resolution, frames ``Δt`` apart),
``replica_001.dcd``… for further replicas, and ``summary.json``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from biomd_core.config import require_at_least
from biomd_core.featurize.bond_lengths import check_bonds_fit
from biomd_core.io import load_model
from biomd_core.io.output_folder import (
    OutputFolderError,
    check_output_folder,
    claim_output_folder,
    json_with_keys,
    recorded_settings,
    refuse_other_settings,
    refuse_results_without_record,
)
from biomd_core.sampling import HierarchicalSampler, SolverConfig, tasks
from biomd_core.sampling.constraints import RigidBonds

from .data.frame_checks import check_frames_sound, check_no_overlaps
from .data.md import _atomic_write_json
from .trajectory_io import frame_spacing_ps, read_trajectory, subset_topology, write_dcd, write_pdb

#: the files a sample writes into its folder (claimed with biomd_core.io.output_folder)
SAMPLE_OUTPUTS = ("topology.pdb", "trajectory.dcd", "replica_[0-9][0-9][0-9].dcd", "summary.json")


#: a sample written before output folders were claimed
_earlier_sample = json_with_keys("summary.json", "task", "replicas", "solver")


@dataclass(frozen=True)
class SampleRequest:
    """What to generate (see ``biomd sample --help``); ``time`` is a string like ``"10ns"``."""

    model: str
    time: str
    system: str | None = None
    structure: str | None = None
    task: str = "forecast"
    end: str | None = None
    reference: str | None = None
    reference_topology: str | None = None
    known: str | None = None
    replicas: int = 1
    seed: int = 0
    solver: str = "heun"
    ode_steps: int = 20
    #: ``auto`` (the bundled System's constraints; for a structure, bonds to H), ``hbonds`` or ``none``
    constraints: str = "auto"
    #: where the network runs: ``auto`` (CUDA when PyTorch sees a GPU), ``cpu`` or ``cuda``; the solver's
    #: state and random stream stay on the CPU, so a seed gives the same noise on either
    device: str = "auto"
    #: use the model on a system it was not trained on (otherwise refused, as ``biomd run`` refuses it)
    allow_transfer: bool = False

    def __post_init__(self) -> None:
        require_at_least([("--replicas", self.replicas, 1), ("--ode-steps", self.ode_steps, 1)])


CONSTRAINT_CHOICES = ("auto", "hbonds", "none")


def load_start(request: SampleRequest):
    """``(openmm topology, positions [N_total, 3] nm, openmm System or None)`` of the start structure."""
    if request.system:
        from .data.systems import get_system

        loaded = get_system(request.system).load()
        return loaded.topology, np.asarray(loaded.positions), loaded.system
    traj = read_trajectory(request.structure, "start structure (--structure)")
    check_frames_sound(traj.xyz[:1], f"start structure {request.structure}")  # else the model got the blame
    return traj.topology.to_openmm(), traj.xyz[0].astype(np.float64), None


def sampling_constraints(request: SampleRequest, graph, positions_nm: np.ndarray, system) -> RigidBonds | None:
    """The bond lengths generated frames are projected onto (``None`` for ``--constraints none``)."""
    if request.constraints not in CONSTRAINT_CHOICES:
        raise ValueError(f"--constraints must be one of {CONSTRAINT_CHOICES}, not {request.constraints!r}")
    if request.constraints == "none":
        return None
    if request.constraints == "auto" and system is not None:
        from .propagator.solute_system import rigid_bonds

        return rigid_bonds(system, graph.atom_indices)
    return RigidBonds.hydrogen_bonds(graph.bonds, graph.element_labels, graph.masses,
                                     positions_nm[graph.atom_indices])


def sampling_device(name: str) -> torch.device:
    """The network's device for ``--device`` (``auto``: CUDA when available)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"--device must be auto, cpu or cuda, not {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: PyTorch sees no CUDA GPU here (use --device cpu or auto)")
    return torch.device(name)


def _structure_nm(path: str, graph) -> np.ndarray:
    """The modelled atoms ``[N, 3]`` nm of the end structure ``path``, once it is known to fit ``graph``."""
    traj = read_trajectory(path, "end structure (--end)")
    if traj.n_atoms != graph.n_total_atoms:
        raise ValueError(f"{path} has {traj.n_atoms} atoms but the start structure has {graph.n_total_atoms}")
    check_frames_sound(traj.xyz[:1], f"end structure {path}")
    end = traj.xyz[0][graph.atom_indices].astype(np.float64)
    check_no_overlaps(end, f"end structure {path}")  # (the modelled atoms: a TIP4P site sits 0.015 nm from its O)
    check_bonds_fit(end[None], graph.bonds, f"end structure {path}")  # (atoms in another order had passed)
    return end


def check_task_inputs(request: SampleRequest) -> None:
    """Refuse inputs the task does not use (a forgotten ``--task interpolate`` had run a forecast)."""
    unused = []
    if request.end and request.task not in ("tps", "interpolate"):
        unused.append("--end (the tps and interpolate tasks)")
    if request.task != "inpaint":
        unused += [f"{flag} (the inpaint task)" for flag, value in (("--reference", request.reference),
                   ("--reference-topology", request.reference_topology), ("--known", request.known)) if value]
    if unused:
        raise ValueError(f"the {request.task} task does not use {', '.join(unused)}: give the task that uses them "
                         "(--task), or leave them out")


def _without_model(request: dict | None) -> dict | None:
    """A recorded or new request without its ``model`` path (compared by the weights' hash instead)."""
    return None if not isinstance(request, dict) else {k: v for k, v in request.items() if k != "model"}


def run_sample(request: SampleRequest, out: Path) -> dict:
    """Generate and write the files; returns the summary."""
    from .data.md import parse_time_ps
    from .propagator.compatibility import check_compatibility

    check_task_inputs(request)
    check_output_folder(out, "sample", SAMPLE_OUTPUTS, _earlier_sample)  # before minutes of sampling
    refuse_results_without_record(out, "summary.json", ("trajectory.dcd", "replica_[0-9][0-9][0-9].dcd"))
    # (a sample under other settings had replaced the trajectories an evaluation beside them describes);
    # the model is judged by its weights below, not by how --model spells its path
    earlier = recorded_settings(out, "summary.json")
    refuse_other_settings(out, _without_model((earlier or {}).get("request")), _without_model(asdict(request)),
                          "a sample", "sample it again")
    model = load_model(request.model, device=sampling_device(request.device))
    weights = model.weights_hash()
    if earlier is not None and earlier.get("model_sha256") not in (None, weights):
        # (weights retrained into the same file had replaced the sample without a word)
        raise OutputFolderError(f"{out} holds a sample of other model weights (sha256 "
                                f"{str(earlier['model_sha256'])[:12]}…, now {weights[:12]}… from {request.model}): "
                                "use a new --out, or the weights it was sampled with")
    topology, positions, system = load_start(request)
    graph = model.featurize(topology, positions_nm=positions)
    check_compatibility(model, graph, allow_transfer=request.allow_transfer)
    if system is None:  # a structure file: its bonds must fit its coordinates (atoms in another order did)
        check_bonds_fit(positions[None, graph.atom_indices], graph.bonds, f"start structure {request.structure}")
        # (atoms on one spot had been sampled from; the modelled ones only, as a TIP4P site sits 0.015 nm from its O)
        check_no_overlaps(positions[graph.atom_indices], f"start structure {request.structure}")
    constraints = sampling_constraints(request, graph, positions, system)
    atoms = graph.atom_indices
    duration_ps = parse_time_ps(request.time)
    replicas = request.replicas
    start = torch.from_numpy(positions[atoms]).unsqueeze(0).expand(replicas, -1, -1).contiguous()
    solver = SolverConfig(request.solver, request.ode_steps)
    bound = model.bind(graph)
    sampler = HierarchicalSampler(bound, model.time, solver, constraints=constraints)
    generator = torch.Generator().manual_seed(request.seed)

    t0 = time.perf_counter()
    if request.task == "forecast":
        frames = tasks.forecast(sampler, start, duration_ps, generator)
    elif request.task in ("tps", "interpolate"):
        if not request.end:
            raise ValueError(f"the {request.task} task needs --end (the end structure)")
        end = torch.from_numpy(_structure_nm(request.end, graph)).unsqueeze(0).expand_as(start)
        if request.task == "tps":
            frames = tasks.transition_path(sampler, start, end, duration_ps, generator)
        else:
            frames = tasks.interpolate(sampler, start, end, duration_ps, generator)
    elif request.task == "inpaint":
        frames = _inpaint(request, model, graph, sampler, start, duration_ps, generator)
    else:
        raise ValueError(f"unknown task {request.task!r}")
    wall_s = time.perf_counter() - t0

    frames_np = frames.double().numpy()
    if not np.isfinite(frames_np).all():
        raise FloatingPointError("the model produced non-finite coordinates; nothing was written")
    claim_output_folder(out, "sample", SAMPLE_OUTPUTS, _earlier_sample)
    # the settings are on disk before the first trajectory: a kill while writing leaves a folder the same command
    # samples again, and that evaluate refuses (status "writing")
    record = {"request": asdict(request), "model": request.model, "model_sha256": weights}
    _atomic_write_json(out / "summary.json", {**record, "status": "writing"})
    sub_top = subset_topology(topology, atoms)
    write_pdb(out / "topology.pdb", sub_top, frames_np[0, 0])
    dt = model.time.frame_interval_ps
    for r in range(replicas):
        write_dcd(out / ("trajectory.dcd" if r == 0 else f"replica_{r:03d}.dcd"), sub_top, frames_np[r], dt)
    for stale in out.glob("replica_[0-9][0-9][0-9].dcd"):  # replicas of an earlier, larger sample into this folder
        if int(stale.stem[len("replica_"):]) >= replicas:
            stale.unlink()
    simulated_ps = (frames_np.shape[1] - 1) * dt
    summary = {
        **record,
        "status": "complete",
        "system": request.system or request.structure,
        "task": request.task,
        "replicas": replicas,
        "seed": request.seed,
        "simulated_ps": simulated_ps,
        "simulated_ps_all_replicas": simulated_ps * replicas,
        "wall_s": wall_s,
        "ns_per_day": simulated_ps * replicas / 1000.0 / (wall_s / 86400.0) if wall_s > 0 else None,
        "frame_interval_ps": dt,
        "n_frames": int(frames_np.shape[1]),
        "n_atoms": int(graph.n_atoms),
        "solver": request.solver,
        "ode_steps": request.ode_steps,
        "constraints": request.constraints,
        "constrained_bonds": constraints.n_constraints if constraints is not None else 0,
        "device": str(next(model.parameters()).device),
    }
    _atomic_write_json(out / "summary.json", summary)  # (replacing the "writing" record above)
    return summary


def _inpaint(request, model, graph, sampler, start, duration_ps, generator):
    """Frames ``[R, T, N, 3]`` of ``duration_ps`` (``T = duration / Δt + 1``) whose ``--known`` atoms follow the
    reference trajectory, read frame by frame at the model's Δt."""
    from .data.metadynamics import select_atoms

    if not (request.reference and request.known):
        raise ValueError("the inpaint task needs --reference (trajectory of the known atoms) and --known (a selection)")
    ref = read_trajectory(request.reference, "reference trajectory (--reference)", request.reference_topology,
                          "--reference-topology")
    check_frames_sound(ref.xyz, f"reference trajectory {request.reference}")
    if ref.n_atoms != graph.n_total_atoms:  # (another system's first atoms had been taken as the known ones)
        raise ValueError(f"the reference trajectory {request.reference} has {ref.n_atoms} atoms, the start structure "
                         f"{graph.n_total_atoms}: give a reference of this system")
    check_bonds_fit(ref.xyz[:, graph.atom_indices], graph.bonds, f"reference trajectory {request.reference}")
    known_total = select_atoms(ref.topology.to_openmm(), request.known, "--known selection")
    position = {int(a): i for i, a in enumerate(graph.atom_indices)}
    known = sorted(position[int(a)] for a in known_total if int(a) in position)
    if not known:
        raise ValueError(f"--known {request.known!r} selects no modelled atom")
    dt = model.time.frame_interval_ps
    # (1 ps frames had been taken as 5 ps ones; then only a DCD's header was read, not an XTC's frame times)
    spacing = frame_spacing_ps(ref, request.reference)
    if spacing is not None and abs(spacing - dt) > 1e-3 * dt:
        raise ValueError(f"the reference trajectory's frames are {spacing:g} ps apart, the model's {dt:g} ps: "
                         f"give a reference saved every {dt:g} ps")
    # inpainting runs whole coarse intervals (a --time of 102 or 150 ps had been cut to 100 ps without a word)
    n_frames = tasks.n_coarse_intervals_for(duration_ps, model.time, "inpainting") * model.time.coarse_stride + 1
    if ref.n_frames < n_frames:  # (--time had been ignored: the reference's length decided)
        raise ValueError(f"--time {request.time} needs {n_frames} reference frames {dt:g} ps apart, the reference "
                         f"holds {ref.n_frames}: give a shorter --time or a longer reference")
    # the reference's first frame is the start, every atom of it: the start structure's known atoms had been
    # there instead, and the known atoms jumped from them to the reference's at the second frame
    reference = torch.from_numpy(ref.xyz[:n_frames, graph.atom_indices].astype(np.float64))
    return tasks.inpaint(sampler, reference.unsqueeze(0).expand(start.shape[0], -1, -1, -1), known, generator)
