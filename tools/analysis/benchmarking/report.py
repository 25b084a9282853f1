"""The benchmark's outputs: a markdown report (tables with ratios to ours, targets, machine and
versions, date), a JSON dump of every figure, and a PNG chart of the ratios."""
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
from dataclasses import asdict
from typing import Dict, List, Optional, Tuple

import torch

from .suite import PAPER_B1_LATENCY_S, Entry, Row

GB = 1024**3


def machine_description() -> Dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            names = [line.split(':', 1)[1].strip() for line in f if line.startswith('model name')]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    info = {
        'date': datetime.datetime.now().strftime('%Y-%m-%d %H:%M'),
        'cpu': f'{cpu}, {os.cpu_count()} logical cores',
        'python': platform.python_version(),
        'torch': torch.__version__
    }
    if torch.cuda.is_available():
        info['gpu'] = torch.cuda.get_device_name()
    for module in ('mmcv', 'mmdet', 'mmengine', 'timm', 'torchvision', 'onnxruntime', 'effdet'):
        try:
            info[module] = __import__(module).__version__
        except AttributeError:  # effdet has no __version__
            info[module] = importlib.metadata.version(module)
        except Exception:
            info[module] = 'not installed'
    try:
        info['load average (1, 5, 15 min)'] = ', '.join(f'{v:.2f}' for v in os.getloadavg())
    except OSError:
        pass
    return info


def _ratio(value: Optional[float], ours: Optional[float]) -> str:
    if value is None or not ours:
        return '-'
    return f'{value / ours:.2f}x'


def _count(value: Optional[float]) -> str:
    return '-' if value is None else f'{value:.0f}'


def _gb(value: Optional[int]) -> str:
    return '-' if value is None else f'{value / GB:.2f}'


def _row_table(row: Row) -> List[str]:
    ours = row.entry('ours')
    if row.kind == 'cuda':
        head = '| model | images/s | x ours (time) | s/iter | peak memory (GB) | x ours (memory) |'
        lines = [head, '|---|---:|---:|---:|---:|---:|']
        for e in row.entries:
            lines.append(f'| {e.label} | {e.images_per_s:.1f} | {_ratio(e.seconds, ours and ours.seconds)} | '
                         f'{e.seconds:.4f} | {_gb(e.peak_bytes)} | '
                         f'{_ratio(e.peak_bytes, ours and ours.peak_bytes)} |')
        return lines
    if row.kind == 'infer':
        lines = [
            '| model | ms (median) | x ours (time) | CPU ms | min ms | page faults/call |',
            '|---|---:|---:|---:|---:|---:|'
        ]
        for e in row.entries:
            lines.append(f'| {e.label} | {e.seconds * 1e3:.1f} | {_ratio(e.seconds, ours and ours.seconds)} | '
                         f'{e.cpu_seconds * 1e3:.1f} | {e.min_seconds * 1e3:.1f} | '
                         f'{_count(e.faults_per_call)} |')
        return lines
    lines = [
        '| model | s/iter (median) | x ours (time) | CPU s/iter | peak memory growth (GB) | '
        'x ours (memory) | saved for backward (GB) | x ours (saved) |', '|---|---:|---:|---:|---:|---:|---:|---:|'
    ]
    for e in row.entries:
        lines.append(f'| {e.label} | {e.seconds:.2f} | {_ratio(e.seconds, ours and ours.seconds)} | '
                     f'{e.cpu_seconds:.2f} | {_gb(e.peak_bytes)} | '
                     f'{_ratio(e.peak_bytes, ours and ours.peak_bytes)} | {_gb(e.saved_bytes)} | '
                     f'{_ratio(e.saved_bytes, ours and ours.saved_bytes)} |')
    return lines


def _saved_kinds_table(row: Row) -> List[str]:
    """What each model keeps for backward, by what made it (``measure.saved_tensor_breakdown``)."""
    entries = [e for e in row.entries if e.saved_by_kind]
    if not entries:
        return []
    kinds = sorted({k
                    for e in entries
                    for k in e.saved_by_kind},
                   key=lambda k: -max(e.saved_by_kind.get(k, 0) for e in entries))
    lines = [
        '', 'Saved for backward by what made it (GB):', '', '| model | ' + ' | '.join(kinds) + ' |',
        '|---|' + '---:|' * len(kinds)
    ]
    for e in entries:
        lines.append(f'| {e.label} | ' + ' | '.join(_gb(e.saved_by_kind.get(k, 0)) for k in kinds) + ' |')
    return lines


def _spread(a: Entry, b: Entry) -> Optional[Tuple[float, float]]:
    """Quartiles (Q1, Q3) of ``a``'s time divided by ``b``'s in the same round: how much the
    comparison moves from round to round; None with fewer than 4 paired rounds."""
    if len(a.walls) != len(b.walls) or len(a.walls) < 4:
        return None
    q1, _, q3 = statistics.quantiles([x / y for x, y in zip(a.walls, b.walls)], n=4)
    return q1, q3


def targets(rows: List[Row]) -> List[Tuple[str, str, str, str]]:
    """(target, measured, per-round spread, status) of the issue's targets these rows measure.

    A ratio is ``metric(model) / metric(reference)`` of the row's medians; for times, the spread
    is the interquartile range of the per-round ratios, and a status gets "(within spread)"
    when the target's bound lies inside it (met or missed within the round-to-round noise)."""
    out = []

    def add(text, row_key, model, metric, reference, bound, at_least):
        row = next((r for r in rows if r.key == row_key), None)
        a, b = (row.entry(model), row.entry(reference)) if row is not None else (None, None)
        if a is None or b is None or getattr(a, metric) is None or getattr(b, metric) is None:
            return
        ratio = getattr(a, metric) / getattr(b, metric)
        met = ratio >= bound if at_least else ratio <= bound
        status = 'information' if bound == float('inf') else ('met' if met else 'NOT met')
        shown = f'{ratio:.2f}x'
        if abs(ratio - bound) < 0.005:  # "1.20x NOT met" would look wrong: one digit more
            shown = f'{ratio:.3f}x'
        spread = _spread(a, b) if metric == 'seconds' else None
        if spread is not None and status != 'information' and spread[0] <= bound <= spread[1]:
            status += ' (within spread)'
        out.append((text, shown, '-' if spread is None else f'{spread[0]:.2f}-{spread[1]:.2f}x', status))

    for row in rows:
        # CUDA rows carry the same targets as the CPU rows of their task, named by their key
        at = '' if row.key in ('train', 'detector') else f'{row.key}: '
        if row.task == 'train':
            add(f'{at}training step >= 1.25x faster than mmdet (mmdet time / ours)', row.key, 'mmdet', 'seconds',
                'ours', 1.25, True)
            add(f'{at}training step no slower than timm (timm time / ours)', row.key, 'timm', 'seconds', 'ours', 1.0,
                True)
            add(f'{at}training peak memory <= 0.8x mmdet (ours / mmdet)', row.key, 'ours', 'peak_bytes', 'mmdet', 0.8,
                False)
            add(f'{at}training peak memory, with_cp, <= 0.25x mmdet (ours with_cp / mmdet)', row.key, 'ours-cp',
                'peak_bytes', 'mmdet', 0.25, False)
            add(f'{at}  time cost of with_cp (ours with_cp / ours)', row.key, 'ours-cp', 'seconds', 'ours',
                float('inf'), False)
            add(f'{at}training peak memory <= 0.45x mmdet (issue 21; ours / mmdet)', row.key, 'ours', 'peak_bytes',
                'mmdet', 0.45, False)
            add(f'{at}training peak memory <= 0.6x timm (issue 21; ours / timm)', row.key, 'ours', 'peak_bytes', 'timm',
                0.6, False)
            add(f"{at}time of memory='recompute-pointwise' <= 1.05x 'save-bn-input' (ours / ours-save-bn-input)",
                row.key, 'ours', 'seconds', 'ours-save-bn-input', 1.05, False)
        elif row.task == 'train-syncbn':
            add('train-syncbn: peak memory per process <= 0.6x mmdet (ours / mmdet, both GlooSyncBN)', row.key, 'ours',
                'peak_bytes', 'mmdet', 0.6, False)
        elif row.task == 'infer':
            add(f'{at}no slower than timm eager (timm / ours)', row.key, 'timm', 'seconds', 'ours', 1.0, True)
            add(f'{at}fuse() >= 1.2x faster than unfused (ours / fused)', row.key, 'ours', 'seconds', 'ours-fused', 1.2,
                True)
        elif row.task == 'effdet-train':
            add(f'{row.key}: training step >= 1.2x faster than effdet (effdet time / ours)', row.key, 'effdet',
                'seconds', 'ours', 1.2, True)
            add(f'{row.key}: training peak memory <= 0.8x effdet (ours / effdet)', row.key, 'ours', 'peak_bytes',
                'effdet', 0.8, False)
        elif row.task == 'effdet-infer':
            add(f'{row.key}: no slower than effdet eager (effdet / ours)', row.key, 'effdet', 'seconds', 'ours', 1.0,
                True)
        elif row.task == 'detector':
            add(f'{at}RetinaNet-B3 iteration >= 1.1x faster (mmdet backbone / ours)', row.key, 'mmdet', 'seconds',
                'ours', 1.1, True)
            add(f'{at}RetinaNet-B3 peak memory <= 0.85x (ours / mmdet backbone)', row.key, 'ours', 'peak_bytes',
                'mmdet', 0.85, False)
            add(f'{at}RetinaNet-B3 peak memory <= 0.55x (issue 21; ours / mmdet backbone)', row.key, 'ours',
                'peak_bytes', 'mmdet', 0.55, False)
    return out


def markdown(rows: List[Row], info: Dict[str, str], command: str) -> str:
    lines = [f'Measured {info["date"]} with `{command}`.', '', '| machine / package | |', '|---|---|']
    lines += [f'| {k} | {v} |' for k, v in info.items() if k != 'date']
    lines += [
        '', '"x ours" = the model\'s figure divided by mmeffnet\'s in the same row: above 1 '
        'means mmeffnet is faster / leaner.', ''
    ]
    goal = targets(rows)
    if goal:
        lines += [
            '### Targets (issues 7, 20 and 21)', '',
            '"spread" = the middle half (interquartile range) of the same ratio taken round by '
            'round (every round times each model once): how far one comparison moves with the '
            'load of the machine.', '', '| target | measured | spread | |', '|---|---:|---:|---|'
        ]
        lines += [f'| {t} | {m} | {sp} | {ok} |' for t, m, sp, ok in goal]
        lines.append('')
    for row in rows:
        lines += [f'### {row.title}', '']
        if row.entries:
            lines += _row_table(row)
            lines += _saved_kinds_table(row)
        b1 = row.entry('ours') if row.key.startswith('infer-b1') else None
        if b1 is not None:
            lines += [
                '', f'mmeffnet B1: {b1.seconds * 1e3:.1f} ms vs the paper\'s '
                f'{PAPER_B1_LATENCY_S * 1e3:.0f} ms ({PAPER_B1_LATENCY_S / b1.seconds:.2f}x).'
            ]
        if row.notes:
            lines += [''] + [f'- {n}' for n in row.notes]
        lines.append('')
    return '\n'.join(lines)


def write_json(rows: List[Row], info: Dict[str, str], path: str) -> None:
    with open(path, 'w') as f:
        json.dump({'machine': info, 'rows': [asdict(r) for r in rows]}, f, indent=1)


def write_chart(rows: List[Row], path: str) -> None:
    """Bars of each model's time (and, for training rows, peak memory) relative to ours."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    timed = [r for r in rows if r.entries and r.entry('ours')]
    mem = [r for r in timed if r.entry('ours').peak_bytes]
    panels = [('time relative to mmeffnet (higher = mmeffnet faster)', timed, 'seconds')]
    if mem:
        panels.append(('peak memory relative to mmeffnet (higher = mmeffnet leaner)', mem, 'peak_bytes'))
    fig, axes = plt.subplots(len(panels), 1, figsize=(13, 4.5 * len(panels)), squeeze=False)
    for ax, (title, panel_rows, metric) in zip(axes[:, 0], panels):
        models = []
        for r in panel_rows:
            models += [e.model for e in r.entries if e.model not in models and e.model != 'ours']
        width = 0.8 / max(len(models), 1)
        for i, model in enumerate(models):
            xs, ys = [], []
            for j, r in enumerate(panel_rows):
                e, ours = r.entry(model), r.entry('ours')
                if e is not None and getattr(e, metric) and getattr(ours, metric):
                    xs.append(j + i * width - 0.4 + width / 2)
                    ys.append(getattr(e, metric) / getattr(ours, metric))
            ax.bar(xs, ys, width, label=next(e.label for r in panel_rows for e in r.entries if e.model == model))
        ax.axhline(1.0, color='black', linewidth=1)
        ax.set_xticks(range(len(panel_rows)))
        ax.set_xticklabels([r.key for r in panel_rows], rotation=15, fontsize=8)
        ax.set_title(title)
        ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
