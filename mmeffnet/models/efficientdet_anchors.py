"""EfficientDet's anchors, registered as ``mmeffnet.EfficientDetAnchorGenerator`` (in the
``mmeffnet`` task-utils registry, which mmdet's heads build from).

mmdet's ``AnchorGenerator`` shapes anchors by an area-preserving h/w ratio: ratio 0.5 gives
(sqrt 2, 1 / sqrt 2) x the base size. The official EfficientDet code (google/automl
``anchors.py``) and effdet multiply the base size by (1.4, 0.7) instead: 1 % wider and 1 % lower.
This generator takes automl's (width, height) factors, so converted effdet weights decode to the same
boxes; everything else (octave scales, centres, grid layout, valid flags) is mmdet's.

This module imports mmdet; ``import mmeffnet`` does not import it.
"""
from typing import Optional, Sequence, Tuple

import torch
from mmdet.models.task_modules.prior_generators import AnchorGenerator

from ..arch.efficientdet import ANCHOR_ASPECTS, ANCHOR_STRIDES, SCALES_PER_OCTAVE
from ..registry import TASK_UTILS


@TASK_UTILS.register_module()
class EfficientDetAnchorGenerator(AnchorGenerator):
    """Anchors of ``len(aspects) x scales_per_octave`` shapes per location, centred in their cell.

    Args:
        anchor_scale (float): base size over the stride (4; D7: 5).
        strides (Sequence[int]): the levels' strides. Defaults to 8..128 (P3..P7).
        scales_per_octave (int): octave scales 2^(i / scales_per_octave). Defaults to 3.
        aspects (Sequence[Tuple[float, float]]): (width, height) factors of the base size, automl's
            ``((1.0, 1.0), (1.4, 0.7), (0.7, 1.4))`` by default.

    Anchor ``octave * len(aspects) + aspect`` of a location is automl's anchor of the same index.
    """

    def __init__(self,
                 anchor_scale: float = 4.0,
                 strides: Sequence[int] = ANCHOR_STRIDES,
                 scales_per_octave: int = SCALES_PER_OCTAVE,
                 aspects: Sequence[Tuple[float, float]] = ANCHOR_ASPECTS,
                 center_offset: float = 0.5):
        aspects = [tuple(float(f) for f in a) for a in aspects]
        if not aspects or any(len(a) != 2 or min(a) <= 0 for a in aspects):
            raise ValueError(f'aspects must be (width, height) pairs of positive factors, got {aspects!r}')
        self.aspects = aspects
        super().__init__(
            strides=list(strides),
            ratios=[h / w for w, h in aspects],  # mmdet counts its priors from ratios; the shapes come from aspects
            octave_base_scale=anchor_scale,
            scales_per_octave=scales_per_octave,
            scale_major=False,
            center_offset=center_offset)

    def gen_single_level_base_anchors(self,
                                      base_size: float,
                                      scales: torch.Tensor,
                                      ratios: torch.Tensor,
                                      center: Optional[Tuple[float, float]] = None) -> torch.Tensor:
        """The anchors of one location of a level, octave-major, as ``(x1, y1, x2, y2)``."""
        if center is None:
            x_center = y_center = self.center_offset * base_size
        else:
            x_center, y_center = center
        factors = torch.tensor(self.aspects, dtype=scales.dtype, device=scales.device)
        ws = (base_size * scales[:, None] * factors[None, :, 0]).reshape(-1)
        hs = (base_size * scales[:, None] * factors[None, :, 1]).reshape(-1)
        return torch.stack([x_center - 0.5 * ws, y_center - 0.5 * hs, x_center + 0.5 * ws, y_center + 0.5 * hs], dim=-1)
