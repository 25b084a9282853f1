"""The rows of the benchmark: which tasks are measured side by side, and how.

Every row runs its models in ONE process on the same input, round-robin (see measure.py); peak
memory of training rows comes from a fresh subprocess per model. A peer whose package does not
import is skipped with a note, as are the CUDA rows without a GPU.
"""
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import torch

from .measure import (REPO, peak_memory_of, peak_memory_subprocess, release_freed_memory, run_probe,
                      saved_tensor_breakdown, time_interleaved)
from .peers import label, peer_available
from .tasks import build_task

DEFAULT_CONFIG = os.path.join(REPO, 'configs', 'retinanet_effb3_fpn_crop896_8x4_1x_coco.py')
# channels_last's gain is measured by the inference rows (ours-nchw); kept out of the training row
# so that the full CPU run stays within about 20 minutes on 2 cores
TRAIN_MODELS = ['ours', 'ours-cp', 'ours-save-bn-input', 'ours-plain-bn', 'mmdet', 'timm', 'timm-tf', 'torchvision']
INFER_MODELS = ['ours', 'ours-fused', 'ours-nchw', 'mmdet', 'timm', 'timm-tf', 'torchvision']
CUDA_MODELS = ['ours', 'mmdet', 'timm', 'timm-tf', 'torchvision']
# the training rows on a GPU also report max_memory_allocated under the other memory policies (issue 21)
CUDA_MEMORY_POLICIES = ['ours-save-bn-input', 'ours-plain-bn']
# ablations whose point is time only: no peak-memory subprocess (it would add ~20 s per model)
NO_MEMORY_PROBE = ('ours-nchw', )
PAPER_B1_LATENCY_S = 0.098  # Table 4: EfficientNet-B1, batch 1, one Xeon E5-2690 core


@dataclass
class Entry:
    model: str
    label: str
    seconds: float  # median wall clock per iteration
    cpu_seconds: float  # median process CPU time per iteration
    min_seconds: float
    faults_per_call: Optional[float] = None  # median minor page faults per iteration
    peak_bytes: Optional[int] = None
    saved_bytes: Optional[int] = None
    saved_by_kind: Dict[str, int] = field(default_factory=dict)  # measure.saved_tensor_breakdown
    images_per_s: Optional[float] = None
    # wall clock per iteration of every timed round, in round order: the rounds of one row are
    # paired (each runs every model once), so per-round ratios show the round-to-round spread
    walls: List[float] = field(default_factory=list)


@dataclass
class Row:
    key: str  # e.g. 'train', 'infer-b0-224-1t'
    title: str
    kind: str  # 'train' | 'infer' | 'detector' | 'cuda'
    entries: List[Entry] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    # what is timed: 'train' | 'infer' | 'detector'; a CUDA row runs one of these on the GPU.
    # Defaults to ``kind`` (the CPU rows, and the CUDA rows' skip note, which times nothing)
    task: str = ''

    def __post_init__(self):
        self.task = self.task or self.kind

    def entry(self, model: str) -> Optional[Entry]:
        return next((e for e in self.entries if e.model == model), None)


@dataclass
class SuiteOptions:
    quick: bool = False
    rows: tuple = ('train', 'train-syncbn', 'infer', 'detector', 'efficientdet', 'cuda')
    models: Optional[List[str]] = None  # restrict the compared models
    config: str = DEFAULT_CONFIG
    reps: Optional[int] = None
    memory: bool = True  # peak-memory subprocesses for train/detector rows
    all_threads: int = field(default_factory=lambda: os.cpu_count() or 1)


def _available(models: List[str], row: Row, wanted: Optional[List[str]]) -> List[str]:
    keep = []
    for name in models:
        if wanted and name not in wanted and not name.startswith('ours'):  # ours variants stay
            continue
        ok, why = peer_available(name)
        if ok:
            keep.append(name)
        else:
            row.notes.append(f'{name} skipped: {why}')
    return keep


def _measure_row(row: Row,
                 specs: Dict[str, dict],
                 warmup: int,
                 reps: int,
                 inner: int = 1,
                 device: str = 'cpu',
                 memory: bool = False,
                 saved: bool = False,
                 threads: Optional[int] = None) -> None:
    tasks = {}
    for name, spec in specs.items():
        try:
            tasks[name] = build_task(spec)
        except Exception as exc:  # a peer that cannot build here is reported, not fatal
            row.notes.append(f'{name} skipped: {type(exc).__name__}: {exc}')
    timings = time_interleaved({n: t.step for n, t in tasks.items()}, warmup, reps, device, inner)
    for name, task in tasks.items():
        spec, timing = specs[name], timings[name]
        entry = Entry(
            name,
            label(name, spec.get('arch', 'b3')),
            timing.median,
            timing.cpu_median,
            timing.minimum,
            timing.faults_median,
            walls=list(timing.wall))
        if saved and task.forward is not None:
            entry.saved_by_kind = saved_tensor_breakdown(task.forward)
            entry.saved_bytes = sum(entry.saved_by_kind.values())
        if memory and device.startswith('cuda') and name not in NO_MEMORY_PROBE:
            entry.peak_bytes = peak_memory_of(task.step, device)
        if row.kind == 'cuda':
            entry.images_per_s = spec['batch'] / timing.median
        row.entries.append(entry)
    # CPU probes run one child at a time after this process has let go of its models: at 896 px
    # a step needs 4-10 GB, and the parent's heap on top of a child's would not fit in 24 GiB
    tasks.clear()
    release_freed_memory()
    if memory and not device.startswith('cuda'):
        for entry in row.entries:
            if entry.model not in NO_MEMORY_PROBE:
                spec = dict(specs[entry.model], threads=threads)
                entry.peak_bytes = peak_memory_subprocess(spec, threads or 1)


def train_row(opts: SuiteOptions) -> Row:
    size = 384 if opts.quick else 896
    row = Row(
        'train', f'Backbone training step (forward + backward), B3, {size}x{size}, batch 2, '
        f'{opts.all_threads} threads', 'train')
    models = TRAIN_MODELS if not opts.quick else ['ours', 'ours-cp', 'mmdet', 'timm', 'torchvision']
    models = _available(models, row, opts.models)
    torch.set_num_threads(opts.all_threads)
    specs = {m: dict(kind='train', model=m, arch='b3', size=size, batch=2) for m in models}
    _measure_row(
        row,
        specs,
        warmup=1,
        reps=opts.reps or (2 if opts.quick else 3),
        memory=opts.memory,
        saved=True,
        threads=opts.all_threads)
    return row


SYNC_BN_MODELS = ['ours', 'ours-save-bn-input', 'mmdet']


def sync_bn_train_row(opts: SuiteOptions) -> Row:
    """The training row with SyncBN on CPU: 2 gloo processes x batch 1, every BatchNorm a
    GlooSyncBatchNorm (what SyncBN configs get in CPU-distributed runs), one thread each; peak
    memory growth per process, one fresh pair of processes per model (not interleaved)."""
    size = 384 if opts.quick else 896
    row = Row(
        'train-syncbn', f'Backbone training step with SyncBN in 2 processes (gloo, GlooSyncBN), B3, {size}x{size}, '
        'batch 2 (1 per process), 1 thread per process',
        'train',
        task='train-syncbn')
    models = _available(SYNC_BN_MODELS, row, opts.models)
    for name in models:
        spec = dict(kind='train', model=name, arch='b3', size=size, batch=1, threads=1, reps=opts.reps or 3)
        result = run_probe('syncprobe', spec, threads=1)
        if result is None:
            row.notes.append(f'{name} skipped: the 2-process probe failed (see stderr)')
            continue
        seconds = result['seconds']
        median = statistics.median(seconds)
        row.entries.append(
            Entry(
                name, label(name, 'b3'), median, median, min(seconds), walls=seconds, peak_bytes=result['peak_bytes']))
    row.notes.append('each model in its own pair of fresh processes, one after the other: the times are not '
                     'interleaved with the other models\' (compare them with the round-to-round spread in mind)')
    return row


def infer_rows(opts: SuiteOptions) -> List[Row]:
    configs = [('b0', 224, 1), ('b0', 224, opts.all_threads)]
    if not opts.quick:
        configs += [('b3', 300, 1), ('b3', 300, opts.all_threads), ('b1', 240, 1)]
    rows = []
    for arch, size, threads in configs:
        row = Row(f'infer-{arch}-{size}-{threads}t',
                  f'Inference latency, {arch.upper()} at {size}, batch 1, {threads} thread(s)', 'infer')
        models = list(INFER_MODELS) + (['onnxruntime'] if arch in ('b0', 'b3') else [])
        models = _available(models, row, opts.models)
        torch.set_num_threads(threads)
        specs = {
            m: dict(
                kind='onnx' if m == 'onnxruntime' else 'infer', model=m, arch=arch, size=size, batch=1, threads=threads)
            for m in models
        }
        if arch == 'b1' and threads == 1:
            row.notes.append(f'Paper, Table 4: EfficientNet-B1 {PAPER_B1_LATENCY_S * 1e3:.0f} ms per image '
                             'on one Xeon E5-2690 core (whole classifier; here: features to the 1x1 head '
                             'conv, the pooling + FC left are negligible).')
        # all-core latency on a shared 2-core machine varies more from round to round: more rounds
        _measure_row(row, specs, warmup=2, reps=opts.reps or (11 if threads == 1 else 21), inner=5)
        rows.append(row)
    torch.set_num_threads(opts.all_threads)
    return rows


def _shown_path(path: str) -> str:
    """``path`` as the report shows it: relative to the repository when inside it, so that no
    machine's absolute path ends up in docs/benchmarks.md."""
    full = os.path.abspath(path)
    inside = os.path.commonpath([full, REPO]) == REPO
    return os.path.relpath(full, REPO) if inside else path


def detector_row(opts: SuiteOptions) -> Row:
    size = 512 if opts.quick else 896
    row = Row(
        'detector', f'RetinaNet-B3 recipe training iteration (data preprocessor, forward, '
        f'losses, backward, SGD step), {size}x{size}, batch 2, {opts.all_threads} threads', 'detector')
    if not os.path.exists(opts.config):
        row.notes.append(f'skipped: recipe config {opts.config} not found')
        return row
    models = _available(['ours', 'mmdet'], row, opts.models)
    shown = _shown_path(opts.config)
    row.notes.append(f'config: {shown}; "mmdet" = the same config with mmdet\'s EfficientNet '
                     '(same arguments, which mean the same to both) as backbone; SyncBN run as BN.')
    torch.set_num_threads(opts.all_threads)
    specs = {m: dict(kind='detector', model=m, arch='b3', size=size, batch=2, config=opts.config) for m in models}
    # 2 timed rounds: a recipe iteration takes ~20-25 s on a 2-core CPU (the full run fits about 20 min)
    _measure_row(
        row,
        specs,
        warmup=1,
        reps=opts.reps or (1 if opts.quick else 2),
        memory=opts.memory,
        saved=True,
        threads=opts.all_threads)
    return row


def efficientdet_rows(opts: SuiteOptions) -> List[Row]:
    """EfficientDet against effdet's same model: a training step (batch 2) and batch-1 inference
    at the variant's own input size, D0 at 512 and D3 at 896 (--quick: D0 only)."""
    variants = [('d0', 512)] if opts.quick else [('d0', 512), ('d3', 896)]
    torch.set_num_threads(opts.all_threads)
    rows = []
    for variant, size in variants:
        name = f'EfficientDet-{variant.upper()}'
        train = Row(
            f'effdet-train-{variant}', f'{name} training step (data preprocessing, forward, anchor assignment, '
            f'losses, backward, SGD step), {size}x{size}, batch 2, {opts.all_threads} threads',
            'train',
            task='effdet-train')
        infer = Row(
            f'effdet-infer-{variant}', f'{name} inference (class and box maps of P3-P7), {size}x{size}, batch 1, '
            f'{opts.all_threads} threads',
            'infer',
            task='effdet-infer')
        for row, kind, batch in ((train, 'effdet-train', 2), (infer, 'effdet-infer', 1)):
            models = _available(['ours', 'effdet'], row, opts.models)
            specs = {m: dict(kind=kind, model=m, arch=variant, size=size, batch=batch) for m in models}
            if kind == 'effdet-train':
                row.notes.append('ours: the config configs/efficientdet/efficientdet_'
                                 f'{variant}_*.py (mmdet RetinaNet machinery: MaxIoUAssigner, FocalLoss, Huber loss; '
                                 'SyncBN run as BN); effdet: DetBenchTrain with its anchor labeler; same random '
                                 'images and boxes, 80 classes.')
                _measure_row(
                    row,
                    specs,
                    warmup=1,
                    reps=opts.reps or (7 if size <= 512 else 2),  # D0: enough rounds for a spread
                    memory=opts.memory,
                    saved=True,
                    threads=opts.all_threads)
            else:
                _measure_row(row, specs, warmup=2, reps=opts.reps or (5 if size > 512 else 11), inner=1)
            rows.append(row)
    return rows


def cuda_cases(opts: SuiteOptions) -> List[Tuple[str, str, int, int]]:
    """(kind, arch, size, batch) of the GPU rows: training step, inference, recipe iteration."""
    train_size = 512 if opts.quick else 896
    cases = [('train', 'b3', train_size, 8), ('infer', 'b0', 224, 64), ('infer', 'b3', 300, 64)]
    if not opts.quick and os.path.exists(opts.config):
        cases.append(('detector', 'b3', 896, 8))
    return cases


def cuda_rows(opts: SuiteOptions,
              device: str = 'cuda',
              cases: Optional[List[Tuple[str, str, int, int]]] = None,
              on_rows: Optional[Callable[[List[Row]], None]] = None) -> List[Row]:
    """The GPU rows, fp32 and AMP (fp16 autocast) + channels_last. ``device`` and ``cases``
    (default :func:`cuda_cases`) exist so the same code can be dry-run on the CPU at toy sizes;
    ``on_rows(rows so far)`` after each row, so a GPU lease cut short still leaves results."""
    on_cuda = device.startswith('cuda')
    if on_cuda and not torch.cuda.is_available():
        row = Row('cuda', 'CUDA rows', 'cuda')
        row.notes.append('skipped: no CUDA device on this machine (run the same command on a GPU '
                         'machine for fp32 and AMP + channels_last rows).')
        return [row]
    name = torch.cuda.get_device_name(device) if on_cuda else device
    cases = cases or cuda_cases(opts)
    # fixed sizes, as in training: every model gets its fastest cuDNN algorithms (the search
    # happens in the warm-up rounds)
    previous_benchmark, torch.backends.cudnn.benchmark = torch.backends.cudnn.benchmark, True
    rows: List[Row] = []
    try:
        for precision in ('fp32', 'amp'):
            for case in cases:
                rows.append(_cuda_row(opts, name, device, precision, case))
                if on_cuda:
                    torch.cuda.empty_cache()
                if on_rows is not None:
                    on_rows(rows)
    finally:
        torch.backends.cudnn.benchmark = previous_benchmark
    return rows


def _cuda_row(opts: SuiteOptions, gpu: str, device: str, precision: str, case: Tuple[str, str, int, int]) -> Row:
    kind, arch, size, batch = case
    amp = precision == 'amp'
    suffix = 'AMP (fp16 autocast) + channels_last input' if amp else 'fp32'
    what = {'train': 'backbone training step', 'infer': 'inference', 'detector': 'RetinaNet-B3 recipe iteration'}[kind]
    row = Row(
        f'cuda-{kind}-{arch}-{precision}',
        f'{gpu}: {what}, {arch.upper()} at {size}, batch {batch}, {suffix}',
        'cuda',
        task=kind)
    extra = {'infer': ['ours-fused'], 'train': CUDA_MEMORY_POLICIES}.get(kind, [])
    candidates = ['ours', 'mmdet'] if kind == 'detector' else CUDA_MODELS + extra
    models = _available(candidates, row, opts.models)
    specs = {
        m:
        dict(
            kind=kind,
            model=m,
            arch=arch,
            size=size,
            batch=batch,
            device=device,
            amp=amp,
            channels_last=amp and kind != 'detector',
            config=opts.config)
        for m in models
    }
    _measure_row(
        row,
        specs,
        warmup=3,
        reps=opts.reps or 10,
        inner=3 if kind == 'infer' else 1,
        device=device,
        memory=opts.memory and device.startswith('cuda'))
    row.notes.append('torch.backends.cudnn.benchmark on for every model')
    return row


def _progress(message: str) -> None:
    print(f'[benchmark {time.strftime("%H:%M:%S")}] {message}', file=sys.stderr, flush=True)


def run_suite(opts: SuiteOptions, on_rows: Optional[Callable[[List[Row]], None]] = None) -> List[Row]:
    """Run the rows of ``opts``; ``on_rows(rows so far)`` after each group (partial results
    survive an interrupted run)."""
    rows: List[Row] = []
    start = time.perf_counter()
    steps = [('train', lambda: [train_row(opts)]), ('train-syncbn', lambda: [sync_bn_train_row(opts)]),
             ('infer', lambda: infer_rows(opts)), ('detector', lambda: [detector_row(opts)]),
             ('efficientdet', lambda: efficientdet_rows(opts)),
             ('cuda', lambda: cuda_rows(opts, on_rows=(lambda part: on_rows(rows + part)) if on_rows else None))]
    for key, run in steps:
        if key not in opts.rows:
            continue
        _progress(f'{key} rows ...')
        t0 = time.perf_counter()
        rows += run()
        if on_rows is not None:
            on_rows(rows)
        _progress(f'{key} rows done in {time.perf_counter() - t0:.0f} s '
                  f'(total {time.perf_counter() - start:.0f} s)')
    return rows
