"""Table 2 of the paper (params and FLOPs of B0-B7) as data, and our networks measured against it
(``tools/analysis/get_flops.py``). The check of eq. 3 against 2^phi is ``mmeffnet.search.eq3_check``."""
from dataclasses import dataclass
from typing import Dict, List, Tuple

import torch.nn as nn

from ..models import EfficientNet
from .complexity import count_macs, count_params

# Table 2: (#Params in millions, #FLOPs in billions of multiply-adds) with a 1000-class classifier.
TABLE2: Dict[str, Tuple[float, float]] = {
    'b0': (5.3, 0.39),
    'b1': (7.8, 0.70),
    'b2': (9.2, 1.0),
    'b3': (12, 1.8),
    'b4': (19, 4.2),
    'b5': (30, 9.9),
    'b6': (43, 19),
    'b7': (66, 37),
}
PARAM_TOLERANCE = 0.02
FLOP_TOLERANCE = 0.05


class ImageNetClassifier(nn.Module):
    """Backbone + global average pool + 1000-way linear layer: the network Table 2 counts."""

    def __init__(self, arch, num_classes: int = 1000):
        super().__init__()
        self.backbone = EfficientNet(arch)
        self.fc = nn.Linear(self.backbone.level_channels[-1], num_classes)

    def forward(self, x):
        return self.fc(self.backbone(x)[-1].mean((2, 3)))


@dataclass
class FidelityRow:
    arch: str
    resolution: int
    params_m: float
    paper_params_m: float
    macs_b: float
    paper_macs_b: float

    @property
    def params_error(self) -> float:
        return self.params_m / self.paper_params_m - 1

    @property
    def macs_error(self) -> float:
        return self.macs_b / self.paper_macs_b - 1

    @property
    def within_bounds(self) -> bool:
        return abs(self.params_error) <= PARAM_TOLERANCE and abs(self.macs_error) <= FLOP_TOLERANCE


def measure_against_table2(archs=tuple(TABLE2)) -> List[FidelityRow]:
    """Params and multiply-adds of each arch at its native resolution, beside Table 2."""
    rows = []
    for arch in archs:
        model = ImageNetClassifier(arch)
        res = model.backbone.spec.params.resolution
        rows.append(
            FidelityRow(arch, res,
                        count_params(model) / 1e6, TABLE2[arch][0],
                        count_macs(model, (1, 3, res, res)) / 1e9, TABLE2[arch][1]))
    return rows


def format_rows(rows: List[FidelityRow]) -> str:
    lines = [
        '| arch | res | params (M) | paper | diff | FLOPs (B MACs) | paper | diff |',
        '|---|---|---|---|---|---|---|---|'
    ]
    for r in rows:
        lines.append(f'| {r.arch} | {r.resolution} | {r.params_m:.2f} | {r.paper_params_m} | '
                     f'{r.params_error:+.1%} | {r.macs_b:.3f} | {r.paper_macs_b} | {r.macs_error:+.1%} |')
    return '\n'.join(lines)
