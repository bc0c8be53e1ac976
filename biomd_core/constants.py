"""Units and physical constants used everywhere in ``biomd_core``.

The package works in OpenMM's MD unit system (nm, ps, kJ/mol, K, Da) internally;
conversion happens only at the edges (CLI parsing, file writers).
"""

LENGTH_UNIT = "nm"
TIME_UNIT = "ps"
ENERGY_UNIT = "kJ/mol"
TEMPERATURE_UNIT = "K"

#: Boltzmann constant in kJ/(mol K).
BOLTZMANN_KJ_PER_MOL_K = 0.008314462618

ANGSTROM_PER_NM = 10.0
PS_PER_NS = 1000.0
FS_PER_PS = 1000.0
