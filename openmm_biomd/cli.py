"""The ``biomd`` command line.

Each subcommand is a small function registered in :data:`COMMANDS`; heavy
imports happen inside the handlers so ``biomd --help`` is instant.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable

from biomd_core.config import seed_argument


def cmd_presets(args: argparse.Namespace) -> int:
    """List model presets and their parameter counts (built on the meta device: no memory)."""
    from biomd_core.model.presets import PRESETS, preset_parameter_count

    rows = [{"name": name, "parameters": preset_parameter_count(name), **vars(cfg)} for name, cfg in PRESETS.items()]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'preset':<8} {'parameters':>14} {'c_single':>9} {'trunk':>6} {'encoder':>8} {'heads':>6}")
        for r in rows:
            print(
                f"{r['name']:<8} {r['parameters']:>14,} {r['c_single']:>9} {r['n_trunk_layers']:>6}"
                f" {r['n_encoder_layers']:>8} {r['n_heads']:>6}"
            )
    return 0


#: what `biomd export` writes (biomd_core.export.export_torchscript)
EXPORT_OUTPUTS = ("velocity_net.pt", "sampler_step.pt")


def cmd_export(args: argparse.Namespace) -> int:
    """Export a model's velocity network and one sampler step to TorchScript."""
    from biomd_core.export import export_torchscript
    from biomd_core.io import load_model
    from biomd_core.io.output_folder import claim_output_folder

    model = load_model(args.model)
    # a folder holding files of the user's or another command's is refused by name (its velocity_net.pt was
    # replaced); a folder an earlier export wrote holds both archives
    claim_output_folder(args.out, "export", EXPORT_OUTPUTS,
                        lambda folder: all((folder / name).is_file() for name in EXPORT_OUTPUTS))
    paths = export_torchscript(model, args.out)
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train or fine-tune a model from a run config; resumes when the run directory has checkpoints."""
    from biomd_core.training.run import load_run_config, run_training

    summary = run_training(load_run_config(args.config), args.out, progress=not args.quiet)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun only rank 0 reports
        print(json.dumps(summary, indent=2, default=str))
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    """Pure generative trajectories (no OpenMM relaxation) for a bundled system or a structure."""
    from openmm_biomd.sample import SampleRequest, run_sample

    request = SampleRequest(
        model=args.model, system=args.system, structure=args.structure, time=args.time, task=args.task,
        end=args.end, reference=args.reference, reference_topology=args.reference_topology, known=args.known,
        replicas=args.replicas, seed=args.seed, solver=args.solver, ode_steps=args.ode_steps,
        constraints=args.constraints, device=args.device, allow_transfer=args.allow_transfer,
    )
    print(json.dumps(run_sample(request, Path(args.out)), indent=2))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Metrics of generated trajectories against reference MD: JSON, markdown report, plots."""
    from openmm_biomd.evaluate import EvaluateRequest, run_evaluate

    request = EvaluateRequest(
        generated=args.generated, reference=args.reference, paths=args.paths, reference_paths=args.reference_paths,
        system=args.system,
        energy_frames=args.energy_frames, minimise_iterations=args.minimise_iterations,
    )
    print(json.dumps(run_evaluate(request, Path(args.out)), indent=2))
    return 0


def cmd_reproduce_weights(args: argparse.Namespace) -> int:
    """Reproduce a shipped model from scratch: MD data, training, rollouts, evaluation, model card."""
    from openmm_biomd.recipes import extend, reevaluate, reproduce

    if args.reevaluate and args.extend:
        raise ValueError("--reevaluate and --extend are alternatives (--extend measures the new weights anyway)")
    for flag, given in (("--stop-after-training", args.stop_after_training), ("--parallel-md", args.parallel_md)):
        if given and (args.reevaluate or args.extend):  # (it had been ignored)
            raise ValueError(f"{flag} belongs to a whole reproduction, not to "
                             f"{'--reevaluate' if args.reevaluate else '--extend'}")
    if args.reevaluate:
        facts = reevaluate(args.name, args.root, install=args.install)
    elif args.extend:
        facts = extend(args.name, args.root, install=args.install, progress=not args.quiet)
    else:
        facts = reproduce(args.name, args.root, install=args.install, progress=not args.quiet,
                          parallel_md=args.parallel_md, stop_after_training=args.stop_after_training)
    print(json.dumps(facts.get("quality", facts), indent=2, default=str))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """The main job: a hybrid generative simulation, timed against plain OpenMM MD in the same run."""
    from openmm_biomd.run import RunRequest, run_hybrid

    request = RunRequest(
        system=args.system, model=args.model, time=args.time, platform=args.platform, seed=args.seed,
        report_interval_ps=args.report_interval, jump_ps=args.jump, solver=args.solver, ode_steps=args.ode_steps,
        steering=args.steering, frame_md_steps=args.frame_md_steps, thermalize_steps=args.thermalize_steps,
        md_benchmark_ps=args.md_benchmark,
        md_interleave_ps=args.md_interleave, reference=args.reference, allow_transfer=args.allow_transfer,
    )
    summary = run_hybrid(request, Path(args.out), progress=not args.quiet)
    keys = ("system", "platform", "simulated_ps", "wall_s", "hybrid_ns_per_day", "md_ns_per_day", "speedup",
            "n_frames", "jumps_attempted", "jumps_accepted", "fallback_md_ps")
    print(json.dumps({k: summary[k] for k in keys}, indent=2))
    # (on stderr, so that stdout is the JSON alone, as every other command's)
    print(f"wrote {args.out}/summary.json, report.md, trajectory.dcd and plots", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Train a tiny model on a process with a known answer, sample from it, report."""
    from biomd_core.demo import run_engine_demo

    summary = run_engine_demo(Path(args.out), steps=args.steps, seed=args.seed, progress=not args.quiet,
                              replicas=args.replicas)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_generate_data(args: argparse.Namespace) -> int:
    """Plain-MD (or metadynamics dissociation) training data for a bundled system or the user's own inputs."""
    from openmm_biomd.data import (
        BUNDLED_SYSTEMS,
        generate_dissociation,
        generate_md,
        get_system,
        parse_time_ps,
        resume_md,
    )

    if args.list_systems:
        for name, s in BUNDLED_SYSTEMS.items():
            print(f"{name:<18} Δt {s.frame_interval_ps:g} ps  ligand {s.ligand_residue or '-':<4} {s.description}")
        return 0
    _refuse_ignored_options(args)
    log = None if args.quiet else sys.stderr
    common = {"platform": args.platform, "threads": args.threads, "cpu": args.cpu, "log": log}
    for flag, value in (("--replicas", args.replicas), ("--chunk-frames", args.chunk_frames),
                        ("--max-chunks", args.max_chunks)):
        if value is not None and value < 1:  # (0 had run with the default)
            raise ValueError(f"{flag} must be at least 1, got {value}")
        if value is not None and args.dissociation:  # (it had been ignored)
            raise ValueError(f"{flag} is for plain-MD runs; a --dissociation campaign runs --n-seeds seeds, each "
                             "written whole")
    if args.resume:
        if args.dissociation:
            raise ValueError("--resume continues plain-MD runs; rerun the same --dissociation command to add missing seeds")
        meta = resume_md(
            args.resume,
            time_ps=parse_time_ps(args.time) if args.time else None,
            replicas=args.replicas,
            chunk_frames=args.chunk_frames,
            max_chunks=args.max_chunks,
            **common,
        )
        print(json.dumps(_data_report(meta, args.resume), indent=2))
        return 0
    if args.inputs:
        from openmm_biomd.data import load_input_files

        extra = {"implicit_solvent": args.implicit_solvent} if args.implicit_solvent else {}
        system = load_input_files(args.inputs, forcefield=args.forcefield or (), constraints=args.constraints, **extra)
        name, default_interval_ps = system.description["name"], 1.0
    else:
        if args.forcefield or args.implicit_solvent:
            raise ValueError("--forcefield and --implicit-solvent apply to --inputs, not to bundled systems")
        name = args.system
        # (looked up first: an unknown name had been reported as a time not a whole number of frame intervals)
        system, default_interval_ps = name, get_system(name).frame_interval_ps
    if not args.time:
        raise ValueError("give --time (production time per replica, or the longest metadynamics run), e.g. --time 2ns")
    settings = {
        "frame_interval_ps": parse_time_ps(args.frame_interval) if args.frame_interval else default_interval_ps,
        "temperature_k": args.temperature,
        "timestep_fs": parse_time_ps(args.timestep) * 1000.0,
        "friction_per_ps": args.friction,
        "seed": args.seed,
        "equilibration_ps": parse_time_ps(args.equilibration),
    }
    if args.dissociation:
        out = args.out or f"runs/dissociation/{name}"
        summary = generate_dissociation(
            system, out, ligand_selection=args.ligand, pocket_selection=args.pocket, n_seeds=args.n_seeds,
            max_time_ps=parse_time_ps(args.time), height_kj_mol=args.height, bias_factor=args.bias_factor,
            sigma_nm=args.sigma, deposit_interval_ps=parse_time_ps(args.deposit_interval),
            exit_distance_nm=args.exit_distance, pocket_radius_nm=args.pocket_radius,
            after_exit_ps=parse_time_ps(args.after_exit), **settings, **common,
        )
        keys = ("status", "n_dissociated", "mean_time_to_dissociation_ps", "wall_s")
        print(json.dumps({"out": str(out), **{k: summary[k] for k in keys}, "seeds": len(summary["results"])}, indent=2))
        return 0
    out = args.out or f"runs/data/{name}"
    meta = generate_md(
        system, out, time_ps=parse_time_ps(args.time), replicas=1 if args.replicas is None else args.replicas,
        chunk_frames=100 if args.chunk_frames is None else args.chunk_frames, max_chunks=args.max_chunks,
        **settings, **common,
    )
    print(json.dumps(_data_report(meta, out), indent=2))
    return 0


def _data_report(meta: dict, out: str) -> dict:
    keys = ("status", "system", "frames_per_replica", "frame_interval_ps", "platform", "wall_s", "ns_per_day")
    return {"out": str(out), **{k: meta[k] for k in keys}}


#: ``biomd generate-data``'s defaults, applied after parsing (the options default to None, so that an option the
#: user gave can be told from one left out: a --resume or a plain-MD run refuses options it would ignore).
GENERATE_DATA_DEFAULTS: dict[str, Any] = {
    "constraints": "HBonds", "temperature": 300.0, "timestep": "2fs", "friction": 1.0, "seed": 0,
    "equilibration": "10ps", "n_seeds": 10, "height": 2.0, "bias_factor": 10.0, "sigma": 0.05,
    "deposit_interval": "1ps", "exit_distance": 1.0, "after_exit": "0ps", "pocket_radius": 0.5,
}
#: Options of a new run that ``--resume`` takes from the run's metadata instead.
_NEW_RUN_ONLY = ("out", "frame_interval", "forcefield", "implicit_solvent", "constraints", "temperature", "timestep",
                 "friction", "seed", "equilibration")
#: Options of a ``--dissociation`` campaign only.
_DISSOCIATION_ONLY = ("ligand", "pocket", "n_seeds", "height", "bias_factor", "sigma", "deposit_interval",
                      "exit_distance", "after_exit", "pocket_radius")


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _refuse_ignored_options(args: argparse.Namespace) -> None:
    """Refuse options that this kind of ``generate-data`` run would ignore (a --resume continued at the recorded
    300 K when asked for 350, without a word), then fill in the defaults of those left out."""
    if args.resume:
        ignored = [dest for dest in _NEW_RUN_ONLY + _DISSOCIATION_ONLY if getattr(args, dest) is not None]
        if ignored:
            raise ValueError(f"{', '.join(map(_flag, ignored))} cannot be given with --resume, which continues the run "
                             "with the settings in its metadata (only --time, --replicas, --chunk-frames, --max-chunks "
                             "and the platform options may change): leave them out, or start a new run with "
                             "--system/--inputs and --out")
    elif not args.dissociation:
        ignored = [dest for dest in _DISSOCIATION_ONLY if getattr(args, dest) is not None]
        if ignored:
            raise ValueError(f"{', '.join(map(_flag, ignored))} {'is' if len(ignored) == 1 else 'are'} for a "
                             "--dissociation campaign: add --dissociation, or leave them out for plain MD")
    for dest, value in GENERATE_DATA_DEFAULTS.items():
        if getattr(args, dest) is None:
            setattr(args, dest, value)


def _add_generate_data_arguments(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--system", help="bundled system (see --list-systems)")
    source.add_argument(
        "--inputs", nargs="+", metavar="FILE",
        help="your inputs: a.prmtop a.inpcrd | system.xml state.xml top.pdb | x.pdb (with --forcefield) | x.top x.gro",
    )
    source.add_argument("--resume", metavar="DIR", help="continue a run from its metadata (--time/--replicas extend it)")
    source.add_argument("--list-systems", action="store_true", help="list the bundled systems and exit")
    p.add_argument("--forcefield", nargs="+", metavar="XML", help="force-field XMLs for a PDB, e.g. amber14-all.xml implicit/obc2.xml")
    p.add_argument("--implicit-solvent", choices=["HCT", "OBC1", "OBC2", "GBn", "GBn2"], help="for Amber/GROMACS inputs")
    p.add_argument("--constraints", choices=["none", "HBonds", "AllBonds", "HAngles"], help="(default HBonds)")
    p.add_argument("--out", help="run directory (default runs/data/NAME or runs/dissociation/NAME); rerun to resume")
    p.add_argument("--time", help="production time per replica (or longest metadynamics run), e.g. 200ps, 2ns")
    p.add_argument("--frame-interval", help="time between frames, a whole number of steps (default: the system's)")
    p.add_argument("--replicas", type=int, help="independent replicas (default 1)")
    p.add_argument("--temperature", type=float, help="K (default 300)")
    p.add_argument("--timestep", help="integrator step (default 2fs)")
    p.add_argument("--friction", type=float, help="Langevin friction, 1/ps (default 1)")
    p.add_argument("--seed", type=seed_argument, help="master seed (replica/seed i gets its own; default 0)")
    p.add_argument("--equilibration", help="MD after minimisation before the first frame (default 10ps)")
    p.add_argument("--chunk-frames", type=int, help="frames per DCD chunk and checkpoint (default 100)")
    p.add_argument("--max-chunks", type=int, help="stop after this many chunks (resume later)")
    p.add_argument("--platform", help="OpenMM platform (default CUDA if present, else CPU)")
    p.add_argument("--threads", type=int, help="CPU platform threads (default 1 for tiny systems, else all cores)")
    p.add_argument("--cpu", type=int, help="make and drive the OpenMM Context from this CPU core (--threads then "
                                           "defaults to 1); give runs side by side different cores")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    meta = p.add_argument_group("dissociation by well-tempered metadynamics (--dissociation)")
    meta.add_argument("--dissociation", action="store_true", help="metadynamics on the ligand-pocket distance")
    meta.add_argument("--ligand", help="mdtraj selection of the ligand (default: the system's ligand residue)")
    meta.add_argument("--pocket", help="mdtraj selection of the pocket (default: heavy atoms near the ligand)")
    meta.add_argument("--n-seeds", type=int, help="independent runs (default 10)")
    meta.add_argument("--height", type=float, help="initial hill height, kJ/mol (default 2)")
    meta.add_argument("--bias-factor", type=float, help="well-tempered bias factor (default 10)")
    meta.add_argument("--sigma", type=float, help="hill width, nm (default 0.05)")
    meta.add_argument("--deposit-interval", help="time between hills (default 1ps)")
    meta.add_argument("--exit-distance", type=float, help="stop once CV > bound CV + this, nm (default 1)")
    meta.add_argument("--after-exit",
                      help="unbiased MD kept after the exit (training data: exits inside windows), e.g. 20ps (default 0)")
    meta.add_argument("--pocket-radius", type=float,
                      help="pocket = heavy atoms this close to the ligand, nm (default 0.5)")


#: biomd_core.sampling.solvers.SOLVERS, spelled out so that building the parser does not import torch.
SOLVER_NAMES = ("euler", "heun", "ab2", "sde")

#: Commands whose module defines ``add_arguments(parser)`` and ``main(args)`` (imported only when used).
MODULE_COMMANDS: dict[str, tuple[str, str]] = {
    "unbind": ("openmm_biomd.enhanced.unbind", "generated ligand dissociation paths from a bound complex (resumable)"),
    "steer": ("openmm_biomd.enhanced.steered", "a steered-MD (constant-velocity) path along a CV, for seeding"),
    "umbrella": ("openmm_biomd.enhanced.umbrella",
                 "umbrella windows seeded from a path, run in OpenMM, free-energy profile by pymbar (resumable)"),
    "walkers": ("openmm_biomd.enhanced.walkers",
                "well-tempered metadynamics walkers sharing one bias directory, started along a path (resumable)"),
    "interactions": ("openmm_biomd.enhanced.interactions",
                     "per-residue receptor–ligand interaction energies along a path (CSV, JSON, heat map)"),
}


def _module(name: str):
    import importlib

    return importlib.import_module(MODULE_COMMANDS[name][0])


def _module_handler(name: str) -> Callable[[argparse.Namespace], int]:
    return lambda args: _module(name).main(args)


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
    "run": (cmd_run, "the main job: hybrid generative + OpenMM simulation, timed against plain MD (resumable)"),
    "presets": (cmd_presets, "list model presets with parameter counts"),
    "export": (cmd_export, "export a model to TorchScript (network + sampler step)"),
    "train": (cmd_train, "train or fine-tune a model from a run config (resumable; torchrun for DDP)"),
    "sample": (cmd_sample, "generate trajectories with a model alone (no OpenMM relaxation)"),
    "evaluate": (cmd_evaluate, "metrics of generated trajectories or unbinding paths against reference MD (JSON, report, plots)"),
    "reproduce-weights": (cmd_reproduce_weights, "reproduce a shipped model from scratch (resumable)"),
    "demo": (cmd_demo, "train a tiny model on the fly and sample from it (engine demo)"),
    "generate-data": (cmd_generate_data, "plain-MD or metadynamics-dissociation training data (chunked, resumable)"),
    **{name: (_module_handler(name), help_text) for name, (_, help_text) in MODULE_COMMANDS.items()},
}


def build_parser() -> argparse.ArgumentParser:
    from biomd_core.version import __version__

    parser = argparse.ArgumentParser(prog="biomd", description="BioMD generative molecular dynamics for OpenMM")
    parser.add_argument("--version", action="version", version=f"biomd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == "presets":
            p.add_argument("--json", action="store_true", help="machine-readable output")
        elif name == "export":
            p.add_argument("--model", required=True, help="checkpoint path or shipped model name")
            p.add_argument("--out", required=True, help="output directory for the .pt archives")
        elif name == "train":
            p.add_argument("--config", required=True, help="run config (YAML or JSON)")
            p.add_argument("--out", required=True, help="run directory (created; resumed if it exists)")
            p.add_argument("--quiet", action="store_true", help="no progress bar")
        elif name == "sample":
            p.add_argument("--model", required=True, help="checkpoint path or shipped model name")
            src = p.add_mutually_exclusive_group(required=True)
            src.add_argument("--system", help="bundled system name (start structure)")
            src.add_argument("--structure", help="start structure file (PDB, or anything mdtraj reads)")
            p.add_argument("--time", required=True, help="duration, e.g. 10ns or 500ps")
            p.add_argument("--task", default="forecast", choices=("forecast", "interpolate", "tps", "inpaint"))
            p.add_argument("--end", help="end structure (interpolate, tps)")
            p.add_argument("--reference", help="trajectory of the known atoms, frames at the model's Δt; its "
                                                  "first frame is the start, every atom of it (inpaint)")
            p.add_argument("--reference-topology", help="topology of --reference when it has none")
            p.add_argument("--known", help="mdtraj selection of the known atoms (inpaint)")
            p.add_argument("--replicas", type=int, default=1)
            p.add_argument("--seed", type=seed_argument, default=0)
            p.add_argument("--solver", default="heun", choices=SOLVER_NAMES)
            p.add_argument("--ode-steps", type=int, default=20, help="integration steps per window")
            p.add_argument("--constraints", default="auto", choices=("auto", "hbonds", "none"),
                           help="bond lengths generated frames are projected onto: auto (a bundled system's own "
                                "constraints; for --structure, bonds to H as in that structure), hbonds, or "
                                "none (raw network output)")
            p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                           help="where the network runs (default: CUDA when PyTorch sees a GPU)")
            p.add_argument("--allow-transfer", action="store_true",
                           help="use a model on a system it was not trained on (otherwise refused)")
            p.add_argument("--out", required=True, help="output directory")
        elif name == "evaluate":
            p.add_argument("--generated", help="a biomd sample output directory")
            p.add_argument("--reference", help="a biomd generate-data run directory (MD the model never saw)")
            p.add_argument("--paths", help="a biomd unbind output directory (generated dissociation paths)")
            p.add_argument("--reference-paths",
                           help="a biomd generate-data --dissociation directory (reference paths for --paths)")
            p.add_argument("--system", help="bundled system for energies (default: the reference run's)")
            p.add_argument("--energy-frames", type=int, default=40, help="frames minimised for the energy comparison")
            p.add_argument("--minimise-iterations", type=int, default=50)
            p.add_argument("--out", required=True, help="output directory")
        elif name == "reproduce-weights":
            p.add_argument("name", help="shipped model name (see biomd_core/weights)")
            p.add_argument("--root", default="runs", help="working directory for data, training and evaluation")
            p.add_argument("--install", action="store_true", help="copy weights and card into biomd_core/weights")
            p.add_argument("--reevaluate", action="store_true",
                           help="only measure the installed weights again (rollouts, evaluation) and rewrite "
                                "their card; with --install the installed card is replaced")
            p.add_argument("--extend", action="store_true",
                           help="train only the recipe's stages the installed weights lack, starting from them, "
                                "then measure and write the card (for a recipe that gained a stage)")
            p.add_argument("--parallel-md", action="store_true",
                           help="run the recipe's MD plans side by side, one process each (for several CPU "
                                "cores or GPUs)")
            p.add_argument("--stop-after-training", action="store_true",
                           help="end after the training; a later run (another machine, with root/train/NAME*, "
                                "root/data/NAME-reference and root/eval/NAME/training-facts.json copied; for "
                                "host-guest the same root) evaluates and writes the card")
            p.add_argument("--quiet", action="store_true")
        elif name == "run":
            p.add_argument("--system", default="alanine-dipeptide", help="bundled system (default alanine-dipeptide)")
            p.add_argument("--model", help="model name, .safetensors or exported .pt (default: the system's shipped weights)")
            p.add_argument("--time", default="2ns", help="simulated time, e.g. 2ns (default)")
            p.add_argument("--out", default="runs/run", help="output directory (resumed when it holds the same run)")
            p.add_argument("--platform", help="OpenMM platform (default CUDA when present, else CPU)")
            p.add_argument("--seed", type=seed_argument, default=0)
            p.add_argument("--report-interval", type=float, help="ps between written frames (default: the model's Δt)")
            p.add_argument("--jump", type=float, help="ps per generative jump (default: one autoregressive block)")
            p.add_argument("--solver", default="ab2", choices=SOLVER_NAMES,
                           help="how generated windows are integrated: ab2 (default; one network evaluation a "
                                "step), heun (the model cards'), euler or sde")
            p.add_argument("--ode-steps", type=int, default=8,
                           help="solver steps per generated window (default 8; the model cards measure Heun 20: "
                                "slower, nearer the model)")
            p.add_argument("--steering", type=float, default=0.0,
                           help="strength of the sampler's physics steering away from overlaps, broken bonds and "
                                "inverted stereocentres (default 0: off; 1 is what biomd unbind uses)")
            p.add_argument("--frame-md-steps", type=int, default=25,
                           help="uncounted MD steps (velocity Verlet from fresh Maxwell-Boltzmann velocities, the "
                                "System's own energy) each written frame of a jump receives before it is written "
                                "(default 25 = 0.05 ps; 0: the gate's relaxed frame as it is, faster)")
            p.add_argument("--thermalize-steps", type=int, default=100,
                           help="uncounted MD steps after each jump's hand-back minimisation, before the next "
                                "jump starts from that state (default 100 = 0.2 ps)")
            p.add_argument("--md-benchmark", type=float, default=10.0,
                           help="ps of plain MD timed per thread setting before the run, to pick the fastest (default 10)")
            p.add_argument("--md-interleave", type=float, default=2.0,
                           help="ps of plain MD timed after every hybrid cycle: the speed-up's denominator, measured "
                                "over the same stretch of time as the hybrid run (default 2; 0 = use the timing "
                                "before the run)")
            p.add_argument("--reference", help="generate-data directory of reference MD: adds the Ramachandran JSD")
            p.add_argument("--allow-transfer", action="store_true",
                           help="use a model on a system it was not trained on (otherwise refused)")
            p.add_argument("--quiet", action="store_true", help="no progress bar")
        elif name == "demo":
            p.add_argument("--out", default="runs/demo", help="output directory")
            p.add_argument("--steps", type=int, default=1000, help="training steps")
            p.add_argument("--replicas", type=int, default=64,
                           help="rollouts whose fluctuations are compared with the exact process")
            p.add_argument("--seed", type=seed_argument, default=0)
            p.add_argument("--quiet", action="store_true", help="no progress bar")
        elif name == "generate-data":
            _add_generate_data_arguments(p)
        elif name in MODULE_COMMANDS:
            _module(name).add_arguments(p)
    return parser


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """A warning as one line (Python's default format adds the file and source line that raised it, which say
    nothing to someone running a command)."""
    return f"biomd: warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # argparse's refusal of a flag (2), or --help/--version (0): the status, returned
        return int(stop.code or 0)
    handler = COMMANDS[args.command][0]
    shown, warnings.formatwarning = warnings.formatwarning, _one_line_warning
    try:
        return _run(handler, args)
    finally:
        warnings.formatwarning = shown


#: errno values of a file or folder the user may not read or write (a read-only file system among them)
_NOT_PERMITTED = (errno.EACCES, errno.EPERM, errno.EROFS)


def _run(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """``handler(args)`` with user-facing errors as one line and an exit status (2; 130 when interrupted)."""
    try:
        return handler(args)
    except (ValueError, RuntimeError, KeyError, OSError, FloatingPointError, ImportError, zipfile.BadZipFile) as exc:
        # User-facing errors (bad input, damaged or unwritable files): one clear line, no traceback.
        # (a KeyError's str() is the repr of its message: quotes around the line)
        message = exc.args[0] if isinstance(exc, KeyError) and len(exc.args) == 1 else exc
        if isinstance(exc, OSError) and exc.errno in _NOT_PERMITTED and exc.filename:  # was the bare "[Errno 13] ..."
            message = (f"{exc.filename}: {exc.strerror}: this command may not read or write it. Check its "
                       "permissions, or give an --out in a folder you can write to")
        print(f"biomd {args.command}: error: {message}", file=sys.stderr)
        return 2
    except Exception as exc:
        openmm = sys.modules.get("openmm")  # loaded by whatever raised an OpenMMException
        if openmm is None or not isinstance(exc, openmm.OpenMMException):
            raise
        print(f"biomd {args.command}: error: OpenMM refused: {exc}. Check the inputs (topology, coordinates, "
              "force field), the platform and its threads; files already written are kept.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"biomd {args.command}: interrupted. Files already written are kept; the same command resumes from "
              "the run's last checkpoint (a command without checkpoints, such as a steered pull, starts again).",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
