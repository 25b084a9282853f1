"""The paper's compound scaling method as a tool (section 3.3 and 4 of Tan & Le, 2019).

Step 1 (``tools/compound_search.py``): for phi = 1, every (alpha, beta, gamma) on a grid with
alpha * beta^2 * gamma^2 ~= 2, each scaled from one config, measured, and optionally trained for a
short budget and ranked. Step 2 (``tools/scale_family.py``): fixed coefficients, phi = 1..N, written
as configs.
"""
from .config_complexity import Complexity, measure_config
from .config_scaling import Multipliers, ScaledConfig, find_backbone, input_size, scale_config
from .family import make_family, write_family
from .grid import Coefficients, check_coefficients, check_phi, enumerate_grid, parse_coefficients
from .plan import Plan, ScaledModel, make_plan
from .search import run_search, search_config

__all__ = [
    'Coefficients', 'Complexity', 'Multipliers', 'Plan', 'ScaledConfig', 'ScaledModel', 'check_coefficients',
    'check_phi', 'enumerate_grid', 'find_backbone', 'input_size', 'make_family', 'make_plan', 'measure_config',
    'parse_coefficients', 'run_search', 'scale_config', 'search_config', 'write_family'
]
