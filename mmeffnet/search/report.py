"""Tables (markdown, CSV) and the metric-vs-FLOPs plot of a search or a family."""
import csv
import os.path as osp
from typing import Dict, List, Optional, Sequence

from .plan import Plan, ScaledModel


def _m(n: int) -> str:
    return f'{n / 1e6:.2f}'


def _macs_unit(baseline_macs: int):
    """Giga multiply-adds, or mega for tiny models (so that the column is not all 0.000)."""
    return (1e9, 'G') if baseline_macs >= 1e8 else (1e6, 'M')


def _size(hw) -> str:
    return f'{hw[0]}x{hw[1]}'


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]
    return '\n'.join(lines)


def baseline_lines(plan: Plan, config_path: str) -> List[str]:
    b = plan.baseline
    return [
        f'baseline: {config_path} ({plan.toolbox}), backbone arch {plan.baseline_arch!r}, '
        f'{plan.baseline_blocks} MBConv blocks, input {_size(b.input_size)}',
        f'baseline cost: {_m(b.params)} M params, {b.macs / 1e9:.4g} G multiply-adds '
        f'(backbone {_m(b.backbone_params)} M params, {b.backbone_macs / 1e9:.4g} G)',
        f'counted: Conv2d + Linear multiply-adds of one {b.counted} forward (mode="tensor": '
        'backbone, neck and head; no post-processing or auxiliary training heads) at the training '
        f'input size; sizes rounded to multiples of {plan.size_divisor}'
    ]


def _cost_cells(plan: Plan, m: ScaledModel) -> list:
    c, (scale, _) = m.complexity, _macs_unit(plan.baseline.macs)
    return [
        f'{m.arch["depth_mult"]:.3f} ({m.blocks()})', f'{m.arch["width_mult"]:.3f}',
        _size(c.input_size),
        _m(c.params), f'{plan.params_ratio(m):.2f}', f'{c.macs / scale:.3f}', f'{plan.ratio(m):.2f}',
        f'{plan.backbone_ratio(m):.2f}'
    ]


def _cost_header(plan: Plan) -> List[str]:
    return [
        'depth (blocks)', 'width', 'input', 'params (M)', 'params x', f'MACs ({_macs_unit(plan.baseline.macs)[1]})',
        'MACs x', 'backbone MACs x'
    ]


def candidate_table(plan: Plan) -> str:
    """Step 1 dry run: every candidate, its cost and its measured ratios to the baseline."""
    header = ['#', 'alpha', 'beta', 'gamma', 'a*b^2*g^2', *_cost_header(plan), 'same network as']
    rows = []
    for i, m in enumerate(plan.members, 1):
        k = m.coeffs
        rows.append([
            i, f'{k.alpha:g}', f'{k.beta:g}', f'{k.gamma:g}', f'{k.flops_factor:.3f}', *_cost_cells(plan, m), m.same_as
            or ''
        ])
    return markdown_table(header, rows)


def family_table(plan: Plan, tolerance: float) -> str:
    """Step 2: each phi, its cost, and its MACs ratio against 2^phi and eq. 3's prediction."""
    header = ['phi', *_cost_header(plan), '2^phi', '(a*b^2*g^2)^phi', 'MACs x / 2^phi']
    rows = []
    for m in plan.members:
        target, eq3 = 2**m.phi, m.coeffs.flops_factor**m.phi
        dev = plan.ratio(m) / target - 1
        flag = '' if abs(dev) <= tolerance else ' (!)'
        rows.append([f'{m.phi:g}', *_cost_cells(plan, m), f'{target:g}', f'{eq3:.2f}', f'{dev:+.1%}{flag}'])
    return markdown_table(header, rows)


# ------------------------------------------------------------------------------------- results
RESULT_FIELDS = [
    'rank', 'name', 'alpha', 'beta', 'gamma', 'flops_factor', 'depth_mult', 'width_mult', 'blocks', 'input', 'params',
    'macs', 'params_ratio', 'macs_ratio', 'backbone_macs_ratio', 'same_as', 'status', 'metric', 'value',
    'train_seconds', 'finished_at'
]


def _status(state: dict, value) -> str:
    status = state.get('status', 'pending')
    return 'done, no metric' if status == 'done' and value is None else status


def result_rows(plan: Plan, states: Dict[str, dict], metric: Optional[str]) -> List[dict]:
    """One row per candidate, ranked: finished ones by ``metric`` (higher first, then fewer MACs),
    then the unfinished ones in grid order. A candidate that builds the same network as an earlier
    one shares its result."""
    rows = []
    for m in plan.members:
        state = states.get(m.same_as or m.name) or {}
        value = (state.get('metrics') or {}).get(metric) if metric else None
        rows.append(
            dict(
                name=m.name,
                alpha=m.coeffs.alpha,
                beta=m.coeffs.beta,
                gamma=m.coeffs.gamma,
                flops_factor=round(m.coeffs.flops_factor, 4),
                depth_mult=m.arch['depth_mult'],
                width_mult=m.arch['width_mult'],
                blocks=m.blocks(),
                input=_size(m.complexity.input_size),
                params=m.complexity.params,
                macs=m.complexity.macs,
                params_ratio=round(plan.params_ratio(m), 4),
                macs_ratio=round(plan.ratio(m), 4),
                backbone_macs_ratio=round(plan.backbone_ratio(m), 4),
                same_as=m.same_as or '',
                status=_status(state, value),
                metric=metric or '',
                value=value,
                train_seconds=state.get('train_seconds'),
                finished_at=state.get('finished_at', '')))
    done = sorted((r for r in rows if r['value'] is not None), key=lambda r: (-r['value'], r['macs']))
    rest = [r for r in rows if r['value'] is None]
    for i, r in enumerate(done, 1):
        r['rank'] = i
    for r in rest:
        r['rank'] = ''
    return done + rest


def results_markdown(rows: List[dict], head_lines: Sequence[str], baseline_macs: int) -> str:
    scale, unit = _macs_unit(baseline_macs)
    header = [
        'rank', 'alpha', 'beta', 'gamma', 'a*b^2*g^2', 'input', 'params (M)', f'MACs ({unit})', 'MACs x',
        rows[0]['metric'] if rows and rows[0]['metric'] else 'metric', 'status', 'same network as'
    ]
    body = [[
        r['rank'], f"{r['alpha']:g}", f"{r['beta']:g}", f"{r['gamma']:g}", f"{r['flops_factor']:.3f}", r['input'],
        _m(r['params']), f"{r['macs'] / scale:.3f}", f"{r['macs_ratio']:.2f}",
        '' if r['value'] is None else f"{r['value']:.4g}", r['status'], r['same_as']
    ] for r in rows]
    return '\n'.join([*head_lines, '', markdown_table(header, body), ''])


def write_csv(rows: List[dict], path: str) -> None:
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=RESULT_FIELDS)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: r.get(k) for k in RESULT_FIELDS})


def plot_metric_vs_flops(rows: List[dict], baseline_macs: int, path: str, title: str, phi: float = 1.0) -> bool:
    """Scatter of the metric against multiply-adds, best candidate marked; False if nothing to plot."""
    points = [r for r in rows if r['value'] is not None]
    if not points:
        return False
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    scale, unit = _macs_unit(baseline_macs)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    xs = [r['macs'] / scale for r in points]
    ys = [r['value'] for r in points]
    ax.scatter(xs, ys, c='tab:blue', zorder=2)
    best = points[0]
    ax.scatter([best['macs'] / scale], [best['value']],
               s=160,
               facecolors='none',
               edgecolors='tab:red',
               zorder=3,
               label=f"best: {best['name']}")
    for r, x, y in zip(points, xs, ys):
        ax.annotate(
            f"{r['alpha']:g}/{r['beta']:g}/{r['gamma']:g}", (x, y),
            textcoords='offset points',
            xytext=(4, 4),
            fontsize=7)
    ax.axvline(
        2**phi * baseline_macs / scale, color='grey', ls='--', lw=1, label=f'2^phi = {2 ** phi:g}x baseline MACs')
    ax.set_xlabel(f'multiply-adds ({unit})')
    ax.set_ylabel(points[0]['metric'])
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def write_results(rows: List[dict],
                  head_lines: Sequence[str],
                  work_dir: str,
                  baseline_macs: int,
                  title: str,
                  phi: float = 1.0) -> Dict[str, str]:
    paths = dict(
        markdown=osp.join(work_dir, 'results.md'),
        csv=osp.join(work_dir, 'results.csv'),
        plot=osp.join(work_dir, 'metric_vs_flops.png'))
    with open(paths['markdown'], 'w') as f:
        f.write(results_markdown(rows, head_lines, baseline_macs))
    write_csv(rows, paths['csv'])
    if not plot_metric_vs_flops(rows, baseline_macs, paths['plot'], title, phi):
        paths.pop('plot')
    return paths
