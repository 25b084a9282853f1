"""Subprocess entry point: peak memory growth of one step of a task (see measure.py).

``python -m benchmarking.memprobe '<json task spec>'`` (``tools/analysis`` and the repository
root on ``PYTHONPATH``: :func:`.measure.peak_memory_subprocess` sets both) prints
``{"peak_bytes": N}``.
"""
import json
import sys

import torch


def main() -> None:
    spec = json.loads(sys.argv[1])
    torch.set_num_threads(spec.get('threads', torch.get_num_threads()))
    from .measure import peak_memory_of
    from .tasks import build_task
    task = build_task(spec)
    task.step()  # warm-up: one-time allocations (library workspaces, caches) are not counted
    peak = peak_memory_of(task.step, spec.get('device', 'cpu'))
    print(json.dumps({'peak_bytes': peak}))


if __name__ == '__main__':
    main()
