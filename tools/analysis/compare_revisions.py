"""Step time of one benchmark task under two revisions of mmeffnet, alternated process by process.

The benchmark suite compares models inside one process; a change to mmeffnet itself (a new
default, a faster kernel for every policy) is compared with the code before it here: each
revision runs in its own fresh process (a git worktree of ``--rev`` against this working tree),
the two alternating ``--pairs`` times, so a load change of a shared machine hits both alike.

    python tools/analysis/compare_revisions.py --rev bac05b8 --model ours --size 896 --batch 2

Prints each process's median step time and, per pair, the ratio working tree / ``--rev``.
"""
import argparse
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import tempfile

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# run in the child: the task of that revision's own benchmark package, with that revision's mmeffnet
CHILD = r'''
import json, statistics, sys, time
root, spec, reps = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
sys.path[:0] = [root, root + '/tools/analysis']
import torch
torch.set_num_threads(spec.pop('threads'))
import mmeffnet
assert mmeffnet.__file__.startswith(root), mmeffnet.__file__
from benchmarking.tasks import build_task
task = build_task(spec)
task.step(); task.step()
seconds = []
for _ in range(reps):
    start = time.perf_counter(); task.step(); seconds.append(time.perf_counter() - start)
print(json.dumps(seconds))
'''


def _run(root: str, spec: dict, reps: int) -> list:
    out = subprocess.run([sys.executable, '-c', CHILD, root,
                          json.dumps(spec), str(reps)],
                         check=True,
                         capture_output=True,
                         text=True,
                         cwd=tempfile.gettempdir())
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--rev', required=True, help='the git revision to compare the working tree with')
    parser.add_argument('--model', default='ours', help='a model of the benchmark (peers.py), e.g. ours')
    parser.add_argument('--kind', default='train', help='task kind (tasks.py): train, infer, ...')
    parser.add_argument('--arch', default='b3')
    parser.add_argument('--size', type=int, default=896)
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--threads', type=int, default=os.cpu_count())
    parser.add_argument('--pairs', type=int, default=3, help='processes per revision, alternated')
    parser.add_argument('--reps', type=int, default=5, help='timed steps per process (after 2 warm-up steps)')
    args = parser.parse_args()
    spec = dict(
        kind=args.kind, model=args.model, arch=args.arch, size=args.size, batch=args.batch, threads=args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        old = osp.join(tmp, 'rev')
        subprocess.run(['git', '-C', ROOT, 'worktree', 'add', '--detach', '-q', old, args.rev], check=True)
        try:
            ratios = []
            for pair in range(args.pairs):
                medians = {}
                for name, root in ((args.rev, old), ('working tree', ROOT)):
                    seconds = _run(root, spec, args.reps)
                    medians[name] = statistics.median(seconds)
                    print(
                        f'pair {pair + 1} {name:>12s}: median {medians[name]:.3f} s of '
                        f'{[round(s, 2) for s in seconds]}',
                        flush=True)
                ratios.append(medians['working tree'] / medians[args.rev])
            print(f'working tree / {args.rev} per pair: ' + ', '.join(f'{r:.3f}x' for r in ratios))
        finally:
            subprocess.run(['git', '-C', ROOT, 'worktree', 'remove', '--force', old], check=True)


if __name__ == '__main__':
    main()
