"""Nothing lost: the detection recipe, SIGKILLed in the middle of an epoch and again inside a
checkpoint save, resumed with ``tools/train.py --resume``, ends exactly where the uninterrupted run
with the same seed ends: the same logged losses and learning rates at every iteration after the
resume point, and bit-identical weights, optimizer state, scheduler state and iteration count.

Real processes and real signals; the kill moments are exact (tests/reliability_plugin.py pauses the
tool at them). The run: 3 epochs x 4 iterations, validation after every epoch, a checkpoint per
epoch with ``max_keep_ckpts=1`` (mmengine's own hook deletes the only good checkpoint before
writing the next one).
"""
import os
import os.path as osp
import shutil

import pytest

from conftest import run_tool
from reliability_support import (RECIPE, assert_same_tensors, error_message, load_checkpoint, make_shapes_data,
                                 recipe_overrides, scalars, sigkill, start_tool, tool_env, wait_for_file)

# three recipe runs plus two killed ones: ~3.5 minutes on 2 cores (the fast in-process
# equivalence check is tests/test_reliability.py::test_crash_then_resume_auto_equals_the_uninterrupted_run)
pytestmark = pytest.mark.slow

PLUGIN = 'tests/reliability_plugin.py'
LOGGED = ('loss', 'loss_cls', 'loss_bbox', 'lr')


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    return make_shapes_data(str(tmp_path_factory.mktemp('shapes')))


def _train_args(work_dir, data, *extra, keep='1'):
    return [
        'tools/train.py', RECIPE, '--work-dir',
        str(work_dir), *extra, *recipe_overrides(data, extra={'default_hooks.checkpoint.max_keep_ckpts': keep})
    ]


def _last_checkpoint(work_dir):
    return open(osp.join(work_dir, 'last_checkpoint')).read().strip()


def _checkpoints(work_dir):
    return sorted(f for f in os.listdir(work_dir) if '.pth' in f)


def _assert_logged_equal(run, reference, iterations, what):
    for it in iterations:
        assert it in run, f'{what}: iteration {it} was not logged'
        for key in LOGGED:
            assert run[it][key] == reference[it][key], \
                f'{what}: iteration {it} {key} {run[it][key]} != uninterrupted {reference[it][key]}'


@pytest.fixture(scope='module')
def uninterrupted(shapes, tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('uninterrupted')
    run_tool(*_train_args(work_dir, shapes, keep='-1'), env=tool_env())
    return str(work_dir)


def test_killed_mid_epoch_and_inside_a_save_then_resumed_equals_uninterrupted(shapes, uninterrupted, tmp_path):
    reference = scalars(uninterrupted)
    assert sorted(reference) == list(range(1, 13))
    work_dir, marker = str(tmp_path / 'run'), str(tmp_path / 'paused')

    # 1. SIGKILL in the middle of epoch 2 (after iteration 6 of 12)
    proc = start_tool([PLUGIN, *_train_args(work_dir, shapes)],
                      str(tmp_path / 'kill1.log'),
                      MMEFFNET_TEST_PAUSE_AFTER_ITER='6',
                      MMEFFNET_TEST_MARKER=marker)
    wait_for_file(marker, proc, str(tmp_path / 'kill1.log'))
    sigkill(proc)
    assert _checkpoints(work_dir) == ['epoch_1.pth']
    assert _last_checkpoint(work_dir) == osp.join(work_dir, 'epoch_1.pth')
    first_run = scalars(work_dir)
    _assert_logged_equal(first_run, reference, range(1, 7), 'before the first kill')

    # 2. resume; SIGKILL inside the save of epoch 2's checkpoint (bytes written, not yet renamed)
    os.remove(marker)
    proc = start_tool([PLUGIN, *_train_args(work_dir, shapes, '--resume')],
                      str(tmp_path / 'kill2.log'),
                      MMEFFNET_TEST_PAUSE_IN_SAVE='1',
                      MMEFFNET_TEST_MARKER=marker)
    wait_for_file(marker, proc, str(tmp_path / 'kill2.log'))
    partial = open(marker).read()
    sigkill(proc)
    assert osp.basename(partial).startswith('.epoch_2.pth.') and osp.isfile(partial)
    assert 'epoch_2.pth' not in _checkpoints(work_dir), \
        'a checkpoint appeared under its final name before it was complete'
    # last_checkpoint still names the complete epoch 1, which max_keep_ckpts=1 has not deleted
    assert _last_checkpoint(work_dir) == osp.join(work_dir, 'epoch_1.pth')
    assert load_checkpoint(osp.join(work_dir, 'epoch_1.pth'))['meta']['iter'] == 4
    second_run = scalars(work_dir)
    _assert_logged_equal(second_run, reference, range(5, 9), 'resumed once (epoch 2 re-run)')

    # 3. resume again: continues from epoch 1 and finishes
    log = run_tool(*_train_args(work_dir, shapes, '--resume'), env=tool_env())
    out = log.stdout + log.stderr
    assert f'removed {partial}' in out and not osp.exists(partial)
    assert 'restored the random state of 1 process(es) saved at iteration 4' in out
    assert _checkpoints(work_dir) == ['epoch_3.pth']
    final_run = scalars(work_dir)
    _assert_logged_equal(final_run, reference, range(5, 13), 'resumed twice')

    resumed = load_checkpoint(osp.join(work_dir, 'epoch_3.pth'))
    straight = load_checkpoint(osp.join(uninterrupted, 'epoch_3.pth'))
    assert resumed['meta']['epoch'] == straight['meta']['epoch'] == 3
    assert resumed['meta']['iter'] == straight['meta']['iter'] == 12
    assert_same_tensors(resumed['state_dict'], straight['state_dict'], 'weights')
    assert_same_tensors(resumed['optimizer'], straight['optimizer'], 'optimizer')  # momentum buffers, lr
    assert_same_tensors(resumed['param_schedulers'], straight['param_schedulers'], 'schedulers')
    assert_same_tensors(resumed['meta']['rng_states'], straight['meta']['rng_states'], 'random state')


def test_resume_falls_back_from_a_truncated_last_checkpoint(shapes, uninterrupted, tmp_path):
    """last_checkpoint names a truncated file (a full disk, a copy cut short): --resume warns,
    naming it, continues from the previous good checkpoint and ends exactly where the uninterrupted
    run ended; an explicit --resume of the truncated file is a one-line error naming it."""
    work_dir = tmp_path / 'run'
    work_dir.mkdir()
    shutil.copy(osp.join(uninterrupted, 'epoch_2.pth'), work_dir / 'epoch_2.pth')
    whole = open(osp.join(uninterrupted, 'epoch_3.pth'), 'rb').read()
    truncated = work_dir / 'epoch_3.pth'
    truncated.write_bytes(whole[:len(whole) // 2])
    (work_dir / 'last_checkpoint').write_text(str(truncated))

    proc = run_tool(*_train_args(work_dir, shapes, '--resume', str(truncated)), env=tool_env(), check=False)
    assert proc.returncode == 2
    message = error_message(proc.stderr)
    assert message.startswith(f'ERROR: --resume {truncated}: cannot resume from it: ')
    assert 'truncated' in message and 'Traceback' not in proc.stderr

    proc = run_tool(*_train_args(work_dir, shapes, '--resume'), env=tool_env())
    out = proc.stdout + proc.stderr
    assert f'cannot use {truncated} (named in {work_dir / "last_checkpoint"})' in out
    assert f'Resuming from the previous good checkpoint {work_dir / "epoch_2.pth"}' in out
    resumed = load_checkpoint(str(truncated))  # rewritten, complete
    straight = load_checkpoint(osp.join(uninterrupted, 'epoch_3.pth'))
    assert resumed['meta']['iter'] == 12
    assert_same_tensors(resumed['state_dict'], straight['state_dict'], 'weights')
    _assert_logged_equal(scalars(str(work_dir)), scalars(uninterrupted), range(9, 13), 'after the fallback')
