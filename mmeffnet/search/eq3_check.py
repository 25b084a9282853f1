"""The documented check of eq. 3: the pure eq. 3 family from B0 against 2^phi, and the official
B1-B7 against eq. 3 (``python tools/scale_family.py --paper-check``).

The network counted is Table 2's (``mmeffnet.analysis.table2.ImageNetClassifier``: backbone, global
pooling, 1000-way linear layer) at each member's own resolution, with the official rounding
(channels to multiples of 8 never 10% below, block counts rounded up).
"""
from typing import List, Tuple

import torch

from ..analysis.complexity import count_macs, count_params
from ..analysis.table2 import TABLE2, ImageNetClassifier
from ..arch import (ARCHS, BASE_RESOLUTION, PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA, build_network_spec, compound_scaling,
                    implied_phi)
from .report import markdown_table


def _cost(arch, resolution: int) -> Tuple[int, int]:
    with torch.device('meta'):
        model = ImageNetClassifier(arch)
        return count_params(model), count_macs(model, (1, 3, resolution, resolution))


def eq3_family_rows(phi_max: int = 7,
                    alpha: float = PAPER_ALPHA,
                    beta: float = PAPER_BETA,
                    gamma: float = PAPER_GAMMA) -> List[dict]:
    """Pure eq. 3 from B0 for phi = 0..phi_max, rounded as the TF release rounds, measured."""
    base_params, base_macs = _cost('b0', BASE_RESOLUTION)
    rows = []
    for phi in range(0, phi_max + 1):
        depth, width, res = compound_scaling(phi, alpha, beta, gamma)
        arch = dict(width_mult=width, depth_mult=depth, resolution=res)
        params, macs = _cost(arch, res)
        rows.append(
            dict(
                phi=phi,
                depth=depth,
                width=width,
                resolution=res,
                blocks=build_network_spec(arch).num_blocks,
                params=params,
                macs=macs,
                nominal=depth * width**2 * (res / BASE_RESOLUTION)**2,
                ratio=macs / base_macs,
                params_ratio=params / base_params))
    return rows


def official_rows() -> List[dict]:
    """B0-B7 of the TF release: their multipliers, the phi each implies, their measured cost."""
    base_params, base_macs = _cost('b0', BASE_RESOLUTION)
    rows = []
    for name in ('b0', 'b1', 'b2', 'b3', 'b4', 'b5', 'b6', 'b7'):
        a = ARCHS[name]
        params, macs = _cost(name, a.resolution)
        rows.append(
            dict(
                name=name,
                depth=a.depth_mult,
                width=a.width_mult,
                resolution=a.resolution,
                blocks=build_network_spec(name).num_blocks,
                implied=implied_phi(a),
                params=params,
                macs=macs,
                ratio=macs / base_macs,
                table2_ratio=TABLE2[name][1] / TABLE2['b0'][1]))
    return rows


def eq3_check_markdown(phi_max: int = 7) -> str:
    fam = eq3_family_rows(phi_max)
    factor = PAPER_ALPHA * PAPER_BETA**2 * PAPER_GAMMA**2
    t1 = markdown_table([
        'phi', 'depth a^phi', 'width b^phi', 'resolution', 'blocks', 'params (M)', 'MACs (G)', 'd*w^2*r^2', 'MACs x B0',
        '2^phi', f'{factor:.4f}^phi', 'MACs x / 2^phi'
    ], [[
        r['phi'], f"{r['depth']:.3f}", f"{r['width']:.3f}", r['resolution'], r['blocks'], f"{r['params'] / 1e6:.2f}",
        f"{r['macs'] / 1e9:.3f}", f"{r['nominal']:.2f}", f"{r['ratio']:.2f}", 2**r['phi'], f"{factor ** r['phi']:.2f}",
        f"{r['ratio'] / 2 ** r['phi'] - 1:+.1%}"
    ] for r in fam])
    off = official_rows()
    by_phi = {r['phi']: r for r in fam}
    t2 = markdown_table([
        'model', 'depth', 'width', 'resolution', 'blocks', 'implied phi (depth, width, res)', 'mean phi', 'params (M)',
        'MACs (G)', 'MACs x B0', 'Table 2 FLOPs x B0', '2^mean phi',
        'nearest eq. 3 member: resolution, blocks, MACs x B0'
    ], [_official_cells(r, by_phi) for r in off])
    return '\n'.join([
        f'Eq. 3 from B0 with alpha={PAPER_ALPHA}, beta={PAPER_BETA}, gamma={PAPER_GAMMA} '
        f'(alpha*beta^2*gamma^2 = {factor:.4f}); resolution rounded to the pixel, channels to multiples '
        'of 8 (never 10% below), blocks per stage rounded up. d*w^2*r^2 is the unrounded FLOPs '
        'multiplier of the rounded resolution; MACs are Conv2d + Linear multiply-adds of backbone + '
        '1000-way classifier (Table 2\'s network) at the member\'s resolution.', '', t1, '',
        'The official B0-B7 (TF release) against eq. 3: the phi each multiplier implies '
        '(log(multiplier) / log(coefficient)), their measured cost next to Table 2\'s FLOPs ratio, and the '
        'pure eq. 3 member at the nearest integer phi.', '', t2, ''
    ])


def _official_cells(r: dict, eq3_by_phi: dict) -> list:
    d, w, res = r['implied']
    mean = (d + w + res) / 3
    near = eq3_by_phi.get(round(mean))
    nearest = (f"phi={near['phi']}: {near['resolution']} px, {near['blocks']}, {near['ratio']:.2f}"
               if near is not None else '')
    return [
        r['name'], r['depth'], r['width'], r['resolution'], r['blocks'], f'{d:.2f}, {w:.2f}, {res:.2f}', f'{mean:.2f}',
        f"{r['params'] / 1e6:.2f}", f"{r['macs'] / 1e9:.3f}", f"{r['ratio']:.2f}", f"{r['table2_ratio']:.2f}",
        f'{2 ** mean:.2f}', nearest
    ]
