"""Step 1 of the paper's compound scaling: the grid of (alpha, beta, gamma) for eq. 3.

Eq. 3 scales depth by ``alpha^phi``, width by ``beta^phi`` and resolution by ``gamma^phi`` under
``alpha * beta^2 * gamma^2 ~= 2`` and ``alpha, beta, gamma >= 1``, so that FLOPs grow by about
``2^phi``. The tolerance here is relative: a triple is on the grid when
``|alpha * beta^2 * gamma^2 / 2 - 1| <= tolerance`` (the paper's 1.2, 1.1, 1.15 gives 1.92, -4%).
"""
import math
from dataclasses import dataclass
from typing import Iterable, List, Sequence, Tuple

FLOPS_TARGET = 2.0  # the paper's alpha * beta^2 * gamma^2 ~= 2


@dataclass(frozen=True, order=True)
class Coefficients:
    """One (alpha, beta, gamma) of eq. 3."""
    alpha: float
    beta: float
    gamma: float

    @property
    def flops_factor(self) -> float:
        """``alpha * beta^2 * gamma^2``: eq. 3's FLOPs growth per unit of phi."""
        return self.alpha * self.beta**2 * self.gamma**2

    @property
    def name(self) -> str:
        return f'a{self.alpha:g}_b{self.beta:g}_g{self.gamma:g}'

    def multipliers(self, phi: float) -> Tuple[float, float, float]:
        """``(depth, width, resolution)`` multipliers ``(alpha^phi, beta^phi, gamma^phi)``."""
        return self.alpha**phi, self.beta**phi, self.gamma**phi


def check_phi(phi: float) -> float:
    if not isinstance(phi, (int, float)) or isinstance(phi, bool) or not phi > 0 or math.isinf(phi):
        raise ValueError(f'phi must be a positive number (1 = twice the FLOPs), got phi={phi!r}')
    return float(phi)


def _check_tolerance(tolerance: float) -> None:
    if not 0 < tolerance < 1:
        raise ValueError(f'tolerance must be in (0, 1) (relative to alpha*beta^2*gamma^2 = 2), '
                         f'got tolerance={tolerance!r}')


def check_coefficients(coeffs: Coefficients, tolerance: float) -> Coefficients:
    """Raise ``ValueError`` naming the value if ``coeffs`` break eq. 3's constraints."""
    _check_tolerance(tolerance)
    for name in ('alpha', 'beta', 'gamma'):
        value = getattr(coeffs, name)
        if not value >= 1:
            raise ValueError(f'eq. 3 requires {name} >= 1, got {name}={value!r} in {coeffs.name}')
    if abs(coeffs.flops_factor / FLOPS_TARGET - 1) > tolerance:
        raise ValueError(f'{coeffs.name}: alpha*beta^2*gamma^2 = {coeffs.flops_factor:.4f} is not '
                         f'{FLOPS_TARGET:g} within tolerance {tolerance:g} '
                         f'({coeffs.flops_factor / FLOPS_TARGET - 1:+.1%})')
    return coeffs


def grid_values(step: float, upper: float) -> List[float]:
    """``1, 1 + step, 1 + 2 step, ...`` up to ``upper`` (rounded to avoid float drift)."""
    if not 0 < step <= 1:
        raise ValueError(f'grid step must be in (0, 1], got grid_step={step!r}')
    count = int(math.floor((upper - 1) / step + 1e-9))
    return [round(1 + i * step, 10) for i in range(count + 1)]


def enumerate_grid(step: float = 0.05, tolerance: float = 0.05) -> List[Coefficients]:
    """Every (alpha, beta, gamma) on a grid of ``step`` from 1 with ``alpha * beta^2 * gamma^2``
    within ``tolerance`` of 2, sorted by alpha, then beta, then gamma.

    Raises ``ValueError`` naming the step, tolerance and the closest product when none fits.
    """
    _check_tolerance(tolerance)
    upper = FLOPS_TARGET * (1 + tolerance)  # no single coefficient can exceed this
    alphas = grid_values(step, upper)
    others = grid_values(step, math.sqrt(upper))
    found, closest = [], None
    for alpha in alphas:
        for beta in others:
            for gamma in others:
                c = Coefficients(alpha, beta, gamma)
                miss = abs(c.flops_factor / FLOPS_TARGET - 1)
                if closest is None or miss < closest[0]:
                    closest = (miss, c)
                if miss <= tolerance:
                    found.append(c)
    if not found:
        miss, c = closest
        raise ValueError(f'no (alpha, beta, gamma) on a grid of step {step:g} has alpha*beta^2*gamma^2 within '
                         f'tolerance {tolerance:g} of {FLOPS_TARGET:g}; the closest is {c.name} with '
                         f'{c.flops_factor:.4f} ({c.flops_factor / FLOPS_TARGET - 1:+.1%}). Use a smaller '
                         f'--grid-step or a larger --tolerance')
    return found


def parse_coefficients(texts: Iterable[str], tolerance: float) -> List[Coefficients]:
    """Parse ``'1.2,1.1,1.15'`` strings into checked ``Coefficients``."""
    result = []
    for text in texts:
        parts = [p for p in str(text).replace(' ', ',').split(',') if p]
        try:
            values: Sequence[float] = [float(p) for p in parts]
        except ValueError:
            values = []
        if len(values) != 3:
            raise ValueError(f'candidate {text!r} is not "alpha,beta,gamma" (three numbers, e.g. 1.2,1.1,1.15)')
        result.append(check_coefficients(Coefficients(*values), tolerance))
    return result
