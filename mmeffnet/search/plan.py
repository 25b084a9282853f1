"""The models of a compound-scaling search or family, each scaled from one config and measured."""
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from mmengine.config import Config

from ..arch import build_network_spec
from ..config import toolbox_of
from .config_complexity import Complexity, measure_config, network_key
from .config_scaling import Multipliers, ScaledConfig, default_size_divisor, find_backbone, input_size, scale_config
from .grid import Coefficients, check_phi


@dataclass
class ScaledModel:
    """One scaled member: its coefficients, its config and what it costs."""
    name: str
    coeffs: Coefficients
    phi: float
    scaled: ScaledConfig
    complexity: Complexity
    same_as: Optional[str] = None  # an earlier member that builds the identical network

    @property
    def arch(self) -> dict:
        return self.scaled.arch

    def blocks(self) -> int:
        return build_network_spec(self.arch).num_blocks


@dataclass
class Plan:
    """A baseline config and its scaled members, all measured the same way."""
    cfg: Config
    toolbox: str
    baseline: Complexity
    baseline_arch: object
    baseline_blocks: int
    size_divisor: int
    members: List[ScaledModel]

    def ratio(self, member: ScaledModel) -> float:
        return member.complexity.macs / self.baseline.macs

    def params_ratio(self, member: ScaledModel) -> float:
        return member.complexity.params / self.baseline.params

    def backbone_ratio(self, member: ScaledModel) -> float:
        return member.complexity.backbone_macs / self.baseline.backbone_macs


def make_plan(cfg: Config,
              points: Sequence[Tuple[Coefficients, float]],
              size_divisor: Optional[int] = None,
              name_by_phi: bool = False) -> Plan:
    """Scale ``cfg`` by each ``(coefficients, phi)`` of ``points`` (eq. 3) and measure every model.

    Members that round to the same network and input size are measured once and point at the
    first one (``same_as``)."""
    toolbox = toolbox_of(cfg)
    backbone, _, _ = find_backbone(cfg)
    if size_divisor is None:
        size_divisor = default_size_divisor(cfg)
    baseline = measure_config(cfg)
    members: List[ScaledModel] = []
    first_of: Dict[tuple, ScaledModel] = {}
    for coeffs, phi in points:
        check_phi(phi)
        scaled = scale_config(cfg, Multipliers(*coeffs.multipliers(phi)), size_divisor)
        size = input_size(scaled.cfg)
        key = network_key(scaled.cfg, size)
        twin = first_of.get(key)
        if twin is not None:
            complexity = twin.complexity
        else:
            try:
                complexity = measure_config(scaled.cfg, size, level=baseline.counted)
            except Exception as exc:
                raise ValueError(f'{coeffs.name} (phi={phi:g}): the scaled model fails where the baseline '
                                 f'works ({baseline.counted} forward): {type(exc).__name__}: {exc}. '
                                 'Changes made: ' + '; '.join(scaled.changes)) from exc
        name = f'phi{phi:g}' if name_by_phi else coeffs.name
        member = ScaledModel(name, coeffs, phi, scaled, complexity, twin.name if twin is not None else None)
        first_of.setdefault(key, member)
        members.append(member)
    arch = backbone.get('arch', 'b0')
    return Plan(cfg, toolbox, baseline, arch, build_network_spec(arch).num_blocks, size_divisor, members)
