"""GlooSyncBatchNorm: 2 CPU processes (gloo) x half a batch compute what BatchNorm computes on the
whole batch: outputs, input gradients, parameter gradients (summed over processes, as DDP's
average times the process count) and running statistics. And SyncBN configs get it in distributed
CPU runs, BN in single-process runs."""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
from mmengine.config import Config

from mmeffnet.config import swap_sync_bn
from mmeffnet.models.gloo_sync_bn import GlooSyncBatchNorm

WORLD = 2
EPS, MOMENTUM = 1e-3, 0.01


def _inputs(shape):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    x[shape[0] // 2:] = x[shape[0] // 2:] * 3 + 5  # the two halves have different statistics
    grad = torch.randn(shape, generator=g, dtype=torch.float64)
    weight = torch.rand(shape[1], generator=g, dtype=torch.float64) + 0.5
    bias = torch.randn(shape[1], generator=g, dtype=torch.float64)
    return x, grad, weight, bias


SHAPES = [(4, 3, 5, 6), (6, 4)]  # NCHW, NC


def _run_sync_bn(shape, rank):
    x, grad, weight, bias = _inputs(shape)
    half = shape[0] // WORLD
    part = slice(rank * half, (rank + 1) * half)
    bn = GlooSyncBatchNorm(shape[1], eps=EPS, momentum=MOMENTUM).double()
    with torch.no_grad():
        bn.weight.copy_(weight)
        bn.bias.copy_(bias)
    results = {}
    for step in range(2):  # two steps: the running statistics accumulate
        x_part = x[part].clone().requires_grad_(True)
        bn.zero_grad()
        y = bn(x_part)
        (y * grad[part]).sum().backward()
        results[step] = dict(
            y=y.detach(), x_grad=x_part.grad, w_grad=bn.weight.grad.clone(), b_grad=bn.bias.grad.clone())
    results['running'] = (bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked))
    bn.eval()  # eval: running statistics, no communication
    results['eval'] = bn(x[part]).detach()
    return results


def _worker(rank, init_file, out_dir):
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=WORLD)
    torch.save([_run_sync_bn(shape, rank) for shape in SHAPES], os.path.join(out_dir, f'rank{rank}.pt'))
    dist.destroy_process_group()


@pytest.fixture(scope='module')
def two_process_results(tmp_path_factory):
    out = tmp_path_factory.mktemp('gloo')
    # spawn, not fork: a fork of the pytest process deadlocks when an earlier test left a lock held
    # by one of its threads (seen in the full suite: both children hung before init_process_group)
    mp.start_processes(_worker, args=(str(out / 'init'), str(out)), nprocs=WORLD, join=True, start_method='spawn')
    return [torch.load(out / f'rank{r}.pt', weights_only=True) for r in range(WORLD)]


@pytest.mark.parametrize('case', range(len(SHAPES)), ids=['NCHW', 'NC'])
def test_gloo_sync_bn_equals_batch_norm_on_the_whole_batch(two_process_results, case):
    shape = SHAPES[case]
    ranks = [r[case] for r in two_process_results]
    x, grad, weight, bias = _inputs(shape)
    bn = (nn.BatchNorm2d if len(shape) == 4 else nn.BatchNorm1d)(shape[1], eps=EPS, momentum=MOMENTUM).double()
    with torch.no_grad():
        bn.weight.copy_(weight)
        bn.bias.copy_(bias)
    per_process = nn.functional.batch_norm(x[:shape[0] // 2], None, None, weight, bias, True, 0.0, EPS)
    for step in range(2):
        x_ref = x.clone().requires_grad_(True)
        bn.zero_grad()
        y = bn(x_ref)
        (y * grad).sum().backward()
        got = {k: torch.cat([r[step][k] for r in ranks]) for k in ('y', 'x_grad')}
        torch.testing.assert_close(got['y'], y.detach(), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(got['x_grad'], x_ref.grad, rtol=1e-10, atol=1e-10)
        # parameter gradients are per process; their sum is the whole batch's (DDP averages them)
        torch.testing.assert_close(sum(r[step]['w_grad'] for r in ranks), bn.weight.grad, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(sum(r[step]['b_grad'] for r in ranks), bn.bias.grad, rtol=1e-10, atol=1e-10)
    # the test has teeth: normalizing each half on its own gives something else
    assert (ranks[0][0]['y'] - per_process).abs().max() > 0.1
    for r in ranks:
        mean, var, tracked = r['running']
        torch.testing.assert_close(mean, bn.running_mean, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(var, bn.running_var, rtol=1e-10, atol=1e-10)
        assert tracked == 2
    bn.eval()
    torch.testing.assert_close(torch.cat([r['eval'] for r in ranks]), bn(x).detach(), rtol=1e-10, atol=1e-10)


def test_gloo_sync_bn_is_batch_norm_in_one_process():
    x, grad, weight, bias = _inputs((4, 3, 5, 6))
    sync, bn = GlooSyncBatchNorm(3).double(), nn.BatchNorm2d(3).double()
    torch.testing.assert_close(sync(x), bn(x))
    assert set(sync.state_dict()) == set(bn.state_dict())  # checkpoints move between the two


def _syncbn_cfg():
    return Config(
        dict(
            model=dict(
                backbone=dict(type='mmeffnet.EfficientNet', norm_cfg=dict(type='SyncBN', eps=1e-3, momentum=0.01)),
                neck=dict(norm_cfg=dict(type='BN')))))


def test_syncbn_config_gets_gloo_sync_bn_in_distributed_cpu_runs():
    cfg = _syncbn_cfg()
    assert swap_sync_bn(cfg, distributed=True) == 1
    assert cfg.model.backbone.norm_cfg == dict(type='mmeffnet.GlooSyncBN', eps=1e-3, momentum=0.01)
    assert cfg.model.neck.norm_cfg.type == 'BN'
    from mmcv.cnn import build_norm_layer
    name, layer = build_norm_layer(cfg.model.backbone.norm_cfg, 8)
    assert name == 'bn' and isinstance(layer, GlooSyncBatchNorm) and layer.eps == 1e-3

    single = _syncbn_cfg()
    assert swap_sync_bn(single, distributed=False) == 1
    assert single.model.backbone.norm_cfg.type == 'BN'


FAKE_SRUN = r'''#!/usr/bin/env bash
# records its arguments, then runs the command as task 0 of 1 with the variables SLURM sets
printf '%s\n' "$@" > "$SRUN_LOG"
args=("$@")
for i in "${!args[@]}"; do
  if [[ "${args[$i]}" == "$PYTHON" ]]; then cmd=("${args[@]:$i}"); break; fi
done
SLURM_PROCID=0 SLURM_NTASKS=1 SLURM_LOCALID=0 SLURM_NODELIST='node[001-002]' exec "${cmd[@]}"
'''
FAKE_SCONTROL = '#!/usr/bin/env bash\necho 127.0.0.1\n'  # `scontrol show hostname LIST | head -n1`


@pytest.mark.parametrize('script', ['slurm_train.sh', 'slurm_test.sh'])
def test_slurm_scripts_have_the_openmmlab_form_and_start_gloo_processes(script, tmp_path):
    """With a stand-in ``srun`` (and ``scontrol``) on PATH: the script asks srun for the OpenMMLab
    layout (GPUS tasks, GPUS_PER_NODE per node, one GPU each), and the tool it starts reads the SLURM
    variables, joins a gloo process group on this CPU machine and then stops at the bad input
    given on purpose (exit 2, a clear message) instead of training."""
    import socket
    import subprocess
    import sys

    from conftest import REPO
    from reliability_support import RECIPE, make_shapes_data, recipe_overrides
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    for name, text in (('srun', FAKE_SRUN), ('scontrol', FAKE_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = str(s.getsockname()[1])
    log = tmp_path / 'srun_args.txt'
    env = dict(
        os.environ,
        PATH=f'{bin_dir}:{os.environ["PATH"]}',
        PYTHON=sys.executable,
        SRUN_LOG=str(log),
        MASTER_PORT=port,
        GPUS='16',
        GPUS_PER_NODE='8',
        OMP_NUM_THREADS='1')
    if script == 'slurm_train.sh':
        data = make_shapes_data(str(tmp_path / 'shapes'), num_train=2, num_val=1)
        args = [
            'partition1', 'effdet', RECIPE,
            str(tmp_path / 'work'), *recipe_overrides(data, extra={'train_cfg.max_epochs': '0'})
        ]
        expected = 'config train_cfg.max_epochs=0 is invalid'
    else:
        args = [
            'partition1', 'effdet-eval', RECIPE,
            str(tmp_path / 'missing.pth'), '--cfg-options', f'test_dataloader.dataset.data_root={tmp_path}/',
            'test_dataloader.dataset.ann_file=x.json', 'test_dataloader.dataset.data_prefix.img=',
            f'test_evaluator.ann_file={tmp_path}/x.json'
        ]
        (tmp_path / 'x.json').write_text('{}')
        expected = f'checkpoint file not found: {tmp_path / "missing.pth"}'
    proc = subprocess.run(['bash', f'tools/{script}', *args],
                          cwd=REPO,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=600)
    srun_args = log.read_text().splitlines()
    assert srun_args[:2] == ['-p', 'partition1']
    for arg in ('--gres=gpu:8', '--ntasks=16', '--ntasks-per-node=8', '--cpus-per-task=5', '--kill-on-bad-exit=1',
                '--launcher=slurm'):
        assert arg in srun_args, (arg, srun_args)
    assert srun_args[srun_args.index(sys.executable) + 1] == '-u'
    if script == 'slurm_train.sh':
        assert f'--work-dir={tmp_path / "work"}' in srun_args
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'no CUDA: 1 CPU processes communicate over gloo' in proc.stdout + proc.stderr
    assert expected in proc.stderr and 'Traceback' not in proc.stderr


GROUP_AT_EXIT = r'''
import atexit, os, socket
import torch
from mmengine.config import Config
from mmeffnet.models.gloo_sync_bn import GlooSyncBatchNorm
from mmeffnet.runtime.distributed import prepare_cpu_distributed

threads = lambda: len(os.listdir('/proc/self/task'))
before = threads()
atexit.register(lambda: print('threads left at exit', threads() - before))  # runs after mmeffnet's handler
with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
os.environ.update(RANK='0', WORLD_SIZE='1', MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
prepare_cpu_distributed(Config(), 'pytorch')

def train():  # as tools/train.py: the runner, its DDP model and the group live in a local scope
    model = torch.nn.parallel.DistributedDataParallel(GlooSyncBatchNorm(4))
    model.itself = [model]  # mmengine's objects refer to each other: only the cycle collector frees them
    model(torch.randn(2, 4, 3, 3)).sum().backward()
    print('gloo threads while training', threads() - before)

train()
'''


@pytest.mark.skipif(not os.path.isdir('/proc/self/task'), reason='counts threads through /proc (Linux)')
def test_cpu_distributed_run_joins_the_gloo_threads_before_interpreter_exit():
    """A gloo worker thread alive at interpreter finalization aborted 1 run in 10-80 of
    tools/dist_train.sh ("terminate called without an active exception"): destroy_process_group
    left the threads running because the DDP model still held the group. Our exit handler must end
    them while Python is whole, even when the model sits in a reference cycle."""
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, '-c', GROUP_AT_EXIT],
                          capture_output=True,
                          text=True,
                          timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    running = int(proc.stdout.split('gloo threads while training ')[1].split()[0])
    left = int(proc.stdout.split('threads left at exit ')[1].split()[0])
    assert running > 0, proc.stdout
    assert left == 0, f'{left} thread(s) of the gloo group still running at interpreter exit'
