"""``GenerativeJumpMove``: the propagator's gated generative jump as an openmmtools MCMC move.

openmmtools composes sampling from ``MCMCMove`` objects (``SequenceMove``,
``MCMCSampler``, ``multistate.ReplicaExchangeSampler``): a move receives a
``ThermodynamicState`` and a ``SamplerState``, takes a Context from a
``ContextCache`` and writes the new configuration back into the sampler state.
:class:`GenerativeJumpMove` does exactly the jump :class:`~.propagator.GenerativePropagator`
does — gated generation, hand-back (minimisation, velocities) and the short
relax MD — by running a real propagator on the cached Context.

How it reuses the propagator instead of copying it
--------------------------------------------------
The propagator wraps an ``openmm.app.Simulation``; openmmtools has Contexts, not
Simulations.  :class:`ContextSimulation` is the Simulation-shaped adapter the
propagator needs (``context``, ``integrator``, ``system``, ``topology``,
``reporters = []``, ``currentStep``, ``step(n)``, ``_usesPBC``).  The topology
comes from the move's constructor (openmmtools states carry none).  One
propagator is built (featurisation, gate energy model, bound network) per
``(Context, temperature)`` and cached (at most :data:`PROPAGATOR_CACHE_SIZE`,
least recently used first out), so repeated ``apply`` calls do not re-featurise.
The MD inside a cycle (hand-back thermalisation, relax MD, fallback MD) runs a
``LangevinMiddleIntegrator`` at the thermodynamic state's temperature
(``timestep``, ``collision_rate``), which openmmtools' cache may share with a
``LangevinDynamicsMove``'s Context.

Markov property and random numbers
----------------------------------
A move must depend on the sampler state only: between two applications the
replica may have been swapped or moved by another move.  Each ``apply``
therefore restarts the propagator's chain — its frame history is cut to the
current frame (what a freshly built propagator has) and its random stream is
reseeded with :meth:`GenerativeJumpMove.seed_for` ``(T, k)`` for the ``k``-th
application at temperature ``T`` — so the generated frames and the velocities
drawn are reproducible, differ between temperatures (replica-exchange states
get deep copies of one move) and do not repeat after a restart from storage
(``k`` is stored).  Stochastic MD inside the cycle (thermalisation, relax MD)
draws from the Context integrator's own random stream, as openmmtools'
Langevin moves do, and is not reproducible.  Both resets are
:meth:`GenerativePropagator.restart`.

Not a Metropolis–Hastings move (read this)
------------------------------------------
A generative proposal is not symmetric and its density is not evaluated (for a
flow it would need the ODE divergence), so this move applies **no**
Metropolis–Hastings correction and does **not** satisfy detailed balance
(DESIGN.md §4).  Its stationary distribution is whatever the model plus the
gate, minimisation and relax MD produce, not exactly Boltzmann.  Use it for
exploration and for seeding: alternated with ``LangevinDynamicsMove`` it lets
the dynamics re-equilibrate after every jump.  Inside replica exchange the
swaps stay correct (they are Metropolis steps on the current energies), but the
per-replica sampling, and so the ensembles the replicas report, is only
approximately Boltzmann.  The counters ``n_accepted``/``n_proposed`` count
jumps that passed the physics gate, not Metropolis acceptances.

Explicit solvent is refused
---------------------------
With atoms the model does not move (water, ions, an unmodelled partner), the
propagator adds a restraint force to the ``System`` to relax them around the
new solute.  Inside openmmtools that would change the thermodynamic state's
System under the ContextCache (and make the Context incompatible with every
other move's), so the move refuses such systems with
:class:`UnsupportedSystemError` at construction.  Use vacuum or implicit
solvent, or :class:`~.propagator.GenerativePropagator` on an
``openmm.app.Simulation`` for explicit solvent.

Serialisation
-------------
openmmtools stores moves through ``__getstate__``/``__setstate__``
(``openmmtools.utils.serialize``, the YAML inside a ``MultiStateReporter``).  The
state holds the model by shipped name or absolute path plus its weights' sha256,
the topology (a JSON string), every setting, the application counter and the
statistics — never the weights.  ``__setstate__`` reloads the model and refuses,
with :class:`ModelMismatchError`, one whose weights hash differs from the
stored one.  A move built from an in-memory model cannot be serialised (save it
with ``biomd_core.io.save_model`` and pass the path).  Copies — ``copy.deepcopy``,
which openmmtools' samplers call, and deserialised moves — share one loaded
model object while the file is unchanged (same inode, size and mtime), so
copying does not reload the weights; each copy starts an empty propagator
cache.

Units: ps, K, nm (Quantities accepted where noted).
"""

from __future__ import annotations

import copy
import json
import os
import weakref
from collections import OrderedDict
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import openmm
import openmm.unit as unit

try:
    from openmmtools import mcmc as _mcmc
except ImportError as exc:  # pragma: no cover - openmmtools is a dependency of the OpenMM side
    raise ImportError("GenerativeJumpMove needs openmmtools: `pip install openmmtools` "
                      "(or `conda install -c conda-forge openmmtools`)") from exc

from biomd_core.sampling.steering import SteeringConfig

from .gate import EnergyReference, GateConfig
from .handback import HandBackConfig
from .model_source import resolve_model
from .propagator import GenerativePropagator

STATE_FORMAT = "biomd-generative-jump-move"
STATE_VERSION = 1

#: Propagators kept per move (one per Context and temperature).
PROPAGATOR_CACHE_SIZE = 8


class ModelMismatchError(ValueError):
    """A serialised move names a model that cannot be loaded or whose weights differ from the stored hash."""


class UnsupportedSystemError(ValueError):
    """The system has atoms the model does not move (explicit solvent): see the module docstring."""


@dataclass(frozen=True)
class JumpMoveSettings:
    """Everything that defines a :class:`GenerativeJumpMove` besides the model and topology.

    Attributes mirror :class:`~.propagator.GenerativePropagator`'s arguments (``steering`` is the
    strength of its :class:`~biomd_core.sampling.steering.SteeringConfig`, 0: off);
    ``timestep_ps`` and ``collision_rate_per_ps`` set the integrator of the MD
    inside a cycle (``LangevinMiddleIntegrator``) and ``n_jumps`` the jumps per
    ``apply``.
    """

    jump_ps: float | None = None
    selection: Any = "solute"
    n_jumps: int = 1
    seed: int = 0
    solver: str = "heun"
    ode_steps: int = 10
    steering: float = 0.0
    gate: GateConfig = GateConfig()
    handback: HandBackConfig = HandBackConfig()
    retries: int = 3
    energy_reference: EnergyReference | None = None
    calibration_frames: int = 50
    calibration_interval_steps: int = 250
    allow_transfer: bool = False
    ligand_sdf: str | None = None
    ligand_residues: tuple | None = None
    timestep_ps: float = 0.002
    collision_rate_per_ps: float = 1.0

    def __post_init__(self) -> None:
        if self.jump_ps is not None and not self.jump_ps > 0:
            raise ValueError(f"jump_ps must be > 0 (or None for one model block), got {self.jump_ps!r}")
        if not isinstance(self.n_jumps, (int, np.integer)) or self.n_jumps < 1:
            raise ValueError(f"n_jumps must be an integer >= 1, got {self.n_jumps!r}")
        if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not self.timestep_ps > 0 or not self.collision_rate_per_ps > 0:
            raise ValueError("timestep and collision_rate must be > 0")
        if self.retries < 0 or self.ode_steps < 1:
            raise ValueError("retries must be >= 0 and ode_steps >= 1")
        if not self.steering >= 0:
            raise ValueError(f"steering must be >= 0 (0: off), got {self.steering!r}")

    def to_dict(self) -> dict:
        """Plain YAML/JSON types only (lists, no tuples or numpy)."""
        out = asdict(self)
        out["selection"] = _plain(self.selection)
        out["ligand_residues"] = _plain(self.ligand_residues)
        out["gate"]["early_accept_iterations"] = list(self.gate.early_accept_iterations)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "JumpMoveSettings":
        """Inverse of :meth:`to_dict`; unknown keys are errors."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown GenerativeJumpMove settings: {unknown}")
        data = dict(data)
        data["gate"] = GateConfig(**data.get("gate", {}))
        data["handback"] = HandBackConfig(**data.get("handback", {}))
        if data.get("energy_reference") is not None:
            data["energy_reference"] = EnergyReference.from_dict(data["energy_reference"])
        if isinstance(data.get("selection"), list):
            data["selection"] = tuple(data["selection"])
        if data.get("ligand_residues") is not None:
            data["ligand_residues"] = tuple(data["ligand_residues"])
        return cls(**data)


class ContextSimulation:
    """The part of ``openmm.app.Simulation`` that :class:`GenerativePropagator` uses, over a bare Context.

    ``currentStep`` is the Context's step count; ``step(n)`` integrates
    without reporters (there are none: openmmtools reports through its own
    storage).  ``system`` is the System the propagator reads (a copy of the
    Context's, so nothing the propagator does to it reaches the Context).
    """

    def __init__(self, context: openmm.Context, integrator: openmm.Integrator, system: openmm.System,
                 topology: Any) -> None:
        self.context = context
        self.integrator = integrator
        self.system = system
        self.topology = topology
        self.reporters: list = []
        self._usesPBC = system.usesPeriodicBoundaryConditions()

    @property
    def currentStep(self) -> int:  # noqa: N802 - the Simulation attribute's name
        return int(self.context.getStepCount())

    @currentStep.setter
    def currentStep(self, value: int) -> None:  # noqa: N802
        self.context.setStepCount(int(value))

    def step(self, steps: int) -> None:
        self.integrator.step(int(steps))


class GenerativeJumpMove(_mcmc.MCMCMove):
    """Gated generative jump(s) of a BioMD model as an openmmtools ``MCMCMove``.

    **Not** detailed balance: no Metropolis–Hastings correction (see the module
    docstring); meant for exploration and seeding, e.g.
    ``SequenceMove([GenerativeJumpMove(...), LangevinDynamicsMove(...)])``.

    Parameters
    ----------
    model : a shipped model name, a ``.safetensors`` path, an exported
        TorchScript ``.pt`` or a loaded model (not serialisable unless it was
        loaded from a file)
    jump_ps : generated time per jump (default one model block); a whole number
        of model frames and of ``timestep``
    selection : modelled atoms (default the solute); every atom with an element
        must be modelled (explicit solvent is refused: :class:`UnsupportedSystemError`)
    n_jumps : jump cycles (jump, hand-back, relax MD) per ``apply``
    seed : base seed; application ``k`` at temperature ``T`` uses :meth:`seed_for`
    topology : ``openmm.app.Topology`` of the system (required, keyword)
    solver, ode_steps, gate, handback, retries, energy_reference,
    calibration_frames, calibration_interval_steps, allow_transfer,
    ligand_sdf (a path), ligand_residues :
        as for :class:`~.propagator.GenerativePropagator`
    timestep : timestep of the MD inside a cycle (thermalisation, relax MD)
        and of the jump grid (Quantity or ps; default 2 fs)
    collision_rate : friction of that ``LangevinMiddleIntegrator`` (Quantity or 1/ps; default 1/ps)
    context_cache : ``openmmtools.cache.ContextCache`` used when ``apply`` is
        given none (default: openmmtools' global cache); not serialised

    Attributes
    ----------
    n_accepted, n_proposed : jumps that passed the gate (whole or shortened) / jumps tried
    n_shortened, n_fallback, n_retries, generated_ps, rejections : more counters
    last_records : the propagator's records of the last ``apply``
    """

    def __init__(self, model: Any, jump_ps: float | None = None, selection: Any = "solute", n_jumps: int = 1,
                 seed: int = 0, *, topology: Any, solver: str = "heun", ode_steps: int = 10, steering: float = 0.0,
                 gate: GateConfig = GateConfig(), handback: HandBackConfig = HandBackConfig(), retries: int = 3,
                 energy_reference: EnergyReference | None = None, calibration_frames: int = 50,
                 calibration_interval_steps: int = 250, allow_transfer: bool = False,
                 ligand_sdf: str | os.PathLike | None = None, ligand_residues: Any = None,
                 timestep: Any = 2.0 * unit.femtosecond, collision_rate: Any = 1.0 / unit.picosecond,
                 context_cache: Any = None) -> None:
        super().__init__()
        if ligand_sdf is not None and not isinstance(ligand_sdf, (str, os.PathLike)):
            raise TypeError("GenerativeJumpMove takes ligand_sdf as a file path (it must be serialisable)")
        settings = JumpMoveSettings(
            jump_ps=None if jump_ps is None else float(_in(jump_ps, unit.picosecond)),
            selection=_normalise_selection(selection), n_jumps=int(n_jumps), seed=int(seed), solver=solver,
            ode_steps=int(ode_steps), steering=float(steering), gate=gate, handback=handback, retries=int(retries),
            energy_reference=energy_reference, calibration_frames=int(calibration_frames),
            calibration_interval_steps=int(calibration_interval_steps), allow_transfer=bool(allow_transfer),
            ligand_sdf=None if ligand_sdf is None else str(Path(ligand_sdf).resolve()),
            ligand_residues=None if ligand_residues is None else tuple(_plain(ligand_residues)),
            timestep_ps=float(_in(timestep, unit.picosecond)),
            collision_rate_per_ps=float(_in(collision_rate, unit.picosecond**-1)),
        )
        spec = _model_spec(model)
        if isinstance(model, (str, os.PathLike)):
            model, sha256 = _load_model(spec)
        else:
            model = resolve_model(model, "cpu")
            sha256 = model.weights_hash()
        self._setup(model, sha256, spec, topology, settings)
        self._context_cache = context_cache

    def _setup(self, model: Any, sha256: str, spec: str | None, topology: Any, settings: JumpMoveSettings,
               modelled: np.ndarray | None = None) -> None:
        """Attributes shared by ``__init__``, ``__setstate__`` and ``__deepcopy__``."""
        self._model = model
        self._model_spec = spec
        self._model_sha256 = sha256
        self._topology = topology
        self._settings = settings
        if modelled is None:
            graph = model.featurize(topology, selection=_selection_arg(settings.selection),
                                    ligand_sdf=settings.ligand_sdf, ligand_residues=settings.ligand_residues)
            modelled = np.asarray(graph.atom_indices, dtype=np.int64)
            _refuse_unmodelled_atoms(topology, modelled, settings.selection)
            _check_jump(settings, model.time.frame_interval_ps)
        self._modelled = modelled
        self._propagators: OrderedDict = OrderedDict()
        self._n_built = 0
        self._n_applied = 0
        self._context_cache = None
        self.last_records: list[dict] = []
        self.reset_statistics()

    # -- read-only settings ---------------------------------------------------------
    @property
    def settings(self) -> JumpMoveSettings:
        return self._settings

    @property
    def topology(self) -> Any:
        return self._topology

    @property
    def model(self) -> Any:
        return self._model

    @property
    def model_name(self) -> str | None:
        """Shipped name or absolute path of the model (``None`` for an in-memory model)."""
        return self._model_spec

    @property
    def model_sha256(self) -> str:
        return self._model_sha256

    @property
    def jump_ps(self) -> float | None:
        return self._settings.jump_ps

    @property
    def n_jumps(self) -> int:
        return self._settings.n_jumps

    @property
    def seed(self) -> int:
        return self._settings.seed

    # -- statistics (openmmtools convention) --------------------------------------------
    @property
    def statistics(self) -> dict:
        """Counters as plain types (openmmtools gathers them across MPI ranks and stores them).

        ``applications`` counts ``apply`` calls and drives :meth:`seed_for`; it
        lives here so that the sampler keeps it in step wherever the move ran.
        """
        return dict(n_accepted=self.n_accepted, n_proposed=self.n_proposed, n_shortened=self.n_shortened,
                    n_fallback=self.n_fallback, n_retries=self.n_retries, generated_ps=self.generated_ps,
                    rejections=dict(self.rejections), applications=self._n_applied)

    @statistics.setter
    def statistics(self, value: dict) -> None:
        self.n_accepted = int(value.get("n_accepted", 0))
        self.n_proposed = int(value.get("n_proposed", 0))
        self.n_shortened = int(value.get("n_shortened", 0))
        self.n_fallback = int(value.get("n_fallback", 0))
        self.n_retries = int(value.get("n_retries", 0))
        self.generated_ps = float(value.get("generated_ps", 0.0))
        self.rejections = {str(k): int(v) for k, v in (value.get("rejections") or {}).items()}
        self._n_applied = int(value.get("applications", getattr(self, "_n_applied", 0)))

    def reset_statistics(self) -> None:
        """Zero the counters (``applications``, which drives the seeds, is kept so noise never repeats)."""
        self.statistics = {"applications": getattr(self, "_n_applied", 0)}

    @property
    def fraction_accepted(self) -> float | None:
        """``n_accepted / n_proposed`` (gate acceptance, not a Metropolis acceptance)."""
        return self.n_accepted / self.n_proposed if self.n_proposed else None

    def summary(self) -> dict:
        """Statistics, model and settings, and the summary of every cached propagator."""
        return {
            "model": self._model_spec,
            "model_sha256": self._model_sha256,
            **self.statistics,
            "fraction_accepted": self.fraction_accepted,
            "propagators_built": self._n_built,
            "propagators": [{"temperature_k": key[1], **p.summary()}
                            for key, (_, p) in self._propagators.items()],
            "settings": self._settings.to_dict(),
        }

    def seed_for(self, temperature_k: float, application: int) -> int:
        """Seed of the propagator's random stream for application ``application`` at ``temperature_k``."""
        entropy = [int(self.seed), int(application), int(round(float(temperature_k) * 1000))]
        return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint32)[0])

    # -- the move -----------------------------------------------------------------------
    def apply(self, thermodynamic_state: Any, sampler_state: Any, context_cache: Any = None) -> None:
        """Run ``n_jumps`` jump cycles from ``sampler_state`` and write the result back into it.

        Parameters
        ----------
        thermodynamic_state : openmmtools.states.ThermodynamicState (temperature, System)
        sampler_state : openmmtools.states.SamplerState; positions, velocities,
            box and energies are updated
        context_cache : openmmtools.cache.ContextCache (default: the one given to
            the constructor, else openmmtools' global cache)
        """
        cache = self._get_context_cache(context_cache if context_cache is not None else self._context_cache)
        temperature = thermodynamic_state.temperature
        integrator = openmm.LangevinMiddleIntegrator(
            temperature, self._settings.collision_rate_per_ps / unit.picosecond,
            self._settings.timestep_ps * unit.picosecond)
        context, integrator = cache.get_context(thermodynamic_state, integrator)
        sampler_state.apply_to_context(context, ignore_velocities=True)
        temperature_k = float(temperature.value_in_unit(unit.kelvin))
        propagator = self._propagator_for(context, integrator, temperature_k)
        propagator.restart(self.seed_for(temperature_k, self._n_applied))
        records = [propagator.jump() for _ in range(self._settings.n_jumps)]
        propagator.records.clear()  # the move keeps the counters; records would grow without bound
        self._n_applied += 1
        self._count(records, propagator.timestep_ps)
        self.last_records = records
        sampler_state.update_from_context(context)

    def _propagator_for(self, context: openmm.Context, integrator: openmm.Integrator,
                        temperature_k: float) -> GenerativePropagator:
        key = (id(context), round(temperature_k, 6))
        entry = self._propagators.get(key)
        if entry is not None and entry[0] is context:  # the entry holds the Context, so its id is not reused
            self._propagators.move_to_end(key)
            entry[1].simulation.integrator = integrator
            return entry[1]
        system = openmm.XmlSerializer.clone(context.getSystem())
        simulation = ContextSimulation(context, integrator, system, self._topology)
        s = self._settings
        propagator = GenerativePropagator(
            simulation, self._model, selection=_selection_arg(s.selection), jump_ps=s.jump_ps, solver=s.solver,
            ode_steps=s.ode_steps, gate=s.gate, handback=s.handback, retries=s.retries, seed=s.seed,
            steering=SteeringConfig(strength=s.steering) if s.steering else None,
            energy_reference=s.energy_reference, calibration_frames=s.calibration_frames,
            calibration_interval_steps=s.calibration_interval_steps, allow_transfer=s.allow_transfer,
            temperature_k=temperature_k, ligand_sdf=s.ligand_sdf, ligand_residues=s.ligand_residues,
        )
        if propagator.restraint is not None:  # backstop: massive atoms the topology check did not see
            raise UnsupportedSystemError(
                "the System has massive particles the model does not move; GenerativeJumpMove refuses explicit "
                "solvent (see openmm_biomd.propagator.mcmc)")
        self._propagators[key] = (context, propagator)
        while len(self._propagators) > PROPAGATOR_CACHE_SIZE:
            self._propagators.popitem(last=False)
        self._n_built += 1
        return propagator

    def _count(self, records: list[dict], timestep_ps: float) -> None:
        for record in records:
            self.n_proposed += 1
            outcome = record.get("outcome")
            if outcome in ("accepted", "shortened"):
                self.n_accepted += 1
                self.n_shortened += outcome == "shortened"
            elif outcome == "fallback":
                self.n_fallback += 1
            self.n_retries += int(record.get("retries", 0))
            self.generated_ps += record.get("generated_steps", 0) * timestep_ps
            for reason, count in record.get("rejections", {}).items():
                self.rejections[reason] = self.rejections.get(reason, 0) + int(count)

    # -- serialisation ----------------------------------------------------------------------
    def __getstate__(self, **kwargs: Any) -> dict:
        """Model name/path and sha256, topology, settings, counters; never the weights."""
        if self._model_spec is None:
            raise ValueError("this GenerativeJumpMove holds an in-memory model, which cannot be serialised: save it "
                             "with biomd_core.io.save_model and build the move from that path")
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "model": self._model_spec,
            "model_sha256": self._model_sha256,
            "topology": json.dumps(topology_to_dict(self._topology), separators=(",", ":")),
            "settings": self._settings.to_dict(),
            "statistics": self.statistics,
        }

    def __setstate__(self, state: dict) -> None:
        # openmmtools' deserialize() turns a KeyError into a mere warning and an AttributeError
        # into a misleading message: report a damaged state as a ValueError instead.
        try:
            if state.get("format") != STATE_FORMAT or int(state.get("version", 0)) > STATE_VERSION:
                raise ValueError(f"not a {STATE_FORMAT} state of version <= {STATE_VERSION}: "
                                 f"format={state.get('format')!r}, version={state.get('version')!r}")
            spec, expected = state["model"], state["model_sha256"]
            settings = JumpMoveSettings.from_dict(state["settings"])
            topology = topology_from_dict(json.loads(state["topology"]))
            statistics = dict(state.get("statistics") or {})
        except (KeyError, AttributeError, TypeError) as exc:
            raise ValueError(f"damaged GenerativeJumpMove state ({type(exc).__name__}: {exc})") from exc
        try:
            model, actual = _load_model(spec)
        except Exception as exc:
            raise ModelMismatchError(f"the serialised GenerativeJumpMove uses model {spec!r}, which cannot be "
                                     f"loaded here: {exc}") from exc
        if actual != expected:
            raise ModelMismatchError(
                f"model {spec!r} has weights sha256 {actual[:12]}…, but the move was serialised with "
                f"{expected[:12]}…: the weights changed since the move was stored; restore the original model "
                f"file (or rebuild the move with the new model on purpose)")
        self._setup(model, actual, spec, topology, settings)
        self.statistics = statistics

    def __deepcopy__(self, memo: dict) -> "GenerativeJumpMove":
        """A copy sharing the (read-only) model and topology, with its own counters and an empty propagator cache."""
        new = self.__class__.__new__(self.__class__)
        new._setup(self._model, self._model_sha256, self._model_spec, self._topology, self._settings,
                   modelled=self._modelled)
        new.statistics = copy.deepcopy(self.statistics, memo)
        new._context_cache = self._context_cache
        return new

    def __repr__(self) -> str:
        return (f"GenerativeJumpMove(model={self._model_spec or '<in-memory>'!r}, jump_ps={self.jump_ps}, "
                f"n_jumps={self.n_jumps}, n_accepted={self.n_accepted}, n_proposed={self.n_proposed})")


# -- helpers ----------------------------------------------------------------------------------


#: Loaded models by (file, inode, size, mtime): copies and deserialised moves share one model object while any
#: move holds it.  ``copy.deepcopy`` of a ``SequenceMove`` goes through ``__getstate__``/``__setstate__``
#: (openmmtools defines them), so without this every copy (the samplers make many) would reload the weights.
_LOADED: "weakref.WeakValueDictionary[tuple, Any]" = weakref.WeakValueDictionary()
_LOADED_SHA256: dict[tuple, str] = {}


def _load_model(spec: str) -> tuple[Any, str]:
    """The model a spec names and its weights sha256 (see :data:`_LOADED`)."""
    from biomd_core.io.checkpoint import resolve

    path = Path(spec) if spec.endswith(".pt") else resolve(spec)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    model = _LOADED.get(key)
    if model is None:
        model = resolve_model(spec, "cpu")
        _LOADED[key] = model
        _LOADED_SHA256[key] = model.weights_hash()
    return model, _LOADED_SHA256[key]


def _model_spec(model: Any) -> str | None:
    """How the state names a model: a shipped name, else an absolute path, else ``None`` (in memory)."""
    from biomd_core.io.checkpoint import WEIGHTS_DIR

    if isinstance(model, (str, os.PathLike)):
        text = os.fspath(model)
        if isinstance(model, str) and "/" not in text and (WEIGHTS_DIR / f"{text}.safetensors").exists():
            return text
        return str(Path(text).resolve())
    path = getattr(model, "checkpoint_path", None)
    if not path:
        return None
    path = Path(path).resolve()
    if path.parent == WEIGHTS_DIR.resolve() and path.suffix == ".safetensors":
        return path.stem
    return str(path)


def _in(value: Any, target: Any) -> float:
    return value.value_in_unit(target) if unit.is_quantity(value) else float(value)


def _plain(value: Any) -> Any:
    """numpy/tuples → plain Python lists and scalars."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _normalise_selection(selection: Any) -> Any:
    if isinstance(selection, str):
        return selection
    return tuple(_plain(np.asarray(selection).reshape(-1)))


def _selection_arg(selection: Any) -> Any:
    return selection if isinstance(selection, str) else np.asarray(selection)


def _check_jump(settings: JumpMoveSettings, frame_interval_ps: float) -> None:
    """Fail at construction, not at the first ``apply``, on a jump off the model's or the integrator's grid."""
    for what, length in (("the model's frame interval", frame_interval_ps), ("the timestep", settings.timestep_ps)):
        if settings.jump_ps is not None:
            ratio = settings.jump_ps / length
            if round(ratio) < 1 or abs(ratio - round(ratio)) > 1e-6:
                raise ValueError(f"jump_ps={settings.jump_ps} is not a whole number of {what} ({length} ps)")
    ratio = frame_interval_ps / settings.timestep_ps
    if abs(ratio - round(ratio)) > 1e-6:
        raise ValueError(f"the model's frame interval ({frame_interval_ps} ps) is not a whole number of "
                         f"timesteps ({settings.timestep_ps} ps)")


def _refuse_unmodelled_atoms(topology: Any, modelled: np.ndarray, selection: Any) -> None:
    chosen = set(modelled.tolist())
    left = [atom for atom in topology.atoms() if atom.index not in chosen and atom.element is not None]
    if left:
        residues = sorted({atom.residue.name for atom in left})
        raise UnsupportedSystemError(
            f"the selection {selection!r} leaves {len(left)} atoms unmodelled (residues {', '.join(residues[:6])}"
            f"{', …' if len(residues) > 6 else ''}). GenerativeJumpMove only moves systems the model moves "
            "entirely (vacuum or implicit solvent): relaxing unmodelled atoms needs a restraint force added to the "
            "System, which would change the openmmtools thermodynamic state's System. Use GenerativePropagator "
            "with an openmm.app.Simulation for explicit solvent, or select all atoms if the model knows them.")


_BOND_TYPES = {str(t): t for t in (openmm.app.Single, openmm.app.Double, openmm.app.Triple, openmm.app.Aromatic,
                                   openmm.app.Amide)}


def topology_to_dict(topology: Any) -> dict:
    """An ``openmm.app.Topology`` as plain lists (chains → residues → atoms, bonds, box in nm)."""
    order = {atom.index: k for k, atom in enumerate(topology.atoms())}
    chains = []
    for chain in topology.chains():
        residues = []
        for residue in chain.residues():
            atoms = [[a.name, a.element.symbol if a.element is not None else None, a.id] for a in residue.atoms()]
            residues.append([residue.name, residue.id, residue.insertionCode, atoms])
        chains.append([chain.id, residues])
    bonds = [[order[b.atom1.index], order[b.atom2.index], None if b.type is None else str(b.type), b.order]
             for b in topology.bonds()]
    box = topology.getPeriodicBoxVectors()
    box_nm = None if box is None else [[float(x) for x in v.value_in_unit(unit.nanometer)] for v in box]
    return {"chains": chains, "bonds": bonds, "box_nm": box_nm}


def topology_from_dict(data: dict) -> Any:
    """Inverse of :func:`topology_to_dict`."""
    from openmm.app import Element, Topology

    topology = Topology()
    atoms = []
    for chain_id, residues in data["chains"]:
        chain = topology.addChain(chain_id)
        for name, residue_id, insertion_code, residue_atoms in residues:
            residue = topology.addResidue(name, chain, residue_id, insertion_code)
            for atom_name, symbol, atom_id in residue_atoms:
                element = Element.getBySymbol(symbol) if symbol is not None else None
                atoms.append(topology.addAtom(atom_name, element, residue, atom_id))
    for i, j, bond_type, order in data["bonds"]:
        topology.addBond(atoms[i], atoms[j], _BOND_TYPES.get(bond_type), order)
    if data.get("box_nm") is not None:
        topology.setPeriodicBoxVectors([openmm.Vec3(*v) for v in data["box_nm"]] * unit.nanometer)
    return topology


__all__ = ["ContextSimulation", "GenerativeJumpMove", "JumpMoveSettings", "ModelMismatchError",
           "UnsupportedSystemError", "topology_from_dict", "topology_to_dict"]
