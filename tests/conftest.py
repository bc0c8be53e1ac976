"""Shared fixtures. Tests run on the CPU with one torch thread and one OpenMM CPU thread per worker
(pytest-xdist uses both cores; an OpenMM CPU context with more threads than free cores stalls at every
step's barrier, which made one example test take 16 minutes instead of 40 s)."""

from __future__ import annotations

import os

os.environ.setdefault("OPENMM_CPU_THREADS", "1")  # before OpenMM's CPU platform is loaded; scripts inherit it

import numpy as np
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def file_contents():
    """``file_contents(directory, pattern="**/*", skip=())``: ``{path: bytes}`` of the files under ``directory``
    matching ``pattern`` (names in ``skip`` left out), to check that a refused call changed nothing on disk."""

    def contents(directory, pattern="**/*", skip=()):
        return {f: f.read_bytes() for f in directory.glob(pattern) if f.is_file() and f.name not in skip}

    return contents


@pytest.fixture(scope="session")
def alanine():
    """Alanine dipeptide in vacuum: ``(topology, positions_nm [22, 3] float64)``."""
    from openmm import unit
    from openmmtools import testsystems

    ts = testsystems.AlanineDipeptideVacuum()
    return ts.topology, np.asarray(ts.positions.value_in_unit(unit.nanometer), dtype=np.float64)


@pytest.fixture(scope="session")
def alanine_graph(alanine):
    from biomd_core.featurize import featurize

    return featurize(alanine[0])


@pytest.fixture
def tiny_model():
    """A freshly initialised tiny model (seeded), with non-zero output weights so outputs depend on inputs."""
    from biomd_core.config import ModelConfig
    from biomd_core.featurize import DEFAULT_VOCABULARIES
    from biomd_core.model import BioMDModel
    from biomd_core.model.presets import get_preset

    torch.manual_seed(0)
    model = BioMDModel(ModelConfig(preset="tiny", network=get_preset("tiny")), DEFAULT_VOCABULARIES).eval()
    with torch.no_grad():
        for p in model.parameters():
            # Zero-initialised gates/outputs would make several tests trivially pass.
            if p.abs().sum() == 0:
                p.normal_(0.0, 0.05)
    return model
