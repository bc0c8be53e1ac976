"""``report.md`` and PNG plots of a ``biomd run`` directory.

- ``ramachandran.png``: φ/ψ histogram of the hybrid trajectory (systems with a
  peptide backbone);
- ``energy.png``: potential energy and temperature from ``energies.csv``;
- ``gate.png``: jump outcomes and gate rejections by reason, from ``jumps.jsonl``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from biomd_core.io.dcd import load_quietly
from biomd_core.io.json_lines import read_json_lines


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_ramachandran(out: Path) -> Path | None:

    from biomd_core.evaluation.metrics import ramachandran_angles

    traj = load_quietly(out / "trajectory.dcd", top=str(out / "topology.pdb"))
    try:
        angles = ramachandran_angles(traj)
    except ValueError:
        return None
    if angles.size == 0:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4))
    phi, psi = np.degrees(angles[..., 0]).ravel(), np.degrees(angles[..., 1]).ravel()
    ax.hist2d(phi, psi, bins=60, range=[[-180, 180], [-180, 180]], cmap="viridis", cmin=1)
    ax.set(xlabel="φ (deg)", ylabel="ψ (deg)", title=f"Ramachandran ({len(traj)} frames)")
    path = out / "ramachandran.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _read_energies(out: Path) -> dict[str, np.ndarray]:
    rows = [ln for ln in (out / "energies.csv").read_text().splitlines() if ln.strip()]
    header = [h.strip('#" ') for h in rows[0].split(",")]
    data = np.array([[float(x) for x in ln.split(",")] for ln in rows[1:]]).reshape(-1, len(header))
    return {name: data[:, i] for i, name in enumerate(header)}


def plot_energy(out: Path) -> Path:
    columns = _read_energies(out)
    time_ps = columns["Time (ps)"]
    plt = _pyplot()
    fig, (a, b) = plt.subplots(2, 1, figsize=(7, 4.5), sharex=True)
    a.plot(time_ps, columns["Potential Energy (kJ/mole)"], lw=0.6)
    a.set(ylabel="potential (kJ/mol)")
    b.plot(time_ps, columns["Temperature (K)"], lw=0.6, color="tab:red")
    b.set(xlabel="time (ps)", ylabel="temperature (K)")
    a.set_title("Energy at each reported frame")
    path = out / "energy.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def read_jump_log(out: Path) -> list[dict]:
    """The run's jump records (``jumps.jsonl``; a last record cut short by a kill is left out)."""
    return read_json_lines(out / "jumps.jsonl", "Restore it from a copy, or delete it and rerun the same "
                                                "`biomd run` to write the report without its jump outcomes")


def plot_gate(out: Path, summary: dict) -> Path:
    records = read_jump_log(out)
    outcomes = {name: sum(r.get("outcome") == name for r in records) for name in ("accepted", "shortened", "fallback")}
    rejections = summary.get("rejections") or {}
    plt = _pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.2))
    a.bar(list(outcomes), list(outcomes.values()), color=["tab:green", "tab:orange", "tab:red"])
    a.set(title="jump outcomes", ylabel="jumps")
    if rejections:
        b.bar(list(rejections), list(rejections.values()), color="tab:gray")
    b.set(title="frames rejected by the gate, by check", ylabel="frames")
    b.tick_params(axis="x", rotation=30)
    path = out / "gate.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _fmt(value, spec: str = ".1f") -> str:
    return "—" if value is None else format(value, spec)


def write_report(out: Path, summary: dict) -> Path:
    """Plots plus ``report.md`` summarising ``summary``."""
    plots = [p for p in (plot_ramachandran(out), plot_energy(out), plot_gate(out, summary)) if p is not None]
    s = summary
    md_best = s.get("platform_properties", {})
    lines = [
        f"# Hybrid run: {s['system']}",
        "",
        f"Model `{s['model']}` (sha256 `{s['model_sha256'][:12]}…`), platform {s['platform']} {md_best}, "
        f"seed {s['seed']}.",
        "",
        "| quantity | value |",
        "|---|---:|",
        f"| simulated time (ps) | {_fmt(s['simulated_ps'])} |",
        f"| wall time (s) | {_fmt(s['wall_s'])} |",
        f"| hybrid speed (ns/day) | {_fmt(s['hybrid_ns_per_day'], ',.0f')} |",
        f"| plain OpenMM MD, same machine and platform (ns/day; {s['md_timing_method']}) | "
        f"{_fmt(s['md_ns_per_day'], ',.0f')} |",
        f"| **speed-up** | **{_fmt(s['speedup'])}×** |",
        f"| frames written (every {s['frame_interval_ps']} ps) | {s['n_frames']} |",
        f"| jumps attempted / accepted / shortened / fell back to MD | {s['jumps_attempted']} / "
        f"{s['jumps_accepted']} / {s['jumps_shortened']} / {s['jumps_fallback']} |",
        f"| generated time (ps) | {_fmt(s['generated_ps'])} |",
        f"| fallback MD (ps) | {_fmt(s['fallback_md_ps'])} |",
        f"| frames re-drawn after a gate rejection | {s['retries']} |",
    ]
    if "ramachandran_jsd_vs_reference" in s:
        lines.append(f"| Ramachandran JSD vs reference MD | {s['ramachandran_jsd_vs_reference']:.3f} |")
    breakdown = s.get("wall_breakdown_s", {})
    lines += ["", "Wall time by stage (s): " + ", ".join(f"{k} {v:.1f}" for k, v in breakdown.items()), ""]
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
