"""Measurements: interleaved timing, bytes saved for backward, peak memory of one step.

Timing runs every model of a row round-robin (warm-up rounds first), so a load change on a shared
machine hits all models alike; the median per model is reported, plus the process CPU time,
which is less sensitive to other processes than wall-clock time, and the minor page faults per
call. The timing process keeps freed memory in glibc's heap (:func:`keep_freed_memory_in_heap`):
with glibc's adaptive defaults, some model's freed maps go back to the OS (unmapped or trimmed)
and are faulted in again, zeroed, on every call; which model depends on what the process
allocated before it, and in one process it changed a model's batch-1 latency by up to 25 %.

Peak memory of one step:
- CUDA: ``torch.cuda.max_memory_allocated`` growth over the step.
- CPU: peak RSS growth over the step, measured in a fresh subprocess per model (``python -m
  benchmarking.memprobe``) after one warm-up step, with glibc's mmap threshold pinned at
  64 KiB so that every freed activation goes back to the OS: the peak RSS growth is then the
  peak of live memory during the step (activations, gradients, transient buffers).
"""
import ctypes
import gc
import json
import os
import os.path as osp
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import torch

# the memory probe child imports this package from its folder (tools/analysis) and mmeffnet from
# this checkout, as the parent does (tools/analysis/benchmark.py puts the repository first)
TOOLS_ANALYSIS = osp.dirname(osp.dirname(osp.abspath(__file__)))
REPO = osp.dirname(osp.dirname(TOOLS_ANALYSIS))
PROBE_PATH = (TOOLS_ANALYSIS, REPO)
MALLOC_ENV = {'MALLOC_MMAP_THRESHOLD_': '65536', 'MALLOC_TRIM_THRESHOLD_': '65536'}
# mallopt parameters (glibc malloc.h) and the values the timing process uses
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
TIMING_MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value: bigger blocks are always mmapped
TIMING_TRIM_THRESHOLD = 1 << 30


@dataclass
class Timing:
    """Per call, every repetition: wall-clock seconds, process CPU seconds, minor page faults."""
    wall: List[float] = field(default_factory=list)
    cpu: List[float] = field(default_factory=list)
    faults: List[float] = field(default_factory=list)  # minor page faults per call

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)

    @property
    def minimum(self) -> float:
        return min(self.wall)

    @property
    def faults_median(self) -> float:
        return statistics.median(self.faults)


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _glibc_function(name: str) -> Optional[Callable[..., int]]:
    """A glibc malloc function from the process's own symbols (glibc is already loaded: no
    library search, no subprocess), or None where the C library has none (musl, macOS)."""
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None


def keep_freed_memory_in_heap() -> str:
    """Pin glibc's mmap and trim thresholds for this process (no dynamic adjustment), so that
    freed tensors up to 32 MiB stay in the heap for the next call instead of being unmapped and
    faulted back in; returns what was set, for the report. Larger blocks are mmapped as usual."""
    mallopt = _glibc_function('mallopt')
    ok = (
        mallopt is not None and mallopt(M_MMAP_THRESHOLD, TIMING_MMAP_THRESHOLD)
        and mallopt(M_TRIM_THRESHOLD, TIMING_TRIM_THRESHOLD))
    if not ok:
        return 'allocator defaults (not glibc, or mallopt refused)'
    return (f'glibc mallopt M_MMAP_THRESHOLD={TIMING_MMAP_THRESHOLD >> 20} MiB, '
            f'M_TRIM_THRESHOLD={TIMING_TRIM_THRESHOLD >> 30} GiB (freed memory stays in the heap)')


def _sync(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def time_interleaved(steps: Dict[str, Callable[[], None]],
                     warmup: int,
                     reps: int,
                     device: str = 'cpu',
                     inner: int = 1) -> Dict[str, Timing]:
    """Run each step ``warmup`` times, then ``reps`` rounds of all steps in turn, the starting
    step rotating by one per round (each timed as ``inner`` back-to-back calls, divided by
    ``inner``); returns the timings per name."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    _sync(device)
    results = {name: Timing() for name in steps}
    names = list(steps)
    for round_index in range(reps):
        # each round starts one model later: no model always follows the same neighbour
        # (whose cache footprint or lingering worker threads it would inherit)
        start = round_index % len(names) if names else 0
        for name in names[start:] + names[:start]:
            step = steps[name]
            _sync(device)
            wall, cpu, faults = time.perf_counter(), time.process_time(), _minor_faults()
            for _ in range(inner):
                step()
            _sync(device)
            results[name].wall.append((time.perf_counter() - wall) / inner)
            results[name].cpu.append((time.process_time() - cpu) / inner)
            results[name].faults.append((_minor_faults() - faults) / inner)
    return results


def _saved_kind(tensor: torch.Tensor) -> str:
    """What made a tensor autograd keeps, by the node that produced it."""
    if tensor.grad_fn is None:
        return 'weights' if tensor.requires_grad else 'inputs, masks'
    name = type(tensor.grad_fn).__name__
    if 'Convolution' in name:
        return 'conv outputs'
    if name.startswith('Mul'):
        return 'products (SE; x * sigmoid(x) Swish)'
    if any(op in name for op in ('BatchNorm', 'Silu', 'Relu', 'Hardtanh', 'Sigmoid')):
        return 'norm / activation outputs'
    if 'Pad' in name:
        return 'padded maps'
    return 'other'


def saved_tensor_breakdown(forward: Callable[[], object]) -> Dict[str, int]:
    """Bytes of the distinct storages autograd keeps for backward during ``forward()``, by what
    made them (:func:`_saved_kind`; a storage counts once, under the first tensor saved from it).

    Exact and noise-free, but it does not see gradient checkpointing's recomputation (those
    tensors are kept by the checkpoint's own hooks) nor backward's transient buffers: the peak
    memory measurement covers those.
    """
    storages: Dict[int, tuple] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in storages:
            storages[storage.data_ptr()] = (_saved_kind(tensor), storage.nbytes())
        # detached: a node that saves its own output (sigmoid, tanh) would otherwise hold that
        # output with its grad_fn, a C++ reference cycle that leaks the whole graph per call
        return tensor.detach()

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = forward()
    del out
    kinds: Dict[str, int] = {}
    for kind, nbytes in storages.values():
        kinds[kind] = kinds.get(kind, 0) + nbytes
    return kinds


def saved_tensor_bytes(forward: Callable[[], object]) -> int:
    """Total of :func:`saved_tensor_breakdown`."""
    return sum(saved_tensor_breakdown(forward).values())


def release_freed_memory() -> None:
    """Collect garbage and hand glibc's free heap pages back to the OS, so that the parent's
    resident memory does not add up with a memory-probe child's (both count against RAM)."""
    gc.collect()
    malloc_trim = _glibc_function('malloc_trim')
    if malloc_trim is not None:
        malloc_trim(0)


def _rss_kib() -> Dict[str, int]:
    with open('/proc/self/status') as f:
        fields = dict(line.split(':', 1) for line in f)
    return {key: int(fields[key].split()[0]) for key in ('VmRSS', 'VmHWM')}


def peak_memory_of(step: Callable[[], None], device: str) -> int:
    """Peak memory growth (bytes) during one call of ``step`` in *this* process."""
    if device.startswith('cuda'):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    with open('/proc/self/clear_refs', 'w') as f:  # resets VmHWM to the current RSS
        f.write('5')
    before = _rss_kib()['VmRSS']
    step()
    return (_rss_kib()['VmHWM'] - before) * 1024


def run_probe(probe: str, spec: dict, threads: int, timeout: float = 1800.) -> Optional[dict]:
    """The result line of ``python -m benchmarking.<probe> '<spec>'`` run in a fresh process
    (see module docstring); None when the probe failed (its stderr is printed)."""
    python_path = os.pathsep.join(PROBE_PATH + tuple(filter(None, [os.environ.get('PYTHONPATH')])))
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=python_path, **MALLOC_ENV)
    cmd = [sys.executable, '-m', f'{__package__}.{probe}', json.dumps(spec)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith('{'):
            return json.loads(line)
    print(f'{probe} failed for {spec}:\n{proc.stderr[-2000:]}', file=sys.stderr)
    return None


def peak_memory_subprocess(spec: dict, threads: int, timeout: float = 1800.) -> Optional[int]:
    """Peak memory growth (bytes) of one step of the task ``spec``, measured in a fresh process."""
    result = run_probe('memprobe', spec, threads, timeout)
    return None if result is None else result['peak_bytes']
