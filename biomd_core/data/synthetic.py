"""Synthetic trajectories of processes with known statistics.

Particles each held in a 3-D harmonic well (an Ornstein–Uhlenbeck process,
overdamped Langevin dynamics): sampled *exactly* at any frame interval, with
stationary variance ``σ²`` per coordinate and autocorrelation
``exp(−Δt/τ_relax)``.  Used by the tests (does a trained model reproduce the
stationary variance?) and by the engine demo.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class HarmonicParticles:
    """Independent particles in harmonic wells at fixed sites.

    Attributes
    ----------
    sites_nm : ``[N, 3]`` well centres, nm
    sigma_nm : stationary standard deviation per coordinate, nm (``sqrt(kT/k)``)
    relaxation_ps : correlation time ``γ/k``, ps
    """

    sites_nm: np.ndarray
    sigma_nm: float
    relaxation_ps: float

    @classmethod
    def square(cls, n_particles: int = 4, spacing_nm: float = 0.5, sigma_nm: float = 0.05, relaxation_ps: float = 5.0):
        """Particles on a planar grid ``spacing_nm`` apart (first two coordinates)."""
        side = int(np.ceil(np.sqrt(n_particles)))
        sites = np.array([[i % side, i // side, 0.0] for i in range(n_particles)], dtype=float) * spacing_nm
        # Break the grid's mirror symmetry so orientation is learnable from one frame.
        sites[:, 2] = np.linspace(0.0, 0.3 * spacing_nm, n_particles)
        return cls(sites, sigma_nm, relaxation_ps)

    @property
    def n_particles(self) -> int:
        return len(self.sites_nm)

    def stationary(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` independent frames ``[n, N, 3]`` from the stationary distribution, nm."""
        return self.sites_nm + self.sigma_nm * rng.standard_normal((n, self.n_particles, 3))

    def trajectories(self, n_traj: int, n_frames: int, frame_interval_ps: float, seed: int = 0) -> list[np.ndarray]:
        """Exact OU trajectories: list of ``[n_frames, N, 3]`` float32 arrays, nm."""
        rng = np.random.default_rng(seed)
        a = np.exp(-frame_interval_ps / self.relaxation_ps)
        kick = self.sigma_nm * np.sqrt(1.0 - a * a)
        out = []
        for _ in range(n_traj):
            x = np.empty((n_frames, self.n_particles, 3))
            x[0] = self.stationary(1, rng)[0]
            for f in range(1, n_frames):
                x[f] = self.sites_nm + a * (x[f - 1] - self.sites_nm) + kick * rng.standard_normal((self.n_particles, 3))
            out.append(x.astype(np.float32))
        return out

    def topology(self):
        """An mdtraj Topology of argon-like particles ``P1..PN``, one residue ``PAR`` each, no bonds."""
        import mdtraj

        top = mdtraj.Topology()
        chain = top.add_chain()
        for i in range(self.n_particles):
            top.add_atom(f"P{i + 1}", mdtraj.element.argon, top.add_residue("PAR", chain))
        return top
