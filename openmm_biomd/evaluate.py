"""``biomd evaluate``: quality of generated trajectories against reference MD.

Reads generated trajectories (a ``biomd sample`` output directory) and
reference MD (a ``biomd generate-data`` run directory), computes the metrics
of :mod:`biomd_core.evaluation.metrics` on the modelled atoms, the potential
energy of frames after a short minimisation (OpenMM), and writes
``metrics.json``, ``report.md`` and PNG plots into the output directory.

Where the reference has several replicas, the same metrics between its two
halves give the *floor*: what two independent MD runs of that length differ by.

Generated dissociation paths (a ``biomd unbind`` output) are judged against
reference paths (a ``biomd generate-data --dissociation`` campaign): Success@1,
Success@10 and the path RMSD to the nearest reference path
(:mod:`openmm_biomd.enhanced.path_metrics`), with a plot of the ligand–pocket
distance along every path.  Either kind of input, or both, in one call.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from biomd_core.config import require_at_least
from biomd_core.evaluation import metrics as M
from biomd_core.featurize.bond_lengths import check_bonds_fit
from biomd_core.io.dcd import dcd_cut_short, load_quietly
from biomd_core.io.json_values import json_safe
from biomd_core.io.output_folder import (
    abandon_output_folder,
    claim_output_folder,
    json_with_keys,
    recorded_settings,
    refuse_other_settings,
)

from .data.frame_checks import check_frames_sound
from .data.md import damaged_file
from .trajectory_io import read_topology

#: the files an evaluation writes into its folder (claimed with biomd_core.io.output_folder)
EVALUATE_OUTPUTS = ("metrics.json", "report.md", "ramachandran.png", "rmsf.png", "energy.png",
                    "unbinding_distance.png")


@dataclass(frozen=True)
class EvaluateRequest:
    """Inputs of an evaluation (paths as strings)."""

    generated: str | None = None
    reference: str | None = None
    paths: str | None = None
    reference_paths: str | None = None
    system: str | None = None
    energy_frames: int = 40
    minimise_iterations: int = 50
    tica_lag_frames: int = 10

    def __post_init__(self) -> None:
        require_at_least([("--energy-frames", self.energy_frames, 1),
                          # (0 is OpenMM's "until converged", and had been recorded as 0)
                          ("--minimise-iterations", self.minimise_iterations, 1),
                          ("tica_lag_frames", self.tica_lag_frames, 1)])


def load_generated(directory: Path):
    """The generated frames of a ``biomd sample`` output: list of mdtraj Trajectories (modelled atoms), each
    without the frames it was given (the start structure, and the end one of a tps or interpolate sample),
    which had been pooled with the generated ones."""

    top = directory / "topology.pdb"
    files = [directory / "trajectory.dcd"] + sorted(directory.glob("replica_*.dcd"))
    files = [f for f in files if f.exists()]
    if not top.exists() or not files:
        raise FileNotFoundError(f"{directory} is not a biomd sample output (needs topology.pdb and trajectory.dcd)")
    remedy = "Restore it from a copy, or sample again into a new folder."
    topology = read_topology(top, "the topology of the sample")
    # the frames the sample was given: its start, and for the tps and interpolate tasks its end (its summary
    # says the task; one from before summaries said it counts as a forecast)
    summary = recorded_settings(directory, "summary.json") or {}
    if summary.get("status") == "writing":
        raise ValueError(f"the sample in {directory} was stopped while its trajectories were written: run the same "
                         "biomd sample command again to write them whole")
    given_end = summary.get("task") in ("tps", "interpolate")
    replicas = (summary.get("request") or {}).get("replicas")
    if isinstance(replicas, int) and replicas >= 1:  # (a deleted replica had been scored on the others, silently)
        files = [directory / "trajectory.dcd"] + [directory / f"replica_{r:03d}.dcd" for r in range(1, replicas)]
        for path in files:
            if not path.exists():
                raise damaged_file(path, f"it is missing, but summary.json records {replicas} replicas", remedy)
    trajectories = []
    for path in files:
        if why := dcd_cut_short(path):  # (a file cut short had been scored on the frames mdtraj still read)
            raise damaged_file(path, why, remedy)
        try:
            traj = load_quietly(path, top=topology)
        except (OSError, ValueError) as exc:  # (garbage in a DCD was mdtraj's bare "Could not open file")
            raise damaged_file(path, f"it cannot be read with {top.name} ({exc})", remedy) from None
        check_frames_sound(traj.xyz, f"generated trajectory {path}")  # (NaN: numpy's "SVD did not converge")
        # the first frame is the start structure: it fits the topology unless that is another one (which had
        # silently lost the Ramachandran and TICA metrics); later frames are the model's, scored as they are
        check_bonds_fit(traj.xyz[:1], [[a.index, b.index] for a, b in traj.topology.bonds],
                        f"generated trajectory {path} (topology {top})")
        generated = traj[1:-1] if given_end else traj[1:]
        if generated.n_frames < 1:
            raise ValueError(f"generated trajectory {path} holds only the frames it was given: nothing generated "
                             "to score")
        trajectories.append(generated)
    return trajectories


def load_reference(directory: Path, n_atoms: int):
    """Reference replicas restricted to the modelled atoms, and the run's metadata."""
    from biomd_core.featurize import featurize

    from .data.md import iter_replica_trajectories, read_metadata

    meta = read_metadata(directory)
    replicas = [t for t in iter_replica_trajectories(directory) if t.n_frames > 0]
    if not replicas:
        raise ValueError(f"{directory} holds no frames yet")
    for replica in replicas:
        check_frames_sound(replica.xyz, f"reference MD in {directory}")
    atoms = featurize(replicas[0].topology).atom_indices
    if len(atoms) != n_atoms:
        raise ValueError(
            f"the reference models {len(atoms)} atoms but the generated trajectories have {n_atoms}: not the same system"
        )
    return [t.atom_slice(atoms) for t in replicas], meta, atoms


def _halves(per_replica: list) -> tuple[list, list]:
    """Two independent halves of per-replica arrays: by replica when there are several, else by time."""
    if len(per_replica) >= 2:
        mid = len(per_replica) // 2
        return per_replica[:mid], per_replica[mid:]
    x = per_replica[0]
    return [x[: len(x) // 2]], [x[len(x) // 2 :]]


def _tica_jsd(ref_features: np.ndarray, gen_features: np.ndarray, lag: int) -> dict:
    """``{"tica_jsd": value}``, or ``{"tica_jsd": None, "tica_skipped": why}`` when the reference is too
    short for its feature count (a rank-deficient covariance gives arbitrary components: e.g. 15 ps of
    T4 lysozyme against 648 torsion features)."""
    frames, n_features = ref_features.shape
    if frames <= lag + n_features:
        return {"tica_jsd": None, "tica_skipped": f"the reference has {frames} frames; TICA on {n_features} "
                                                  f"features at lag {lag} needs more than {lag + n_features}"}
    return {"tica_jsd": M.tica_jsd(ref_features, gen_features, lag)}


def stacked_xyz(trajs: list) -> np.ndarray:
    """All frames of mdtraj trajectories, ``[F, N, 3]`` float64 nm."""
    return np.concatenate([t.xyz for t in trajs]).astype(np.float64)


def ligand_atoms(topology, system_name: str | None) -> np.ndarray | None:
    """The ligand's atoms (indices of ``topology``, an mdtraj one) where the system names its ligand residue (a
    bundled system), else ``None``: the featurizer's ligand mask counts every non-standard residue, and had made
    the host of host–guest a ligand too."""
    from .data.systems import BUNDLED_SYSTEMS

    bundled = BUNDLED_SYSTEMS.get(system_name or "")
    residue = getattr(bundled, "ligand_residue", None)
    if not residue:
        return None
    return np.array([a.index for a in topology.atoms if a.residue.name == residue], dtype=np.int64)


def structural_metrics(gen: list, ref: list, gen_xyz: np.ndarray, ref_xyz: np.ndarray, tica_lag: int,
                       ligand: np.ndarray | None = None) -> dict:
    """Distribution, flexibility, geometry and clash metrics of ``gen`` against ``ref``.

    ``gen``/``ref`` are mdtraj lists (for backbone angles); ``*_xyz`` their :func:`stacked_xyz`; ``ligand``
    the ligand's atoms (default: the featurizer's ligand mask, every non-standard residue).
    """
    from biomd_core.featurize import featurize

    graph = featurize(ref[0].topology)
    bonds = np.asarray(graph.bonds)
    out: dict = {"generated_frames": int(len(gen_xyz)), "reference_frames": int(len(ref_xyz))}
    out.update(M.geometry_errors(gen_xyz, ref_xyz, bonds))
    heavy = np.flatnonzero(np.asarray(graph.element_labels) != "H")
    ligand = np.flatnonzero(graph.ligand_mask) if ligand is None else np.asarray(ligand, dtype=np.int64)
    out["ligand_atoms"] = int(len(ligand))
    protein = np.setdiff1d(heavy, ligand)
    if len(protein) > 2:
        out["protein_rmsf_pearson_r"] = M.pearson_r(M.rmsf(ref_xyz, protein)[protein], M.rmsf(gen_xyz, protein)[protein])
    if len(ligand) > 2:
        out["ligand_rmsf_pearson_r"] = M.pearson_r(M.rmsf(ref_xyz, ligand)[ligand], M.rmsf(gen_xyz, ligand)[ligand])
        elements = list(graph.element_labels)
        out["ligand_clash_score"] = M.clash_score(gen_xyz, M.clash_pairs(graph.n_atoms, bonds, (ligand, ligand)), elements)
        if len(protein):
            pairs = M.clash_pairs(graph.n_atoms, bonds, (protein, ligand))
            out["protein_ligand_clash_score"] = M.clash_score(gen_xyz, pairs, elements)
    try:
        gen_angles = np.concatenate([M.ramachandran_angles(t) for t in gen])
        ref_per_traj = [M.ramachandran_angles(t) for t in ref]
    except ValueError:
        features = lambda x: _distance_features(x, heavy)  # noqa: E731  (no backbone: TICA on distances)
        out.update(_tica_jsd(features(ref_xyz), features(gen_xyz), tica_lag))
        return out
    ref_angles = np.concatenate(ref_per_traj)
    out["ramachandran_jsd"] = M.ramachandran_jsd(gen_angles, ref_angles)
    out.update(_tica_jsd(M.torsion_features(ref_angles), M.torsion_features(gen_angles), tica_lag))
    half_a, half_b = _halves(ref_per_traj)
    out["ramachandran_jsd_md_floor"] = M.ramachandran_jsd(np.concatenate(half_a), np.concatenate(half_b))
    out["_angles"] = (gen_angles, ref_angles)
    return out


def _distance_features(xyz: np.ndarray, atoms: np.ndarray, max_atoms: int = 40) -> np.ndarray:
    pick = atoms[np.linspace(0, len(atoms) - 1, min(max_atoms, len(atoms))).astype(int)]
    iu = np.triu_indices(len(pick), 1)
    d = np.linalg.norm(xyz[:, pick, None] - xyz[:, None, pick], axis=-1)
    return d[:, iu[0], iu[1]]


def minimised_energies(system_name: str, atoms: np.ndarray, frames_nm: np.ndarray, iterations: int) -> np.ndarray:
    """Potential energy (kJ/mol) of each frame after ``iterations`` of L-BFGS minimisation (CPU platform)."""
    import openmm
    from openmm import unit

    from .data.md import select_platform
    from .data.systems import get_system

    loaded = get_system(system_name).load()
    if len(atoms) != loaded.system.getNumParticles():
        raise ValueError(f"energies need every particle of the system modelled: {system_name} has "
                         f"{loaded.system.getNumParticles()} particles, the trajectories {len(atoms)} atoms. Give the "
                         "--system the trajectories are of (a system in explicit solvent has unmodelled water: its "
                         "energies cannot be computed from the modelled atoms)")
    # CPU: one thread for a dipeptide, every core for a protein (select_platform's rule)
    platform, properties = select_platform("CPU", n_atoms=len(atoms))
    integrator = openmm.VerletIntegrator(0.001)
    context = openmm.Context(loaded.system, integrator, platform, properties)
    energies = []
    for frame in frames_nm:
        context.setPositions(np.ascontiguousarray(frame, dtype=np.float64))
        openmm.LocalEnergyMinimizer.minimize(context, 10.0, iterations)
        energies.append(context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
    return np.array(energies)


def energy_metrics(system_name: str, atoms, gen_xyz: np.ndarray, ref_xyz: np.ndarray, n: int, iterations: int) -> dict:
    # a stream each: the reference's frames had depended on how many generated frames were drawn before them
    def pick(x: np.ndarray, seed: int) -> np.ndarray:
        return x[np.random.default_rng(seed).choice(len(x), size=min(n, len(x)), replace=False)]

    gen_e = minimised_energies(system_name, atoms, pick(gen_xyz, 0), iterations)
    ref_e = minimised_energies(system_name, atoms, pick(ref_xyz, 1), iterations)
    finite = np.isfinite(gen_e)
    return {
        "energy_generated_mean_kj_mol": float(np.mean(gen_e[finite])) if finite.any() else float("nan"),
        "energy_reference_mean_kj_mol": float(np.mean(ref_e)),
        "energy_reference_std_kj_mol": float(np.std(ref_e)),
        "energy_generated_fraction_above_reference_p99": float(np.mean(gen_e > np.percentile(ref_e, 99))),
        "energy_minimise_iterations": iterations,
        "_energies": (gen_e, ref_e),
    }


def plot(out: Path, results: dict, gen_xyz: np.ndarray, ref_xyz: np.ndarray) -> list[str]:
    """PNG plots: Ramachandran maps side by side, RMSF profiles, energy histograms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    if "_angles" in results:
        gen_a, ref_a = results["_angles"]
        fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), sharey=True)
        for ax, ang, title in ((axes[0], ref_a, "reference MD"), (axes[1], gen_a, "generated")):
            ax.hist2d(np.degrees(ang[:, 0, 0]), np.degrees(ang[:, 0, 1]), bins=72, range=[[-180, 180], [-180, 180]], cmap="viridis")
            ax.set(title=title, xlabel="φ (deg)", xlim=(-180, 180), ylim=(-180, 180))
        axes[0].set_ylabel("ψ (deg)")
        fig.tight_layout()
        fig.savefig(out / "ramachandran.png", dpi=110)
        plt.close(fig)
        written.append("ramachandran.png")
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(M.rmsf(ref_xyz) * 10, label="reference MD")
    ax.plot(M.rmsf(gen_xyz) * 10, label="generated")
    ax.set(xlabel="atom", ylabel="RMSF (Å)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "rmsf.png", dpi=110)
    plt.close(fig)
    written.append("rmsf.png")
    if "_energies" in results:
        gen_e, ref_e = results["_energies"]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        finite = gen_e[np.isfinite(gen_e)]
        bins = np.linspace(min(ref_e.min(), finite.min(initial=ref_e.min())), max(ref_e.max(), finite.max(initial=ref_e.max())), 40)
        ax.hist(ref_e, bins=bins, alpha=0.6, density=True, label="reference MD")
        ax.hist(finite, bins=bins, alpha=0.6, density=True, label="generated")
        ax.set(xlabel="potential energy after minimisation (kJ/mol)", ylabel="density")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "energy.png", dpi=110)
        plt.close(fig)
        written.append("energy.png")
    return written


def run_evaluate(request: EvaluateRequest, out: Path) -> dict:
    """Compute all metrics and write ``metrics.json``, ``report.md`` and plots."""
    if bool(request.generated) != bool(request.reference) or bool(request.paths) != bool(request.reference_paths):
        raise ValueError("give generated trajectories with their reference MD (--generated with --reference) "
                         "and/or generated paths with reference paths (--paths with --reference-paths)")
    if not (request.generated or request.paths):
        raise ValueError("nothing to evaluate: give --generated/--reference and/or --paths/--reference-paths")
    # (another --generated had replaced the metrics there without a word)
    refuse_other_settings(out, recorded_settings(out, "metrics.json", "request"), asdict(request), "an evaluation",
                          "evaluate them again")
    created = not out.exists()
    marked = claim_output_folder(out, "evaluate", EVALUATE_OUTPUTS, json_with_keys("metrics.json", "plots"))
    public: dict = {"request": asdict(request), "plots": []}
    try:
        # every input is read and scored before any plot is drawn: a refused --paths had left the plots of the
        # new trajectories beside the metrics of the old ones
        drawings = []
        if request.paths:  # (cheap: its inputs are checked first)
            public["unbinding"], draw_paths = path_evaluation(Path(request.paths), Path(request.reference_paths))
            drawings.append(draw_paths)
        if request.generated:
            scored, draw_trajectories = trajectory_evaluation(request)
            public.update(scored)
            drawings.insert(0, draw_trajectories)
        for draw in drawings:
            public["plots"] += draw(out)
    except BaseException:  # a refused evaluation leaves no folder of half the plots behind
        abandon_output_folder(out, "evaluate", created, marked)
        raise
    public = json_safe(public)  # (a bare NaN had made metrics.json invalid JSON)
    (out / "metrics.json").write_text(json.dumps(public, indent=2, allow_nan=False))
    (out / "report.md").write_text(report_markdown(public))
    return public


def trajectory_evaluation(request: EvaluateRequest) -> tuple[dict, Callable[[Path], list[str]]]:
    """Distribution, geometry and energy metrics of a ``biomd sample`` output against reference MD, and the
    function that draws their plots into a folder (returning the file names)."""
    gen = load_generated(Path(request.generated))
    ref, meta, atoms = load_reference(Path(request.reference), gen[0].n_atoms)
    gen_xyz, ref_xyz = stacked_xyz(gen), stacked_xyz(ref)
    recorded = meta.get("system")
    system_name = request.system or (recorded.get("name") if isinstance(recorded, dict) else recorded)
    results = structural_metrics(gen, ref, gen_xyz, ref_xyz, request.tica_lag_frames,
                                 ligand_atoms(ref[0].topology, system_name))
    if system_name:
        results.update(
            energy_metrics(system_name, atoms, gen_xyz, ref_xyz, request.energy_frames, request.minimise_iterations)
        )
    public = {k: v for k, v in results.items() if not k.startswith("_")}
    public.update({"generated": request.generated, "reference": request.reference, "system": system_name})
    return public, lambda out: plot(out, results, gen_xyz, ref_xyz)


def geometry_evaluation(generated: Path, reference: Path) -> dict:
    """Bond and angle errors alone (:func:`~biomd_core.evaluation.metrics.geometry_errors`) of a
    ``biomd sample`` output against reference MD, e.g. for raw network output beside the full evaluation."""
    from biomd_core.featurize import featurize

    gen = load_generated(Path(generated))
    ref, _, _ = load_reference(Path(reference), gen[0].n_atoms)
    bonds = np.asarray(featurize(ref[0].topology).bonds)
    return M.geometry_errors(stacked_xyz(gen), stacked_xyz(ref), bonds)


def path_evaluation(paths_dir: Path, reference_dir: Path) -> tuple[dict, Callable[[Path], list[str]]]:
    """Success@k and path RMSD of a ``biomd unbind`` run against a dissociation campaign, and the function that
    draws the distance plot into a folder."""

    from biomd_core.featurize import featurize

    from .enhanced.path_metrics import (
        campaign_paths,
        generated_paths,
        pocket_of,
        read_unbind_summary,
        unbinding_metrics,
    )

    summary = read_unbind_summary(paths_dir)
    if not (reference_dir / "topology.pdb").exists() or not any(reference_dir.glob("seed_*/result.json")):
        # (an unbind folder had been "no path ... left the pocket")
        raise FileNotFoundError(f"{reference_dir} is not a dissociation campaign: give the folder of "
                                "`biomd generate-data --dissociation` (seed_*/result.json)")
    references = campaign_paths(reference_dir)
    if not references:
        raise ValueError(f"no path in {reference_dir} left the pocket: nothing to compare with")
    n_modelled = read_topology(paths_dir / "topology.pdb", "the topology of the unbind run").n_atoms
    if references[0].shape[1] != n_modelled:  # whole-system references: keep the modelled (solute) atoms
        campaign = read_topology(reference_dir / "topology.pdb", "the topology of the campaign")
        atoms = featurize(campaign.to_openmm()).atom_indices
        if len(atoms) != n_modelled:
            raise ValueError(f"the reference paths model {len(atoms)} atoms, the generated paths {n_modelled}: "
                             "not the same system")
        references = [r[:, atoms] for r in references]
    generated = generated_paths(paths_dir, summary)
    metrics = unbinding_metrics(paths_dir, references, paths=generated)
    metrics.update({"paths": str(paths_dir), "reference_paths": str(reference_dir)})
    spacing = campaign_frame_spacing_ps(reference_dir)

    def draw(out: Path) -> list[str]:
        plot_path_distances(out / "unbinding_distance.png", pocket_of(summary), generated, references, summary,
                            spacing)
        return ["unbinding_distance.png"]

    return metrics, draw


def campaign_frame_spacing_ps(directory: Path) -> float | None:
    """Time between the frames of a dissociation campaign's paths (ps; its first seed's ``path.dcd``
    header), ``None`` when the file does not say."""
    from .data.md import dcd_frame_spacing_ps, read_dcd_header

    for dcd in sorted(directory.glob("seed_*/path.dcd")):
        return dcd_frame_spacing_ps(read_dcd_header(dcd))
    return None


def plot_path_distances(png: Path, pocket, generated: dict, references: list, summary: dict,
                        reference_spacing_ps: float | None = None) -> None:
    """Ligand–pocket centroid distance against path time: reference paths grey, generated ones coloured.

    ``reference_spacing_ps``: the reference paths' own frame spacing (default the generated paths'; a 2 ps
    campaign had been drawn on the 1 ps time axis of the generated paths)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dt = float(summary.get("frame_interval_ps", 1.0))
    ref_dt = dt if reference_spacing_ps is None else reference_spacing_ps
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for i, ref in enumerate(references):
        d = pocket.distances(ref)
        ax.plot(np.arange(len(d)) * ref_dt, d, color="0.6", lw=1, label="reference paths" if i == 0 else None)
    for attempt, path in generated.items():
        d = pocket.distances(path)
        ax.plot(np.arange(len(d)) * dt, d, lw=1.2, label=f"generated #{attempt}")
    ax.axhline(pocket.exit_distance_nm, color="k", ls="--", lw=0.8, label="exit distance")
    ax.set(xlabel="time along path (ps)", ylabel="ligand–pocket distance (nm)",
           title=f"{summary.get('successes', 0)}/{summary.get('attempts', 0)} generated paths left the pocket")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


#: keys of an evaluation's metrics.json that are inputs, not metrics (left out of the report's table when null)
_NOT_METRICS = ("generated", "reference", "system", "request", "plots", "unbinding")


def report_markdown(m: dict) -> str:
    lines = ["# BioMD evaluation", ""]
    if "generated" in m:
        lines += [
            f"Generated: `{m['generated']}` ({m['generated_frames']} frames); reference MD: `{m['reference']}` "
            f"({m['reference_frames']} frames).", "",
            "| metric | value |", "|---|---:|",
        ]
        # a metric that could not be computed (NaN, null in metrics.json) is shown as n/a, not left out
        lines += [f"| {key} | {'n/a' if value is None else format(value, '.4g')} |" for key, value in m.items()
                  if isinstance(value, float) or (value is None and key not in _NOT_METRICS)]
        lines.append("")
    if "unbinding" in m:
        u = m["unbinding"]
        rmsd = u["path_rmsd_to_nearest_reference_nm"]
        fmt = lambda x, spec=".3f": "n/a" if x is None else format(x, spec)  # noqa: E731
        lines += [
            f"Generated paths: `{u['paths']}`; reference paths: `{u['reference_paths']}` ({u['n_reference_paths']}).", "",
            "| metric | value |", "|---|---:|",
            f"| paths that left the pocket | {u['successes']}/{u['attempts']} ({u['n_starts']} starts) |",
            f"| Success@1 | {fmt(u['success_at_1'], '.2f')} |",
            f"| Success@10 | {fmt(u['success_at_10'], '.2f')} |",
            f"| path RMSD to nearest reference path, mean / median (nm, n={rmsd['n']}) | "
            f"{fmt(rmsd['mean'])} / {fmt(rmsd['median'])} |",
            f"| largest ligand–pocket distance reached (nm; exit at {u['exit_distance_nm']:.2f}) | "
            f"{max((d for d in u['max_distance_nm'] if d is not None), default=float('nan')):.2f} |",
            "",
        ]
    lines += ["", *[f"![{p}]({p})" for p in m["plots"]], ""]
    return "\n".join(lines)
