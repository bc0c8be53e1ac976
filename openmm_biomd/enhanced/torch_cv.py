"""Collective variables written in PyTorch, run inside OpenMM.

A CV here is a ``torch.nn.Module`` that maps the positions of *all* particles of
the System to one number.  :func:`torch_cv_force` turns it into an OpenMM
``Force`` whose energy, in kJ/mol, is numerically the CV value and whose forces
are ``-∂CV/∂x`` (kJ/mol/nm), so it can be a variable of a ``CustomCVForce``
(e.g. an umbrella restraint ``k*(cv-x0)^2``) or an
``openmm.app.metadynamics.BiasVariable`` — the same contract as the forces of
:mod:`openmm_biomd.enhanced.cvs`.

Two backends, picked by a registry (:data:`BACKENDS`):

``"torch"``
    openmm-torch's ``TorchForce``: the module is compiled to TorchScript
    (``torch.jit.script``) and runs inside OpenMM's C++ (on CUDA without copies).
    Needs ``openmmtorch``.  PyPI's ``openmmtorch==1.5`` wheel loads only with
    PyPI's ``torch==2.9.1`` (import torch first; it works on a CPU-only machine)
    and with OpenMM ≤ 8.5 (see *Quirks*); ``make openmm-torch`` builds such an
    environment in ``.venv/openmm-torch``.
``"python"``
    ``openmm.PythonForce`` (OpenMM ≥ 8.5): OpenMM calls a picklable callback
    (:class:`PythonCV`) each time it needs forces; the callback evaluates the
    module in eager PyTorch and gets forces by autograd.  Works with any torch,
    e.g. the project's CPU torch; slower (a Python call per force evaluation).
``"auto"``
    ``"torch"`` when openmm-torch is usable here, else ``"python"``.

The module's contract
---------------------
``forward(positions)`` — or ``forward(positions, box)`` with ``periodic=True`` —
with

- ``positions``: ``[N, 3]`` nm, every particle of the System (not only the CV's
  atoms).  dtype is float64 from ``PythonForce`` and from ``TorchForce`` on the
  Reference/CPU platforms, float32 from ``TorchForce`` on CUDA/OpenCL in single
  or mixed precision: write dtype-generic code (no float64 constants baked in as
  tensors; Python floats are fine).
- ``box``: ``[3, 3]`` nm, rows are the periodic box vectors (OpenMM's reduced
  triclinic form: ``a`` along x, ``b`` in the xy-plane).  Positions may arrive
  wrapped into the box (``PythonForce`` says so explicitly), so a periodic CV must
  apply the minimum-image convention itself, e.g. with :func:`minimum_image`.
- returns a scalar tensor (0-d, or one element), differentiable in ``positions``.

A module for the ``"torch"`` backend must be scriptable by ``torch.jit.script``
(type-annotated ``forward``; indices as buffers, not Python lists of tensors).

Reusable CVs: :class:`CentroidDistance` (the ligand–pocket centroid distance of
:func:`openmm_biomd.data.metadynamics.centroid_distance_force`) and
:class:`CoordinationNumber` (a smooth contact count).

Quirks found on OpenMM 8.5/8.6 and openmm-torch 1.5 (PyPI wheels)
------------------------------------------------------------------
- ``CustomCVForce`` copies its variables through ``XmlSerializer`` when its
  Context is built.  The PyPI ``openmmtorch`` 1.5 wheel was built against OpenMM
  8.4/8.5; with OpenMM 8.6 *deserialising* a ``TorchForce`` segfaults (ABI change
  of ``SerializationNode``), so any ``TorchForce`` inside a ``CustomCVForce``
  kills the interpreter.  ``backend="torch"`` refuses that combination with a
  clear error, and ``"auto"`` falls back to ``"python"`` there.  With OpenMM 8.3
  the wheel does not import at all (missing symbol), so pin ``openmm>=8.4,<8.6``
  next to it.
- ``openmmtorch`` imports the deprecated ``simtk.openmm``, which logs a warning
  through the root logger; the import here silences it.
- ``TorchForce(script_module)`` embeds the module in the force (no file needed);
  ``path=`` also saves it to a ``.pt`` file the force is then built from.
- ``PythonForce`` pickles its callback whenever the force is copied (e.g. by
  ``CustomCVForce`` and ``XmlSerializer``): the callback must be a module-level
  object, not a lambda or closure.  A ``torch.jit.ScriptModule`` does not pickle,
  so :class:`PythonCV` carries one as TorchScript bytes.
- ``CustomCVForce.addCollectiveVariable`` takes ownership of the Python force
  object: make a fresh force for every ``CustomCVForce``/``BiasVariable``.
"""

from __future__ import annotations

import io
import logging
import math
import os
import pickle
from typing import Any, Callable, Optional

import numpy as np
import torch

from .cvs import atom_indices

__all__ = [
    "BACKENDS",
    "CV_MODULES",
    "CentroidDistance",
    "CoordinationNumber",
    "PythonCV",
    "available_backend",
    "cv_module_from_spec",
    "evaluate_cv",
    "minimum_image",
    "openmm_torch_problem",
    "torch_cv_force",
]

INSTALL_HINT = (
    "openmm-torch is needed for backend='torch'. PyPI's openmmtorch 1.5 wheel loads only with PyPI's "
    "torch==2.9.1 (not the CPU-only torch wheels) and OpenMM >=8.4,<8.6: "
    "`pip install torch==2.9.1 openmmtorch==1.5 'openmm>=8.4,<8.6'` in a separate environment — "
    "in this repository `make openmm-torch` builds one in .venv/openmm-torch. "
    "Or use backend='python' (openmm.PythonForce, any torch)."
)


# --------------------------------------------------------------------------- CV modules


def minimum_image(delta: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """Minimum-image convention for displacement vectors in a (reduced triclinic) periodic box.

    Parameters
    ----------
    delta : ``[..., 3]`` nm, displacement vectors
    box : ``[3, 3]`` nm, rows are the box vectors a, b, c in OpenMM's reduced form
        (a along x, b in the xy-plane), as ``TorchForce`` and ``State`` give them

    Returns
    -------
    torch.Tensor
        ``[..., 3]`` nm, each vector shifted by whole box vectors to (nearly) its
        shortest image — exact for rectangular boxes, OpenMM's own approximation
        for triclinic ones.
    """
    # c first, then b, then a: each step only changes components it owns in reduced form.
    delta = delta - box[2] * torch.round(delta[..., 2:3] / box[2, 2])
    delta = delta - box[1] * torch.round(delta[..., 1:2] / box[1, 1])
    delta = delta - box[0] * torch.round(delta[..., 0:1] / box[0, 0])
    return delta


def _index_tensor(indices: Any, name: str) -> torch.Tensor:
    """Atom indices as a 1-D int64 tensor (:func:`~openmm_biomd.enhanced.cvs.atom_indices`'s checks)."""
    return torch.as_tensor(atom_indices(indices, name))


def _whole_centroid(positions: torch.Tensor, group: torch.Tensor, box: Optional[torch.Tensor]) -> torch.Tensor:
    """Geometric centroid ``[3]`` nm of ``positions[group]``, made whole around its first atom when periodic."""
    xyz = positions.index_select(0, group)  # [G, 3]
    if box is None:
        return xyz.mean(0)
    # Positions may come wrapped into the box: rebuild the group around its first atom
    # (valid while the group spans less than half a box, as any sensible group does).
    reference = xyz[0]
    return reference + minimum_image(xyz - reference, box).mean(0)


class CentroidDistance(torch.nn.Module):
    """Distance between the geometric centroids of two atom groups, nm.

    The same CV as :func:`openmm_biomd.data.metadynamics.centroid_distance_force`
    (a ``CustomCentroidBondForce`` ``distance(g1, g2)`` with equal weights): the
    ligand–pocket distance the dissociation metadynamics biases.

    Parameters
    ----------
    group_a, group_b : atom indices (int), e.g. the ligand and the pocket atoms

    Notes
    -----
    ``forward(positions [N, 3] nm, box [3, 3] nm | None) -> [] nm``.  With a box
    each group is made whole around its first atom and the centroid–centroid
    vector is minimum-imaged, so wrapped positions give the right value.
    """

    def __init__(self, group_a: Any, group_b: Any) -> None:
        super().__init__()
        # Buffers: they follow .to(device), are saved by TorchScript and pickle with the module.
        self.register_buffer("group_a", _index_tensor(group_a, "group_a"))
        self.register_buffer("group_b", _index_tensor(group_b, "group_b"))

    def forward(self, positions: torch.Tensor, box: Optional[torch.Tensor] = None) -> torch.Tensor:
        delta = _whole_centroid(positions, self.group_a, box) - _whole_centroid(positions, self.group_b, box)  # [3]
        if box is not None:
            delta = minimum_image(delta, box)
        return torch.sqrt(torch.sum(delta * delta))


class CoordinationNumber(torch.nn.Module):
    """Smooth number of contacts between two atom groups (dimensionless).

    ``CN = Σ_{i∈A, j∈B} s(r_ij)`` with the rational switching function
    ``s(r) = 1 / (1 + (r/r0)^n)`` — PLUMED's ``(1-(r/r0)^n)/(1-(r/r0)^m)`` with
    ``m = 2n``, written without its removable 0/0 at ``r = r0``.  OpenMM's
    equivalent is a ``CustomBondForce`` ``1/(1+(r/r0)^n)`` with one bond per pair.

    Parameters
    ----------
    group_a, group_b : atom indices (int); the groups must not share an atom
    r0_nm : switching distance, nm (``s(r0) = 1/2``)
    n : switching exponent (even, so only ``r²`` is needed; larger = sharper)

    Notes
    -----
    ``forward(positions [N, 3] nm, box [3, 3] nm | None) -> []``; all ``|A|·|B|``
    pairs are evaluated densely (``[|A|, |B|]`` memory), which suits ligand–pocket
    groups of up to a few thousand pairs.
    """

    def __init__(self, group_a: Any, group_b: Any, r0_nm: float = 0.45, n: int = 6) -> None:
        super().__init__()
        a = _index_tensor(group_a, "group_a")
        b = _index_tensor(group_b, "group_b")
        if np.intersect1d(a.numpy(), b.numpy()).size:
            raise ValueError("group_a and group_b share atoms: an atom's contact with itself has no direction (r = 0)")
        if not 0 < r0_nm < math.inf:  # (inf had given a constant CV of no force)
            raise ValueError(f"r0_nm must be a finite distance > 0 (nm), got {r0_nm}")
        if not math.isfinite(n) or int(n) != n or not 2 <= n <= MAX_SWITCHING_EXPONENT or int(n) % 2:
            # (inf had been a bare OverflowError, 1000 "non-finite on trial positions": (r/r0)^n overflows)
            raise ValueError(f"n must be an even integer from 2 to {MAX_SWITCHING_EXPONENT}, got {n}")
        self.register_buffer("group_a", a)
        self.register_buffer("group_b", b)
        self.r0_nm = float(r0_nm)
        self.half_n = int(n) // 2

    def forward(self, positions: torch.Tensor, box: Optional[torch.Tensor] = None) -> torch.Tensor:
        a = positions.index_select(0, self.group_a)  # [A, 3]
        b = positions.index_select(0, self.group_b)  # [B, 3]
        delta = a[:, None, :] - b[None, :, :]  # [A, B, 3]
        if box is not None:
            delta = minimum_image(delta, box)
        x = torch.sum(delta * delta, dim=-1) / (self.r0_nm * self.r0_nm)  # [A, B] (r/r0)²
        return torch.sum(1.0 / (1.0 + torch.pow(x, self.half_n)))


#: The sharpest switching :class:`CoordinationNumber` takes: at n = 24, ``(r/r0)^n`` (and so the forces) stays
#: finite in float32, as TorchForce evaluates on a GPU, for pairs up to 40 r0 apart (40^24 ≈ 2.8e38).
MAX_SWITCHING_EXPONENT = 24

#: spec ``"kind"`` -> CV module class; the rest of the spec are its keyword arguments.
CV_MODULES: dict[str, type] = {
    "centroid-distance": CentroidDistance,
    "coordination-number": CoordinationNumber,
}


def cv_module_from_spec(spec: dict) -> torch.nn.Module:
    """A CV module from a JSON-able spec, e.g. ``{"kind": "centroid-distance", "group_a": [...], "group_b": [...]}``.

    Parameters
    ----------
    spec : ``kind`` (a key of :data:`CV_MODULES`) plus that class's keyword arguments

    Returns
    -------
    torch.nn.Module
    """
    if not isinstance(spec, dict):  # (a list had been dict()'s "dictionary update sequence element #0 ...")
        raise TypeError(f"a CV spec is a dict with a 'kind' ({sorted(CV_MODULES)}) and its arguments, got "
                        f"{type(spec).__name__}")
    spec = dict(spec)
    kind = spec.pop("kind", None)
    if kind not in CV_MODULES:
        raise ValueError(f"unknown CV kind {kind!r}; known: {sorted(CV_MODULES)}")
    try:
        return CV_MODULES[kind](**spec)
    except TypeError as exc:  # unknown or missing keys: strict, like every config here
        raise ValueError(f"bad {kind!r} CV spec {sorted(spec)}: {exc}") from None


# --------------------------------------------------------------------------- evaluation


def _check_value(value: Any) -> torch.Tensor:
    """The CV value as a 0-d tensor; a clear error for anything that is not one number."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"the CV module must return a torch.Tensor, got {type(value).__name__}")
    if value.numel() != 1:
        raise ValueError(
            f"the CV module must return a scalar (one number, e.g. a 0-d tensor), got shape {tuple(value.shape)}; "
            "reduce it (e.g. .sum()) or select one entry"
        )
    return value.reshape(())


def evaluate_cv(module: torch.nn.Module, positions_nm: Any, box_nm: Any = None) -> tuple[float, np.ndarray]:
    """The CV value and its forces ``-∂CV/∂x``, by autograd in float64.

    What the ``"python"`` backend computes at every force evaluation; also handy
    for analysing frames.

    Parameters
    ----------
    module : the CV (see the module docstring for its contract)
    positions_nm : ``[N, 3]`` nm (numpy, torch or nested lists)
    box_nm : ``[3, 3]`` nm box vectors (rows) for a periodic CV, else None

    Returns
    -------
    value : float
        the CV (its own unit: nm for a distance).
    forces : np.ndarray
        ``[N, 3]`` float64, ``-∂CV/∂x`` in CV-unit per nm (kJ/mol/nm when the CV
        is read as an energy); zero for atoms the CV does not use.
    """
    pos = torch.tensor(np.asarray(positions_nm, dtype=np.float64), requires_grad=True)  # [N, 3], a fresh leaf
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"positions must have shape [N, 3], got {tuple(pos.shape)}")
    # The caller may be inside torch.no_grad() (e.g. a sampler's loop): the forces need autograd.
    with torch.enable_grad():
        if box_nm is None:
            value = _check_value(module(pos))
        else:
            box = np.asarray(box_nm, dtype=np.float64)
            if box.shape != (3, 3):  # (three edge lengths had been torch's "shape '[3, 3]' is invalid for input ...")
                raise ValueError(f"box_nm must be the [3, 3] box vectors (rows, nm; np.diag(lengths) for a "
                                 f"rectangular box), got shape {box.shape}")
            box = torch.as_tensor(box)
            value = _check_value(module(pos, box))
        if not value.requires_grad:
            raise ValueError("the CV module's output does not depend differentiably on the positions: no forces")
        (grad,) = torch.autograd.grad(value, pos, allow_unused=True)
    if grad is None:  # differentiable through parameters or constants only
        raise ValueError("the CV module's output does not depend differentiably on the positions (only on its "
                         "parameters or constants): a constant CV has no forces")
    return float(value.detach()), np.ascontiguousarray(-grad.detach().numpy(), dtype=np.float64)


class PythonCV:
    """The picklable callback of an ``openmm.PythonForce`` CV.

    OpenMM calls it with a ``State`` (positions, and box vectors when the force
    is periodic) and takes ``(energy kJ/mol, forces [N, 3] kJ/mol/nm)``.  It is a
    module-level class, not a closure, because ``PythonForce`` pickles its
    callback whenever the force is copied (``CustomCVForce`` copies its
    variables when it builds its Context).

    Parameters
    ----------
    module : the CV module (eager ``nn.Module`` or ``ScriptModule``)
    periodic : pass the box to the module (``forward(positions, box)``)
    """

    def __init__(self, module: torch.nn.Module, periodic: bool = False) -> None:
        self.module = module
        self.periodic = bool(periodic)

    def __call__(self, state: Any) -> tuple[float, np.ndarray]:
        from openmm import unit

        positions = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)  # [N, 3] float64
        box = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer) if self.periodic else None
        name = _cv_name(self.module)
        try:
            value, forces = evaluate_cv(self.module, positions, box)
        except Exception as exc:
            # OpenMM passes on only the message (an OpenMMException "boom", which the CLI took for bad inputs):
            # it names the CV
            raise RuntimeError(f"the PyTorch CV {name} failed at the simulation's positions ({type(exc).__name__}: "
                               f"{exc}); it had worked on the trial positions") from exc
        if not (np.isfinite(value) and np.isfinite(forces).all()):
            # finite on the trial positions, not here: say so, rather than let OpenMM report NaN coordinates later
            raise ValueError(f"the PyTorch CV {name} gave a non-finite value ({value}) or "
                             "force at the simulation's positions: make it finite wherever the atoms can go")
        return value, forces

    def __getstate__(self) -> dict:
        if isinstance(self.module, torch.jit.ScriptModule):
            # ScriptModules do not pickle; TorchScript's own archive does.
            buffer = io.BytesIO()
            torch.jit.save(self.module, buffer)
            return {"torchscript": buffer.getvalue(), "periodic": self.periodic}
        return {"module": self.module, "periodic": self.periodic}

    def __setstate__(self, state: dict) -> None:
        self.periodic = state["periodic"]
        if "torchscript" in state:
            self.module = torch.jit.load(io.BytesIO(state["torchscript"]))
        else:
            self.module = state["module"]


def _trial_check(module: torch.nn.Module, n_particles: int, periodic: bool) -> None:
    """Evaluate the module once on random positions, so a broken CV fails here, not inside OpenMM."""
    if isinstance(n_particles, bool) or not float(n_particles).is_integer() or int(n_particles) < 1:
        # (5.7 had been cut to 5, NaN "cannot convert float NaN to integer")
        raise ValueError(f"n_particles must be a whole number >= 1 (the System's particles), got {n_particles}")
    generator = np.random.default_rng(0)
    positions = generator.uniform(0.0, 3.0, size=(int(n_particles), 3))  # [N, 3] nm, no two atoms on top
    box = np.diag([3.0, 3.0, 3.0]) if periodic else None
    signature = "forward(positions [N, 3], box [3, 3])" if periodic else "forward(positions [N, 3])"
    try:
        value, forces = evaluate_cv(module, positions, box)
    except TypeError as exc:
        if "positional argument" in str(exc):  # periodic=True with a forward(positions) module, or the reverse
            raise TypeError(f"the CV module cannot be called as {signature} (periodic={bool(periodic)}): "
                            f"{exc}") from exc
        raise
    except ValueError:
        raise
    except Exception as exc:  # index out of range, ...: say where it came from
        raise ValueError(
            f"the CV module failed on trial positions [{int(n_particles)}, 3] nm (called as {signature}): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not (np.isfinite(value) and np.isfinite(forces).all()):
        raise ValueError("the CV module gave a non-finite value or gradient on trial positions")


# --------------------------------------------------------------------------- backends


def _import_openmmtorch() -> Any:
    """``import openmmtorch`` (after torch, as its wheel needs), without its simtk deprecation log line."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        import openmmtorch
    finally:
        logging.disable(previous)
    return openmmtorch


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def openmm_torch_problem() -> str | None:
    """Why openmm-torch cannot serve CVs here, or None when it can.

    Returns
    -------
    str | None
        None when ``openmmtorch`` imports and is not the PyPI 1.5 wheel next to
        OpenMM ≥ 8.6 (whose ``TorchForce`` crashes when ``CustomCVForce`` copies
        it); else the reason, in words.
    """
    try:
        _import_openmmtorch()
    except Exception as exc:  # ImportError, or OSError/undefined symbol from a torch it was not built for
        return f"openmmtorch does not import ({type(exc).__name__}: {exc})"
    import importlib.metadata

    import openmm

    try:
        dist = importlib.metadata.distribution("openmmtorch")
        from_wheel = dist.read_text("WHEEL") is not None  # conda builds are compiled per OpenMM version
        torch_plugin = _version_tuple(dist.version)
    except importlib.metadata.PackageNotFoundError:
        return None
    if from_wheel and torch_plugin <= (1, 5) and _version_tuple(openmm.__version__) >= (8, 6):
        return (
            f"the openmmtorch {dist.version} wheel was built against OpenMM 8.4/8.5 and OpenMM here is "
            f"{openmm.__version__}: copying a TorchForce (which CustomCVForce does) segfaults. "
            "Pin 'openmm>=8.4,<8.6' next to it"
        )
    return None


def available_backend() -> str:
    """The backend ``"auto"`` picks here: ``"torch"`` when openmm-torch is usable, else ``"python"``."""
    return "torch" if openmm_torch_problem() is None else "python"


def _script(module: torch.nn.Module) -> torch.jit.ScriptModule:
    if isinstance(module, torch.jit.ScriptModule):
        return module
    try:
        return torch.jit.script(module)
    except Exception as exc:
        raise ValueError(
            f"backend='torch' (or a path= to save the CV to) compiles the CV with torch.jit.script, which failed for "
            f"{_cv_name(module)}: {exc}. Make it scriptable (type-annotated forward, indices as buffers), or use "
            "backend='python' without path= (openmm.PythonForce runs it in eager PyTorch)"
        ) from exc


def _finite(value: torch.Tensor, name: str) -> torch.Tensor:
    """``value``, or a RuntimeError naming the CV ``name`` where it is not finite (the ``"torch"`` backend's twin of
    the check in :class:`PythonCV`: without it a CV finite on the trial positions but NaN in the simulation gave NaN
    energies, then NaN coordinates, without a word)."""
    if not bool(torch.isfinite(value).all()):
        raise RuntimeError("the PyTorch CV " + name + " gave a non-finite value at the simulation's positions: make it "
                           "finite wherever the atoms can go")
    return value


class _FiniteCV(torch.nn.Module):
    """A CV, checked by :func:`_finite`."""

    def __init__(self, cv: torch.nn.Module, name: str) -> None:
        super().__init__()
        self.cv = cv
        self.name = name

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return _finite(self.cv(positions), self.name)


class _FinitePeriodicCV(_FiniteCV):
    """:class:`_FiniteCV` of a periodic CV, ``forward(positions, box)`` (TorchScript wants one signature each)."""

    def forward(self, positions: torch.Tensor, box: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return _finite(self.cv(positions, box), self.name)


def _torch_force(module: torch.nn.Module, periodic: bool, path: str | os.PathLike | None) -> Any:
    problem = openmm_torch_problem()
    if problem is not None:
        raise RuntimeError(f"{problem}. {INSTALL_HINT}")
    openmmtorch = _import_openmmtorch()
    checked = (_FinitePeriodicCV if periodic else _FiniteCV)(_script(module), _cv_name(module))
    scripted = torch.jit.script(checked)
    if path is not None:
        path = os.fspath(path)
        scripted.save(path)
        force = openmmtorch.TorchForce(path)
    else:
        # openmm-torch >= 1.4 embeds a ScriptModule in the force: no file to keep alive.
        force = openmmtorch.TorchForce(scripted)
    force.setUsesPeriodicBoundaryConditions(periodic)  # True: forward(positions, box)
    return force


def _python_force(module: torch.nn.Module, periodic: bool, path: str | os.PathLike | None) -> Any:
    import openmm

    if not hasattr(openmm, "PythonForce"):
        raise RuntimeError(
            f"openmm.PythonForce needs OpenMM >= 8.5 (this is {openmm.__version__}); or use backend='torch'"
        )
    if path is not None:
        # Not needed by PythonForce, but honour the request: the TorchScript file is a useful artefact.
        _script(module).save(os.fspath(path))
    callback = PythonCV(module, periodic)
    # PythonForce pickles it whenever the force is copied: say so here, not as OpenMM's bare "could not be pickled"
    try:
        pickle.dumps(callback)
    except Exception as exc:  # PicklingError, AttributeError ("Can't pickle local object"), TypeError
        raise ValueError(
            f"backend='python' needs a CV module that pickles (openmm.PythonForce copies it whenever CustomCVForce, "
            f"metadynamics or XmlSerializer copy the force), and {_cv_name(module)} does not ({type(exc).__name__}: "
            f"{exc}): define its class at module level, not inside a function, keep no lambdas in it, or pass "
            "torch.jit.script(module)"
        ) from None
    force = openmm.PythonForce(callback)
    force.setUsesPeriodicBoundaryConditions(periodic)  # True: the State carries the box
    return force


#: backend name -> ``(module, periodic, path) -> openmm.Force``
BACKENDS: dict[str, Callable[[torch.nn.Module, bool, Any], Any]] = {
    "torch": _torch_force,
    "python": _python_force,
}


def torch_cv_force(
    module: torch.nn.Module,
    n_particles: int,
    *,
    backend: str = "auto",
    periodic: bool = False,
    path: str | os.PathLike | None = None,
) -> Any:
    """An OpenMM ``Force`` whose energy (kJ/mol) is the value of a PyTorch CV.

    Forces are ``-∂CV/∂x``, so the force is a valid ``CustomCVForce`` variable
    and ``openmm.app.metadynamics.BiasVariable(force, min, max, width)``.  Make a
    fresh force for each ``CustomCVForce``: adding one takes ownership of it.

    Parameters
    ----------
    module : ``torch.nn.Module`` (or ``ScriptModule``) with
        ``forward(positions [N, 3] nm) -> []`` — or ``forward(positions, box [3, 3] nm)``
        when ``periodic`` — see the module docstring for dtypes and periodicity.
    n_particles : particles in the System the force goes into (N); the module is
        tried once on random ``[N, 3]`` positions so a broken CV (non-scalar output,
        atom index out of range, not differentiable) fails here with a clear error.
    backend : ``"auto"`` (``"torch"`` when openmm-torch is usable, else
        ``"python"``), ``"torch"`` (``TorchForce``) or ``"python"`` (``PythonForce``).
    periodic : the CV uses periodic boundary conditions: the box is passed to the
        module and the force reports ``usesPeriodicBoundaryConditions()``.
    path : save the TorchScript module here (``.pt``); with ``"torch"`` the force
        is then built from that file, and the module saved is the CV inside a check that raises, naming the CV,
        where its value is not finite (it returns the CV's value unchanged).  Default: ``"torch"`` embeds the module in
        the force (nothing to keep on disk); ``"python"`` writes no file.

    Returns
    -------
    openmm.Force
        ``openmmtorch.TorchForce`` or ``openmm.PythonForce``, named
        ``"<backend> CV: <module class>"``.

    Raises
    ------
    ValueError
        unknown backend; the module fails on trial positions, returns a non-scalar
        or is not scriptable (``"torch"``).
    RuntimeError
        ``backend="torch"`` where openmm-torch is missing or unusable (the message
        says how to install it).
    """
    if backend == "auto":
        backend = available_backend()
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose 'auto' or one of {sorted(BACKENDS)}")
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if backend == "torch":
        # Say "install openmm-torch" before any trial evaluation error could mask it.
        problem = openmm_torch_problem()
        if problem is not None:
            raise RuntimeError(f"{problem}. {INSTALL_HINT}")
    _trial_check(module, n_particles, periodic)
    force = BACKENDS[backend](module, bool(periodic), path)
    force.setName(f"{backend} CV: {_cv_name(module)}")
    return force


def _cv_name(module: torch.nn.Module) -> str:
    """The CV's class name (a ScriptModule's is its ``original_name``)."""
    return getattr(module, "original_name", type(module).__name__)
