"""Subprocess entry point: a training step in 2 gloo processes, every BatchNorm synchronized
(``GlooSyncBatchNorm``, the SyncBN of CPU processes), each process on its share of the batch.

``python -m benchmarking.syncprobe '<json task spec>'`` (``PYTHONPATH`` as for ``memprobe``)
prints ``{"peak_bytes": N, "seconds": [...]}``: the larger of the two processes' peak memory
growth over one step, and the wall time of each timed step (the slower process's).
"""
import json
import os
import os.path as osp
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD = 2


def _worker(rank: int, spec: dict, out_dir: str) -> None:
    torch.set_num_threads(spec.get('threads', 1))
    dist.init_process_group('gloo', init_method=f"file://{osp.join(out_dir, 'init')}", rank=rank, world_size=WORLD)
    from .measure import peak_memory_of
    from .tasks import build_task
    task = build_task(dict(spec, sync_bn=True))
    task.step()  # warm-up, as the single-process probe
    dist.barrier()
    peak = peak_memory_of(task.step, 'cpu')
    seconds = []
    for _ in range(spec.get('reps', 3)):
        dist.barrier()
        start = time.perf_counter()
        task.step()
        dist.barrier()  # the step ends when both processes have finished it
        seconds.append(time.perf_counter() - start)
    with open(osp.join(out_dir, f'rank{rank}.json'), 'w') as f:
        json.dump(dict(peak_bytes=peak, seconds=seconds), f)
    dist.destroy_process_group()


def main() -> None:
    spec = json.loads(sys.argv[1])
    with tempfile.TemporaryDirectory() as out_dir:
        mp.start_processes(_worker, args=(spec, out_dir), nprocs=WORLD, join=True, start_method='spawn')
        ranks = [json.load(open(osp.join(out_dir, f'rank{r}.json'))) for r in range(WORLD)]
    print(json.dumps(dict(peak_bytes=max(r['peak_bytes'] for r in ranks), seconds=ranks[0]['seconds'])))


if __name__ == '__main__':
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    main()
