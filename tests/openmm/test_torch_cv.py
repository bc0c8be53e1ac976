"""PyTorch CVs inside OpenMM: ``TorchForce`` and ``PythonForce`` against equivalent OpenMM custom forces.

The ``PythonForce`` backend runs here (the project's CPU torch).  The
``TorchForce`` backend runs in the nested openmm-torch environment
(``.venv/openmm-torch``, built by ``make setup``/``make test``), through
:mod:`openmm_biomd.enhanced.torch_cv_probe` in a subprocess; both answer the
same request, and both are compared with the same OpenMM references computed
here (``CustomCentroidBondForce``, ``CustomBondForce``) on the Reference
platform (double precision), alone and inside ``CustomCVForce``, and used as
a metadynamics ``BiasVariable`` on the CPU platform.  Nothing is skipped: a
missing openmm-torch environment is a failure.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import openmm
import pytest
import torch

from openmm_biomd.data.metadynamics import centroid_distance_force, select_atoms
from openmm_biomd.data.systems import get_system
from openmm_biomd.enhanced.torch_cv import (
    CentroidDistance,
    CoordinationNumber,
    available_backend,
    cv_module_from_spec,
    evaluate_cv,
    openmm_torch_problem,
    torch_cv_force,
)
from openmm_biomd.enhanced.torch_cv_probe import evaluate_force, run_request

REPO = Path(__file__).resolve().parents[2]
TORCH_ENV_PYTHON = REPO / ".venv" / "openmm-torch" / "bin" / "python"

RESTRAINT = {"k": 1000.0, "x0": 0.2}  # kJ/mol/nm², nm: CustomCVForce "k*(cv-x0)^2"
R0_NM = 0.45  # coordination switching distance
# Reference platform, float64 everywhere: only summation order differs.
RTOL, ATOL = 1e-9, 1e-10
# A triclinic box in OpenMM's reduced form (a along x, b in the xy-plane), nm.
BOX_NM = [[2.0, 0.0, 0.0], [0.5, 2.0, 0.0], [0.3, 0.4, 2.0]]


# --------------------------------------------------------------------------- inputs and references


@pytest.fixture(scope="module")
def host_guest():
    """CB7–B2: ``(system, positions [156, 3] nm, ligand atoms, pocket atoms)`` — ligand B2, pocket CUC heavy atoms."""
    loaded = get_system("host-guest").load()
    ligand = select_atoms(loaded.topology, "resname B2")
    pocket = select_atoms(loaded.topology, "resname CUC and not element H")
    return loaded.system, loaded.positions, ligand, pocket


def _configurations(positions: np.ndarray, ligand: np.ndarray) -> np.ndarray:
    """``[3, N, 3]`` nm: the input pose, the ligand displaced by 0.3 nm, and displaced + rotated (off-axis)."""
    shifted = positions.copy()
    shifted[ligand] += [0.3, 0.0, 0.0]
    rotated = shifted.copy()
    angle = 0.7
    rot = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]])
    centre = rotated[ligand].mean(0)
    rotated[ligand] = (rotated[ligand] - centre) @ rot.T + centre + [0.1, -0.25, 0.4]
    return np.stack([positions, shifted, rotated])


def _coordination_reference(ligand: np.ndarray, pocket: np.ndarray) -> openmm.Force:
    """``CustomBondForce`` twin of :class:`CoordinationNumber` (n = 6): one bond per ligand–pocket pair."""
    force = openmm.CustomBondForce("1/(1+(r/r0)^6)")
    force.addGlobalParameter("r0", R0_NM)
    for i in ligand:
        for j in pocket:
            force.addBond(int(i), int(j), [])
    return force


def _periodic_case() -> tuple[np.ndarray, list[int], list[int]]:
    """Toy periodic system: ``[2, 8, 3]`` nm configurations whose groups are nearest across the box faces."""
    rng = np.random.default_rng(3)
    a = rng.normal(0.0, 0.08, size=(4, 3)) + [0.1, 0.1, 0.1]  # near the origin corner
    b = rng.normal(0.0, 0.08, size=(4, 3)) + [1.5, 1.8, 1.85]  # near the far corner: nearest image is across
    first = np.concatenate([a, b])
    second = first.copy()
    second[4:] += [-0.1, -0.1, 0.1]
    return np.stack([first, second]), [0, 1, 2, 3], [4, 5, 6, 7]


@pytest.fixture(scope="module")
def request_and_references(host_guest):
    """The probe request (both backends answer the same one) and the OpenMM references for it."""
    system, positions, ligand, pocket = host_guest
    configurations = _configurations(positions, ligand)
    periodic_confs, group_a, group_b = _periodic_case()
    specs = {
        "distance": {"kind": "centroid-distance", "group_a": ligand.tolist(), "group_b": pocket.tolist()},
        "coordination": {"kind": "coordination-number", "group_a": ligand.tolist(), "group_b": pocket.tolist(),
                         "r0_nm": R0_NM, "n": 6},
    }
    request = {
        "evaluations": [
            {"n_particles": len(positions), "cvs": specs, "configurations": configurations.tolist(),
             "restraint": RESTRAINT, "platform": "Reference"},
            {"n_particles": 8, "box": BOX_NM, "restraint": RESTRAINT, "platform": "Reference",
             "cvs": {"distance": {"kind": "centroid-distance", "group_a": group_a, "group_b": group_b}},
             "configurations": periodic_confs.tolist()},
        ],
        "metadynamics": {
            "system_xml": openmm.XmlSerializer.serialize(system), "positions": positions.tolist(),
            "cv": specs["distance"], "min": 0.0, "max": 1.5, "width": 0.05, "steps": 200, "frequency": 20,
            "height_kj_mol": 2.0, "bias_factor": 5.0, "temperature_k": 300.0, "timestep_fs": 2.0, "seed": 7,
            "platform": "CPU",
        },
    }
    references = [
        {
            "distance": evaluate_force(lambda: centroid_distance_force(ligand, pocket, False), configurations,
                                       restraint=RESTRAINT),
            "coordination": evaluate_force(lambda: _coordination_reference(ligand, pocket), configurations,
                                           restraint=RESTRAINT),
        },
        {
            "distance": evaluate_force(lambda: centroid_distance_force(np.array(group_a), np.array(group_b), True),
                                       periodic_confs, box_nm=BOX_NM, restraint=RESTRAINT),
        },
    ]
    return request, references


@pytest.fixture(scope="module")
def python_response(request_and_references):
    """The request answered here with ``backend="python"`` (``openmm.PythonForce``)."""
    request, _ = request_and_references
    return run_request({**request, "backend": "python"})


@pytest.fixture(scope="module")
def torch_response(request_and_references, tmp_path_factory):
    """The request answered in ``.venv/openmm-torch`` with ``backend="torch"`` (openmm-torch's ``TorchForce``)."""
    if not TORCH_ENV_PYTHON.exists():
        pytest.fail(
            f"the openmm-torch environment is missing ({TORCH_ENV_PYTHON}): run `make setup` "
            "(or `make openmm-torch`) — TorchForce CVs are tested for real, never skipped"
        )
    request, _ = request_and_references
    path = tmp_path_factory.mktemp("torch_cv") / "request.json"
    path.write_text(json.dumps({**request, "backend": "torch"}))
    proc = subprocess.run(
        [str(TORCH_ENV_PYTHON), "-m", "openmm_biomd.enhanced.torch_cv_probe", str(path)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"the TorchForce probe failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout)


# --------------------------------------------------------------------------- both backends vs OpenMM


def _assert_matches(response: dict, references: list[dict]) -> None:
    for job, (got_job, ref_job) in enumerate(zip(response["evaluations"], references, strict=True)):
        for name, ref in ref_job.items():
            got = got_job[name]
            where = f"evaluation {job}, CV {name!r}"
            np.testing.assert_allclose(got["cv_values"], ref["cv_values"], rtol=RTOL, atol=ATOL, err_msg=where)
            for mode in ("alone", "restrained"):
                for i, (g, r) in enumerate(zip(got[mode], ref[mode], strict=True)):
                    np.testing.assert_allclose(g["energy"], r["energy"], rtol=RTOL, atol=ATOL,
                                               err_msg=f"{where}, {mode} energy, configuration {i}")
                    np.testing.assert_allclose(g["forces"], r["forces"], rtol=1e-8, atol=ATOL,
                                               err_msg=f"{where}, {mode} forces, configuration {i}")
            # Inside CustomCVForce the chain rule must scale the CV forces by dU/dcv = 2k(cv - x0).
            for cv, alone, restrained in zip(got["cv_values"], got["alone"], got["restrained"]):
                np.testing.assert_allclose(alone["energy"], cv, rtol=RTOL, atol=ATOL)
                scale = 2.0 * RESTRAINT["k"] * (cv - RESTRAINT["x0"])
                np.testing.assert_allclose(restrained["forces"], scale * np.asarray(alone["forces"]),
                                           rtol=1e-8, atol=1e-9, err_msg=where)
                np.testing.assert_allclose(restrained["energy"], RESTRAINT["k"] * (cv - RESTRAINT["x0"]) ** 2,
                                           rtol=RTOL, atol=ATOL, err_msg=where)


def test_references_are_not_trivial(request_and_references):
    """The configurations move the CV and give non-zero forces, so matching them means something."""
    _, references = request_and_references
    distance = references[0]["distance"]["cv_values"]
    assert distance[1] > distance[0] + 0.25  # ligand displaced by 0.3 nm
    assert min(np.abs(r["forces"]).max() for r in references[0]["coordination"]["alone"]) > 0.1
    periodic = references[1]["distance"]["cv_values"]
    # Nearest images: well below the ~2.8 nm the raw centroids are apart.
    assert all(0.5 < v < 1.5 for v in periodic)


def test_python_force_cv_matches_openmm_custom_forces(python_response, request_and_references):
    assert python_response["backend"] == "python"
    _assert_matches(python_response, request_and_references[1])


def test_torch_force_cv_matches_openmm_custom_forces(torch_response, request_and_references):
    # The probe ran backend="torch": a TorchForce from a TorchScript module, never the PythonForce fallback.
    assert torch_response["backend"] == "torch"
    assert torch_response["versions"]["torch"].startswith("2.9.1")
    _assert_matches(torch_response, request_and_references[1])


@pytest.mark.parametrize("backend", ["python", "torch"])
def test_metadynamics_with_torch_cv_as_bias_variable(backend, python_response, torch_response):
    meta = (python_response if backend == "python" else torch_response)["metadynamics"]
    assert meta["n_hills"] == 10  # 200 steps, a hill every 20
    assert len(meta["cv_values"]) == 10 and np.isfinite(meta["cv_values"]).all()
    assert all(0.0 <= v < 1.5 for v in meta["cv_values"])  # the guest stays in the host in 0.4 ps
    assert meta["bias_energy_kj_mol"] > 0.0
    assert meta["free_energy_range_kj_mol"] > 0.0
    assert np.isfinite(meta["potential_energy_kj_mol"])


# --------------------------------------------------------------------------- API details


def test_auto_backend_here_is_python_force(host_guest):
    """The main environment has no openmm-torch: "auto" must fall back to PythonForce, and say why."""
    _, positions, ligand, pocket = host_guest
    assert available_backend() == "python"
    assert "openmmtorch" in openmm_torch_problem()
    force = torch_cv_force(CentroidDistance(ligand, pocket), len(positions))
    assert isinstance(force, openmm.PythonForce)
    assert force.getName() == "python CV: CentroidDistance"
    assert not force.usesPeriodicBoundaryConditions()


def test_torch_backend_without_openmm_torch_says_how_to_install(host_guest):
    _, positions, ligand, pocket = host_guest
    with pytest.raises(RuntimeError) as info:
        torch_cv_force(CentroidDistance(ligand, pocket), len(positions), backend="torch")
    message = str(info.value)
    assert "torch==2.9.1" in message and "openmmtorch==1.5" in message and "make openmm-torch" in message


class _PerAtomDistances(torch.nn.Module):
    """Not a CV: a vector."""

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return positions.norm(dim=-1)


class _Constant(torch.nn.Module):
    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return torch.tensor(1.0, dtype=positions.dtype)


class _NotScriptable(torch.nn.Module):
    def forward(self, positions):  # runs eagerly, but TorchScript cannot compile **kwargs
        return _sum_all(**{"x": positions})


def _sum_all(**kwargs):
    return sum(v.sum() for v in kwargs.values())


class _OfItsParameterOnly(torch.nn.Module):
    """Differentiable, but not in the positions: a constant CV with zero forces."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(1.0, dtype=torch.float64))

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.w * 2.0


class _FiniteOnlyNearTheOrigin(torch.nn.Module):
    """Finite on the trial positions (0–3 nm), NaN where atom 0 has x > 3 nm."""

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(3.0 - positions[0, 0])


class _FailsFarFromTheOrigin(torch.nn.Module):
    """Works on the trial positions (0–3 nm), raises where atom 0 has x > 3 nm."""

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        if bool(positions[0, 0].detach() > 3.0):
            raise IndexError("no table entry that far out")
        return positions[0, 0]


def test_bad_numbers_for_the_shipped_cvs_are_refused():
    """Each had been a bare Python error, or accepted: r0 = inf a constant CV of no force, 5.7 particles cut to 5."""
    for kwargs, message in ((dict(r0_nm=np.inf), "r0_nm must be a finite distance > 0"),
                            (dict(n=np.inf), "n must be an even integer from 2 to 24, got inf"),
                            (dict(n=1000), "from 2 to 24, got 1000"), (dict(n=7), "from 2 to 24, got 7")):
        with pytest.raises(ValueError, match=message):
            CoordinationNumber([0], [1], **kwargs)
    for n_particles in (5.7, float("nan"), 0, True):
        with pytest.raises(ValueError, match="n_particles must be a whole number >= 1"):
            torch_cv_force(CentroidDistance([0], [1]), n_particles, backend="python")
    with pytest.raises(TypeError, match="a CV spec is a dict with a 'kind'"):
        cv_module_from_spec(["centroid-distance"])


def test_a_module_that_does_not_pickle_is_refused_with_the_remedy():
    """PythonForce pickles its callback whenever the force is copied: a class made inside a function had passed,
    then failed in the Context of a CustomCVForce with OpenMM's bare "function could not be pickled"."""

    class MadeInAFunction(torch.nn.Module):
        def forward(self, positions: torch.Tensor) -> torch.Tensor:
            return positions[0, 0] * 1.0

    with pytest.raises(ValueError, match="needs a CV module that pickles .* MadeInAFunction does not .*define its "
                                         "class at module level"):
        torch_cv_force(MadeInAFunction(), 4, backend="python")
    # scripted, it pickles as TorchScript bytes, and serves inside a CustomCVForce
    cv = openmm.CustomCVForce("2*x")
    cv.addCollectiveVariable("x", torch_cv_force(torch.jit.script(MadeInAFunction()), 4, backend="python"))
    system = openmm.System()
    for _ in range(4):
        system.addParticle(1.0)
    system.addForce(cv)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(np.eye(4, 3) * 0.7)
    energy = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)
    assert energy == pytest.approx(1.4)


_NAN_IN_THE_SIMULATION = """
import torch  # before openmm, whose plugin loader otherwise fails to load openmm-torch's kernels without a word

import numpy as np
import openmm

from openmm_biomd.enhanced.torch_cv import torch_cv_force


class FiniteOnlyNearTheOrigin(torch.nn.Module):
    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(3.0 - positions[0, 0])


system = openmm.System()
for _ in range(4):
    system.addParticle(1.0)
restraint = openmm.CustomCVForce("10*cv")
restraint.addCollectiveVariable("cv", torch_cv_force(FiniteOnlyNearTheOrigin(), 4, backend="torch"))
system.addForce(restraint)
context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
context.setPositions(np.array([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]]))
print("finite:", context.getState(getEnergy=True).getPotentialEnergy()._value)
context.setPositions(np.array([[5.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]]))
try:
    context.getState(getEnergy=True, getForces=True)
except openmm.OpenMMException as exc:
    print(str(exc).strip().splitlines()[-1])
else:
    print("no error")
"""


def test_torch_backend_names_a_cv_that_turns_non_finite_in_the_simulation(tmp_path):
    """Finite on the trial positions, NaN in the simulation: TorchForce had given NaN energies, then NaN coordinates,
    without a word (the python backend named the CV); now both do, in openmm-torch's own environment."""
    if not TORCH_ENV_PYTHON.exists():
        pytest.fail(f"the openmm-torch environment is missing ({TORCH_ENV_PYTHON}): run `make setup`")
    script = tmp_path / "nan_in_the_simulation.py"
    script.write_text(_NAN_IN_THE_SIMULATION)
    proc = subprocess.run([str(TORCH_ENV_PYTHON), str(script)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    finite, last = proc.stdout.strip().splitlines()[-2:]
    assert float(finite.split()[-1]) == pytest.approx(10 * np.sqrt(2.0))  # the check returns the CV as it is
    assert last == ("builtins.RuntimeError: the PyTorch CV FiniteOnlyNearTheOrigin gave a non-finite value at the "
                    "simulation's positions: make it finite wherever the atoms can go")


def test_clear_errors_for_broken_modules(tmp_path):
    with pytest.raises(ValueError, match="must return a scalar.*shape \\(5,\\)"):
        torch_cv_force(_PerAtomDistances(), 5, backend="python")
    with pytest.raises(ValueError, match="does not depend differentiably"):
        torch_cv_force(_Constant(), 5, backend="python")
    with pytest.raises(ValueError, match="only on its parameters or constants"):
        torch_cv_force(_OfItsParameterOnly(), 5, backend="python")
    with pytest.raises(TypeError, match=r"cannot be called as forward\(positions \[N, 3\], box \[3, 3\]\) "
                                        r"\(periodic=True\)"):
        torch_cv_force(_PerAtomDistances(), 5, backend="python", periodic=True)
    with pytest.raises(TypeError, match="boolean mask"):
        CentroidDistance(np.array([True, False, True]), [1])
    # finite on the trial positions, NaN in the simulation: the CV is named there, not NaN coordinates later
    system = openmm.System()
    for _ in range(4):
        system.addParticle(1.0)
    system.addForce(torch_cv_force(_FiniteOnlyNearTheOrigin(), 4, backend="python"))
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(np.array([[5.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]]))
    with pytest.raises(openmm.OpenMMException, match="the PyTorch CV _FiniteOnlyNearTheOrigin gave a non-finite"):
        context.getState(getEnergy=True)
    # one that raises there: the CV named too (OpenMM had passed on the bare message, which the CLI took for bad
    # inputs)
    system.removeForce(0)
    system.addForce(torch_cv_force(_FailsFarFromTheOrigin(), 4, backend="python"))
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(np.array([[5.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]]))
    with pytest.raises(openmm.OpenMMException, match=r"the PyTorch CV _FailsFarFromTheOrigin failed at the "
                                                     r"simulation's positions \(IndexError: no table entry"):
        context.getState(getEnergy=True)
    with pytest.raises(ValueError, match="failed on trial positions \\[5, 3\\]"):
        torch_cv_force(CentroidDistance([0, 1], [7]), 5, backend="python")  # atom 7 of 5
    with pytest.raises(ValueError, match=r"(?s)torch.jit.script, which failed for _NotScriptable: .* or use "
                                         r"backend='python' without path="):
        torch_cv_force(_NotScriptable(), 5, backend="python", path=tmp_path / "cv.pt")
    with pytest.raises(ValueError, match=r"box_nm must be the \[3, 3\] box vectors .* got shape \(3,\)"):
        evaluate_cv(CentroidDistance([0], [1]), np.eye(3), [3.0, 3.0, 3.0])
    with pytest.raises(ValueError, match="unknown backend 'jax'"):
        torch_cv_force(CentroidDistance([0], [1]), 5, backend="jax")
    with pytest.raises(ValueError, match="share atoms"):
        CoordinationNumber([0, 1], [1, 2])
    with pytest.raises(ValueError, match="even integer"):
        CoordinationNumber([0], [1], n=5)
    with pytest.raises(ValueError, match="empty"):
        CentroidDistance([], [1])
    with pytest.raises(ValueError, match="unknown CV kind 'rmsd'"):
        cv_module_from_spec({"kind": "rmsd"})
    with pytest.raises(ValueError, match="bad 'centroid-distance' CV spec"):
        cv_module_from_spec({"kind": "centroid-distance", "group_a": [0], "group_b": [1], "weights": [1.0]})


def test_python_force_survives_serialization_with_scripted_module(tmp_path):
    """PythonForce pickles its callback on every copy; a ScriptModule travels as TorchScript bytes."""
    positions = np.random.default_rng(0).uniform(0.0, 2.0, size=(6, 3))
    module = CentroidDistance([0, 1, 2], [3, 4])
    path = tmp_path / "cv.pt"
    force = torch_cv_force(torch.jit.script(module), 6, backend="python", path=path)
    assert path.exists() and isinstance(torch.jit.load(str(path)), torch.jit.ScriptModule)
    copy = openmm.XmlSerializer.clone(force)
    expected, expected_forces = evaluate_cv(module, positions)
    for f in (force, copy):
        result = evaluate_force(lambda f=f: openmm.XmlSerializer.clone(f), positions[None])
        assert result["alone"][0]["energy"] == pytest.approx(expected, rel=1e-12)
        np.testing.assert_allclose(result["alone"][0]["forces"], expected_forces, rtol=1e-10, atol=1e-12)


def test_periodic_centroid_distance_ignores_wrapping():
    """Atoms wrapped into the box one by one (as PythonForce may pass them) give the same CV and forces."""
    configurations, group_a, group_b = _periodic_case()
    box = np.asarray(BOX_NM)
    module = CentroidDistance(group_a, group_b)
    for xyz in configurations:
        # Wrap each atom into the reduced box: subtract whole box vectors, c then b then a.
        wrapped = xyz.copy()
        for k in (2, 1, 0):
            wrapped -= np.floor(wrapped[:, k:k + 1] / box[k, k]) * box[k]
        wrapped[0] += box[0]  # and push one atom a whole box away for good measure
        assert np.abs(wrapped - xyz).max() > 1.0
        value, forces = evaluate_cv(module, xyz, box)
        value_w, forces_w = evaluate_cv(module, wrapped, box)
        assert value_w == pytest.approx(value, rel=1e-12)
        np.testing.assert_allclose(forces_w, forces, rtol=1e-10, atol=1e-12)


def test_evaluate_cv_works_under_no_grad_and_float32_modules_are_dtype_generic():
    positions = np.random.default_rng(1).uniform(0.0, 2.0, size=(6, 3))
    module = CoordinationNumber([0, 1], [3, 4, 5], r0_nm=0.6)
    with torch.no_grad():
        value, forces = evaluate_cv(module, positions)
    assert np.abs(forces).max() > 0
    # TorchForce passes float32 on CUDA/OpenCL single/mixed precision: same CV to float32 accuracy.
    value32 = float(module(torch.tensor(positions, dtype=torch.float32)))
    assert value32 == pytest.approx(value, rel=1e-5)
