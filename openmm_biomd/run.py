"""``biomd run``: the main job, a hybrid generative simulation with a plain-MD yardstick.

For a bundled system and a model (by default the system's shipped weights) it

1. builds an OpenMM ``Simulation`` (Langevin, 2 fs, HBonds as the system
   defines them) on the requested platform, minimises and equilibrates it;
2. times plain OpenMM MD of the same system on the same platform, with every
   CPU thread count from 1 to all cores, and keeps the fastest (a speed-up is
   only honest against the best plain-MD setting);
3. runs a :class:`~openmm_biomd.propagator.GenerativePropagator` for
   ``--time`` with stock OpenMM reporters: ``trajectory.dcd`` (every report
   interval) and ``energies.csv`` (``StateDataReporter``);
4. writes ``topology.pdb``, ``summary.json``, ``report.md`` and PNG plots
   (Ramachandran map when the system has φ/ψ, energy trace, gate decisions).

The run checkpoints after every cycle (``checkpoint.zip`` +
``progress.json``); started again with the same settings it resumes: the
DCD and CSV are cut back to the checkpoint's step and appended to, so a
killed run loses at most one cycle and never duplicates a frame.

Units: ps, K, nm; ``--time`` accepts ``2ns``, ``500ps``…
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from biomd_core.config import require_at_least
from biomd_core.io.dcd import load_quietly, quiet_c_stdout
from biomd_core.io.output_folder import check_output_folder, claim_output_folder, json_with_keys, refuse_other_settings

from .affinity import cpu_for, pinned_to_cpu
from .data.md import (
    MDSettings,
    damaged_file,
    equilibrate,
    make_simulation,
    parse_time_ps,
    read_json,
    select_platform,
    whole_steps,
)

#: Integrator and equilibration settings shared with ``biomd generate-data`` (300 K, 1/ps, 2 fs, 10 ps);
#: only those fields of the data-generation settings are used.
MD_SETTINGS = MDSettings(time_ps=1.0, frame_interval_ps=1.0)
TEMPERATURE_K = MD_SETTINGS.temperature_k
TIMESTEP_PS = MD_SETTINGS.timestep_fs / 1000.0
EQUILIBRATION_STEPS = int(round(MD_SETTINGS.equilibration_ps / TIMESTEP_PS))
#: the files a run writes into its folder (claimed with biomd_core.io.output_folder)
RUN_OUTPUTS = ("trajectory.dcd", "energies.csv", "jumps.jsonl", "topology.pdb", "summary.json", "report.md",
               "progress.json", "checkpoint.zip", "ramachandran.png", "energy.png", "gate.png")
_EARLIER_RUN = json_with_keys("progress.json", "settings")  # a run written before output folders were claimed


@dataclass(frozen=True)
class RunRequest:
    """Settings of ``biomd run`` (see ``biomd run --help``)."""

    system: str = "alanine-dipeptide"
    model: str | None = None
    time: str = "2ns"
    platform: str | None = None
    seed: int = 0
    report_interval_ps: float | None = None
    jump_ps: float | None = None
    #: ab2 in 8 steps: 8 network evaluations per window against Heun 20's 39; with frame MD the hybrid
    #: Ramachandran JSD is 0.101 (9 seeds) against Heun 20's 0.098, at twice the speed-up (BENCHMARKS.md,
    #: 2026-12-03).  The model cards measure rollouts with Heun 20; the propagator API's default is Heun 10.
    solver: str = "ab2"
    ode_steps: int = 8
    #: strength of the sampler's physics steering (biomd_core.sampling.steering); 0: off (the shipped
    #: alanine-dipeptide model's frames pass the gate unsteered)
    steering: float = 0.0
    #: uncounted MD steps each reported frame receives (HandBackConfig.frame_md_steps; 0: off).  25 (0.05 ps):
    #: hybrid Ramachandran JSD 0.112 → 0.098 (Heun 20, 9 seeds); about a quarter of the hybrid's wall time
    #: (1.6–2.1 s per 5 ns on 2 cores beyond the hand-back it runs beside, 2026-12-03; BENCHMARKS.md)
    frame_md_steps: int = 25
    #: uncounted MD steps after each hand-back's minimisation (HandBackConfig.thermalize_steps; the API's
    #: default is 500): 100 (0.2 ps) gave the same JSD as 500 on 4 seeds (2026-12-02) and costs a fifth
    thermalize_steps: int = 100
    md_benchmark_ps: float = 10.0
    md_interleave_ps: float = 2.0
    reference: str | None = None
    allow_transfer: bool = False

    def __post_init__(self) -> None:
        # each named by its flag: the values below used to surface as OpenMM's "Could not open file", a
        # report interval of 0 was taken for the default, and a negative seed as numpy's "non-negative integer"
        if parse_time_ps(self.time) <= 0:
            raise ValueError(f"--time must be positive, got {self.time!r}")
        whole_steps(parse_time_ps(self.time), MD_SETTINGS.timestep_fs, "--time")  # (1fs had been a DCD error)
        for flag, value in (("--report-interval", self.report_interval_ps), ("--jump", self.jump_ps),
                            ("--md-benchmark", self.md_benchmark_ps)):
            if value is not None and not 0 < value < math.inf:  # (inf had been an OverflowError traceback)
                raise ValueError(f"{flag} must be positive and finite (ps), got {value:g}")
        if self.report_interval_ps is not None:  # (5.001 ps had been written every 5 ps, reported as 5.001)
            whole_steps(self.report_interval_ps, MD_SETTINGS.timestep_fs, "--report-interval")
        require_at_least([("--seed", self.seed, 0), ("--ode-steps", self.ode_steps, 1),
                          ("--frame-md-steps", self.frame_md_steps, 0),
                          ("--thermalize-steps", self.thermalize_steps, 0),
                          # (NaN had failed deep in the sampler, or been taken as 0, and bound the folder to NaN)
                          ("--steering", self.steering, 0), ("--md-interleave", self.md_interleave_ps, 0)])

    def resolved_model(self) -> str:
        return self.model or self.system


def simulation_for(loaded, platform, properties, seed: int):
    """A Simulation of ``loaded`` with ``MD_SETTINGS``, at the system's start positions."""
    simulation = make_simulation(loaded, MD_SETTINGS, seed, platform, properties)
    simulation.context.setPositions(np.asarray(loaded.positions, dtype=np.float64))
    return simulation


def time_plain_md(loaded, platform_name: str | None, duration_ps: float, seed: int) -> dict:
    """Fastest plain-MD rate over CPU settings (one setting on GPU platforms), ns/day.

    On the CPU: every thread count, and one thread with the Context pinned to a core
    (:mod:`~openmm_biomd.affinity`: several times faster on a VM whose idle vCPUs halt).  A trial's
    ``pinned_cpu`` is that core, or ``None``.
    """
    platform, properties = select_platform(platform_name, n_atoms=loaded.topology.getNumAtoms())
    settings = [(dict(properties), None)]
    if platform.getName() == "CPU":
        settings = [({"Threads": str(t)}, None) for t in range(1, (os.cpu_count() or 1) + 1)]
        if (cpu := cpu_for(0)) is not None:
            settings.append(({"Threads": "1"}, cpu))
    steps = max(100, int(round(duration_ps / TIMESTEP_PS)))
    trials = []
    for props, cpu in settings:
        with pinned_to_cpu(cpu) as pinned:
            simulation = simulation_for(loaded, platform, props, seed)
            simulation.minimizeEnergy(maxIterations=100)
            simulation.step(200)  # warm-up: kernels compiled, caches filled
            t0 = time.perf_counter()
            simulation.step(steps)
            wall = time.perf_counter() - t0
        trials.append({"properties": props, "pinned_cpu": cpu if pinned else None, "steps": steps, "wall_s": wall,
                       "ns_per_day": steps * TIMESTEP_PS / 1000.0 / (wall / 86400.0)})
    best = max(trials, key=lambda t: t["ns_per_day"])
    return {"platform": platform.getName(), "best": best, "trials": trials}


class InterleavedMD:
    """Plain MD timed in short slices between hybrid cycles: the speed-up's denominator.

    These machines change speed by several times within minutes (other tenants),
    so plain MD timed once, before or after the hybrid run, can be off by that
    factor.  Timing a slice of plain MD after every hybrid cycle measures both
    over the same stretch of wall time.
    """

    def __init__(self, loaded, platform, properties: dict, seed: int, slice_ps: float,
                 pinned_cpu: int | None = None) -> None:
        self.pinned_cpu = pinned_cpu  # the Context made and driven on this core (time_plain_md's trial)
        with pinned_to_cpu(pinned_cpu):
            self.simulation = simulation_for(loaded, platform, properties, seed)
            self.simulation.minimizeEnergy(maxIterations=100)
            self.simulation.step(200)  # warm-up, untimed
        self.steps = max(1, int(round(slice_ps / TIMESTEP_PS)))

    def time_slice(self, record: dict) -> None:
        """Run one slice; adds its steps and wall time to ``record`` (``steps``, ``wall_s``)."""
        with pinned_to_cpu(self.pinned_cpu):
            t0 = time.perf_counter()
            self.simulation.step(self.steps)
            wall = time.perf_counter() - t0
        record["wall_s"] = record.get("wall_s", 0.0) + wall
        record["steps"] = record.get("steps", 0) + self.steps
        record["ns_per_day"] = record["steps"] * TIMESTEP_PS / 1000.0 / (record["wall_s"] / 86400.0)


class _Progress:
    """A tqdm bar over simulated ps (silent when disabled)."""

    def __init__(self, total_ps: float, done_ps: float, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=round(total_ps, 3), initial=round(done_ps, 3), unit="ps", desc="hybrid")

    def update(self, ps: float, postfix: dict) -> None:
        if self.bar is not None:
            self.bar.update(round(ps, 3))
            self.bar.set_postfix(postfix, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _settings_record(request: RunRequest, model_hash: str) -> dict:
    return {**asdict(request), "model": request.resolved_model(), "model_sha256": model_hash}


def _check_resumable_logs(out: Path, n_frames: int, logged: dict | None) -> None:
    """Refuse to resume when ``energies.csv`` does not hold a header and one row per frame written
    (``n_frames``), or ``jumps.jsonl`` holds less than the checkpoint recorded (``logged``): a missing CSV had
    been found only after the whole run, and a lost row or record had been carried on silently."""
    remedy = ("Restore it from a copy, or start again in a new output directory (this run's trajectory and "
              "checkpoint are intact).")
    csv = out / "energies.csv"
    if not csv.exists():
        raise FileNotFoundError(f"{csv} is missing, though the run has written {n_frames} frames. {remedy}")
    lines = csv.read_text().splitlines()
    rows = sum(1 for line in lines if line and not line.startswith("#"))
    headed = bool(lines) and lines[0].startswith("#")
    if not headed or rows != n_frames:
        raise damaged_file(csv, f"it holds {rows} rows{'' if headed else ' and no header'} for the {n_frames} "
                                "frames written", remedy)
    size = logged.get("bytes") if isinstance(logged, dict) else None
    log = out / "jumps.jsonl"
    held = log.stat().st_size if log.exists() else 0
    if isinstance(size, int) and held < size:
        raise damaged_file(log, f"it holds {held} bytes, fewer than the {size} the checkpoint recorded (jump records "
                                "are lost)", remedy)


def run_hybrid(request: RunRequest, out: Path, progress: bool = True) -> dict:
    """Run the main job into ``out``; returns the summary (also written to ``summary.json``)."""
    import openmm.app as app

    from biomd_core.sampling.steering import SteeringConfig

    from .data.systems import get_system
    from .propagator import GenerativePropagator, HandBackConfig
    from .propagator.propagator import PropagatorCheckpointError
    from .trajectory_io import truncate_csv_after_step, truncate_dcd, write_pdb

    check_output_folder(out, "run", RUN_OUTPUTS, _EARLIER_RUN)  # before the minutes of setting up
    # the reference MD is read before the run (a wrong one had been found after it, and the folder was then
    # bound to the wrong --reference for good)
    reference_angles = reference_ramachandran(request.reference) if request.reference else None
    total_ps = parse_time_ps(request.time)
    loaded = get_system(request.system).load()
    platform, properties = select_platform(request.platform, n_atoms=loaded.topology.getNumAtoms())
    # a single-thread CPU Context is made and driven on one core (openmm_biomd.affinity), as plain MD's
    # pinned trial is: the hybrid's OpenMM work (reports, hand-back) gets the treatment its yardstick gets
    openmm_cpu = cpu_for(0) if platform.getName() == "CPU" and properties.get("Threads") == "1" else None
    with pinned_to_cpu(openmm_cpu):
        simulation = make_simulation(loaded, MD_SETTINGS, request.seed + 1, platform, properties)
        equilibrate(simulation, np.asarray(loaded.positions), TEMPERATURE_K, request.seed + 1, EQUILIBRATION_STEPS)

    propagator = GenerativePropagator(simulation, request.resolved_model(), jump_ps=request.jump_ps,
                                      openmm_cpu=openmm_cpu,
                                      solver=request.solver, ode_steps=request.ode_steps, seed=request.seed,
                                      steering=SteeringConfig(strength=request.steering) if request.steering else None,
                                      handback=HandBackConfig(frame_md_steps=request.frame_md_steps,
                                                              thermalize_steps=request.thermalize_steps),
                                      log_file=out / "jumps.jsonl", allow_transfer=request.allow_transfer)
    dt_model = propagator.time.frame_interval_ps
    report_ps = request.report_interval_ps or dt_model
    report_steps = int(round(report_ps / TIMESTEP_PS))
    total_steps = int(round(total_ps / TIMESTEP_PS))
    if total_steps % report_steps:
        raise ValueError(f"--time {request.time} is not a whole number of report intervals ({report_ps} ps)")

    settings = _settings_record(request, propagator.model_hash)
    claim_output_folder(out, "run", RUN_OUTPUTS, _EARLIER_RUN)
    progress_file, checkpoint = out / "progress.json", out / "checkpoint.zip"
    done = {"step": 0, "wall_s": 0.0, "md": None, "settings": settings}
    earlier = read_json(progress_file) if progress_file.exists() else None
    if earlier is not None:
        # compared even without a checkpoint: a run under other settings would delete this one's trajectory
        recorded = earlier.get("settings") if isinstance(earlier, dict) else None
        refuse_other_settings(out, recorded if isinstance(recorded, dict) else {}, settings, "a run", "resume it")
    if earlier is not None and checkpoint.exists():
        done = earlier
        try:
            state = propagator.load_checkpoint(checkpoint)  # also cuts jumps.jsonl back to the checkpoint's records
        except PropagatorCheckpointError as exc:
            raise PropagatorCheckpointError(f"{exc}. Restore it from a copy, or start again in a new output "
                                            "directory") from exc
        done["step"] = simulation.currentStep  # the checkpoint is the truth (a kill may fall between the two writes)
        truncate_dcd(out / "trajectory.dcd", done["step"] // report_steps)
        truncate_csv_after_step(out / "energies.csv", done["step"])
        _check_resumable_logs(out, done["step"] // report_steps, state.get("log"))
    elif earlier is not None and earlier.get("step"):
        # steps are recorded only after the checkpoint that holds them is written (below): it is lost, and a fresh
        # start would delete the trajectory
        raise PropagatorCheckpointError(
            f"{checkpoint} is missing, but {progress_file} records {earlier['step']} steps run: the run resumes only "
            "from its checkpoint, and starting it afresh would delete its trajectory. Restore the checkpoint from a "
            "copy, or start again in a new output directory (or, for a run killed during its first checkpoint by a "
            "version that wrote progress.json first, delete progress.json to start it again here)")
    else:  # a new run, or one killed before its first checkpoint: start again
        for stale in ("trajectory.dcd", "energies.csv", "jumps.jsonl"):
            (out / stale).unlink(missing_ok=True)
        _write_json(progress_file, done)  # the folder's settings, before any output (a kill now is recognised)
    resuming = done["step"] > 0

    if done.get("md") is None:
        done["md"] = time_plain_md(loaded, request.platform, request.md_benchmark_ps, request.seed)
    interleaved = None
    if request.md_interleave_ps > 0:
        interleaved = InterleavedMD(loaded, platform, done["md"]["best"]["properties"], request.seed + 2,
                                    request.md_interleave_ps, pinned_cpu=done["md"]["best"].get("pinned_cpu"))
        done.setdefault("md_interleaved", {})
    write_pdb(out / "topology.pdb", loaded.topology, np.asarray(loaded.positions))

    simulation.reporters.append(app.DCDReporter(str(out / "trajectory.dcd"), report_steps, append=resuming))
    simulation.reporters.append(app.StateDataReporter(
        str(out / "energies.csv"), report_steps, step=True, time=True, potentialEnergy=True,
        kineticEnergy=True, temperature=True, append=resuming))

    cycle_steps = propagator.jump_steps + propagator.handback.relax_steps  # one cycle between checkpoints
    bar = _Progress(total_ps, done["step"] * TIMESTEP_PS, progress)
    try:
        while simulation.currentStep < total_steps:
            t0 = time.perf_counter()
            steps = min(cycle_steps, total_steps - simulation.currentStep)
            propagator.step(steps)
            done["wall_s"] += time.perf_counter() - t0
            if interleaved is not None:
                interleaved.time_slice(done["md_interleaved"])
            done["step"] = simulation.currentStep
            done["settings"] = settings
            # the checkpoint first: a kill between the two leaves it ahead of progress.json, which a resume
            # corrects (it is the truth), and progress.json never records steps that no checkpoint holds
            propagator.save_checkpoint(checkpoint)
            _write_json(progress_file, done)
            stats = propagator.statistics
            bar.update(steps * TIMESTEP_PS, {"accepted": f"{stats.jumps_accepted}/{stats.jumps_attempted}"})
    finally:
        bar.close()  # OpenMM's DCD and StateData reporters flush after every report

    summary = _summary(request, propagator, done, total_ps, report_ps, out)
    if request.reference:
        summary.update(reference=request.reference,
                       ramachandran_jsd_vs_reference=ramachandran_jsd_vs_reference(out, reference_angles))
    _write_json(out / "summary.json", summary)
    from .run_report import write_report

    write_report(out, summary)
    return summary


def _summary(request: RunRequest, propagator, done: dict, total_ps: float, report_ps: float, out: Path) -> dict:
    import mdtraj

    stats = propagator.summary()
    md = done["md"]
    wall = done["wall_s"]
    hybrid = total_ps / 1000.0 / (wall / 86400.0) if wall > 0 else None
    sliced = done.get("md_interleaved") or {}
    best = md["best"]
    setting = (f"fastest setting: {best['properties'].get('Threads', '?')} thread(s)"
               + (f", pinned to CPU {best['pinned_cpu']}" if best.get("pinned_cpu") is not None else "")
               if md["platform"] == "CPU" else "fastest setting")
    if sliced.get("steps"):
        md_rate = sliced["ns_per_day"]
        method = (f"interleaved: {request.md_interleave_ps:g} ps of plain MD timed after every hybrid cycle "
                  f"({sliced['steps'] * TIMESTEP_PS:g} ps in {sliced['wall_s']:.1f} s), {setting}")
    else:
        md_rate = md["best"]["ns_per_day"]
        method = f"one {md['best']['steps'] * TIMESTEP_PS:g} ps timing before the hybrid run, {setting}"
    with quiet_c_stdout():
        n_frames = len(mdtraj.open(str(out / "trajectory.dcd")))
    return {
        "system": request.system,
        "model": propagator.model_label,
        "model_sha256": propagator.model_hash,
        "platform": md["platform"],
        "platform_properties": md["best"]["properties"],
        "md_pinned_cpu": md["best"].get("pinned_cpu"),
        "openmm_cpu": propagator.openmm_cpu,
        "seed": request.seed,
        "simulated_ps": total_ps,
        "wall_s": wall,
        "hybrid_ns_per_day": hybrid,
        "md_ns_per_day": md_rate,
        "md_timing_method": method,
        "md_upfront_ns_per_day": md["best"]["ns_per_day"],
        "md_timing": md["trials"],
        "speedup": hybrid / md_rate if hybrid else None,
        "frame_interval_ps": report_ps,
        "n_frames": n_frames,
        "jumps_attempted": stats["jumps_attempted"],
        "jumps_accepted": stats["jumps_accepted"],
        "jumps_shortened": stats["jumps_shortened"],
        "jumps_fallback": stats["jumps_fallback"],
        "acceptance": stats["acceptance"],
        "fallback_md_ps": stats["fallback_md_ps"],
        "generated_ps": stats["generated_ps"],
        "handback_md_ps": stats["relax_md_ps"],
        "remainder_md_ps": stats["remainder_md_ps"],
        "retries": stats["retries"],
        "rejections": stats["rejections"],
        "jump_ps": stats["jump_ps"],
        "solver": request.solver,
        "ode_steps": request.ode_steps,
        "steering": request.steering,
        "frame_md_steps": request.frame_md_steps,
        "frame_md_workers": propagator.thermalizer.workers if propagator.thermalizer else 0,
        "thermalize_steps": request.thermalize_steps,
        "model_frame_interval_ps": stats["frame_interval_ps"],
        "wall_breakdown_s": {"generation_and_gate": stats["generation_wall_s"],
                             "handback": stats["handback_wall_s"], "md": stats["md_wall_s"],
                             "frame_md": stats["frame_md_wall_s"], "reports": stats["report_wall_s"]},
        "timestep_ps": TIMESTEP_PS,
        "temperature_k": TEMPERATURE_K,
    }


def reference_ramachandran(reference: str | Path) -> np.ndarray:
    """(φ, ψ) of every frame of reference MD (a generate-data directory), ``[F, R, 2]`` rad."""
    import mdtraj

    from biomd_core.evaluation.metrics import ramachandran_angles

    from .data.md import iter_replica_trajectories

    return ramachandran_angles(mdtraj.join(list(iter_replica_trajectories(reference))))


def ramachandran_jsd_vs_reference(run_dir: Path, reference: str | Path | np.ndarray) -> float:
    """Ramachandran JSD of ``run_dir/trajectory.dcd`` against reference MD.

    ``reference``: a generate-data directory, or its :func:`reference_ramachandran` angles when
    several runs are compared with the same reference (read once).
    """

    from biomd_core.evaluation.metrics import ramachandran_angles, ramachandran_jsd

    traj = load_quietly(run_dir / "trajectory.dcd", top=str(run_dir / "topology.pdb"))
    ref = reference if isinstance(reference, np.ndarray) else reference_ramachandran(reference)
    return ramachandran_jsd(ramachandran_angles(traj), ref)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)
