"""Compound scaling maths and the rounded stage tables (eq. 3, Table 1, the official B1-B8 table)."""
import math

import pytest

from mmeffnet.arch import (ARCHS, B0_STAGES, build_network_spec, compound_scaling, implied_phi, resolve_arch,
                           round_channels, round_repeats)


def test_round_channels_ten_percent_rule():
    assert round_channels(32, 1.2) == 40  # 38.4 -> 40
    assert round_channels(16, 1.2) == 24  # 19.2 -> 16 would be >10% low -> 24
    assert round_channels(112, 1.2) == 136  # 134.4 -> 136
    assert round_channels(1280, 1.2) == 1536
    assert round_channels(3, 1.0) == 8  # never below the divisor


def test_round_repeats_is_ceil():
    assert [round_repeats(r, 1.4) for r in (1, 2, 3, 4)] == [2, 3, 5, 6]
    assert round_repeats(3, 1.0) == 3


def test_b0_is_table_1():
    spec = build_network_spec('b0')
    assert spec.stem_channels == 32 and spec.head_channels == 1280
    rows = [(s.expand_ratio, s.kernel_size, s.stride, s.out_channels, s.repeats) for s in spec.stages]
    assert rows == [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
                    (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]
    assert [s.level for s in spec.stages] == [1, 2, 3, 4, 4, 5, 5]
    assert spec.num_blocks == 16


def test_b3_levels_match_the_mmdet_recipe_fpn():
    spec = build_network_spec('b3')
    assert spec.level_channels[3:6] == (48, 136, 384)
    assert spec.num_blocks == 26


def test_lite_keeps_stem_head_and_end_stages():
    spec = build_network_spec('lite4')
    assert spec.stem_channels == 32 and spec.head_channels == 1280
    assert spec.stages[0].repeats == B0_STAGES[0].repeats and spec.stages[-1].repeats == B0_STAGES[-1].repeats
    assert spec.stages[1].repeats == round_repeats(2, 1.8)
    assert spec.params.se_ratio == 0


def test_compound_scaling_eq3():
    d, w, r = compound_scaling(1)
    assert (d, w, r) == (pytest.approx(1.2), pytest.approx(1.1), 258)
    d, w, r = compound_scaling(3, 1.2, 1.1, 1.15)
    assert d == pytest.approx(1.2**3) and w == pytest.approx(1.1**3) and r == round(224 * 1.15**3)
    # FLOPs ratio ~ (alpha beta^2 gamma^2)^phi ~ 2^phi
    assert 1.2 * 1.1**2 * 1.15**2 == pytest.approx(1.92, abs=0.01)
    with pytest.raises(ValueError, match='alpha'):
        compound_scaling(1, alpha=0.9)


def test_arch_dict_forms():
    assert resolve_arch(dict(phi=0)).width_mult == 1.0
    p = resolve_arch(dict(phi=2, alpha=1.2, beta=1.1, gamma=1.15))
    assert p.depth_mult == pytest.approx(1.44) and p.resolution == round(224 * 1.15**2)
    p = resolve_arch(dict(width_mult=1.3, depth_mult=1.5, resolution=320, dropout=0.35))
    assert (p.width_mult, p.depth_mult, p.resolution, p.dropout) == (1.3, 1.5, 320, 0.35)
    with pytest.raises(KeyError, match='b0, b1'):
        resolve_arch('b9')
    with pytest.raises(KeyError, match='depth_mult'):
        resolve_arch(dict(width_mult=1.1))
    with pytest.raises(KeyError, match='unknown arch keys'):
        resolve_arch(dict(phi=1, delta=2))


def test_official_table_deviates_from_pure_eq3():
    """B1-B7 are rounded by hand: their implied phi differs per dimension (documented)."""
    d, w, r = implied_phi(ARCHS['b7'])
    assert 6 < d < 6.5 and 7 < w < 7.5 and 7 < r < 7.2
    assert math.isclose(implied_phi(ARCHS['b0'])[0], 0.0)
