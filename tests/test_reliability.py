"""Checkpoints that survive kills and bad disks, resume fallback, and the non-finite loss guard,
in-process with a real mmengine Runner on a tiny model (the recipe-scale runs with real processes
and real signals are in test_reliability_resume.py)."""
import logging
import math
import os

import pytest
import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

import mmeffnet  # noqa: F401
from mmeffnet.checkpoint import atomic_write_bytes, safe_torch_load
from mmeffnet.runtime import resume
from mmeffnet.runtime.checkpoint_hook import SafeCheckpointHook
from mmeffnet.runtime.nonfinite import NonFiniteLossError
from mmeffnet.runtime.resume import find_resumable_checkpoint, resolve_resume

# mmengine resumes mmengine checkpoints under torch>=2.6's weights_only with our loader (an opt-in)
SAFE_LOADING = dict(type='mmeffnet.SafeCheckpointLoadingHook')


class TwoLossModel(BaseModel):
    """A linear regressor with two loss terms, so that the guard has terms to name."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(4, 1)

    def forward(self, inputs, targets=None, mode='loss'):
        out = self.fc(inputs).squeeze(1)
        if mode == 'loss':
            return dict(loss_l2=((out - targets)**2).mean(), loss_l1=(out - targets).abs().mean())
        return [out]


class Points(Dataset):
    """8 samples; those in ``poisoned`` have NaN inputs."""

    def __init__(self, poisoned=()):
        self.poisoned = set(poisoned)

    def __len__(self):
        return 8

    def __getitem__(self, i):
        x = torch.arange(4, dtype=torch.float32) + i
        if i in self.poisoned:
            x = torch.full((4, ), float('nan'))
        return dict(inputs=x / 10, targets=torch.tensor(float(i % 3)))


def _runner(work_dir, max_epochs=2, poisoned=(), checkpoint=None, nonfinite=None, resume=False, load_from=None):
    hooks = dict(checkpoint=dict(type='mmeffnet.SafeCheckpointHook', interval=1, **(checkpoint or {})))
    return Runner(
        model=TwoLossModel(),
        work_dir=str(work_dir),
        randomness=dict(seed=0),
        train_dataloader=dict(
            dataset=Points(poisoned),
            batch_size=2,
            collate_fn=dict(type='default_collate'),
            sampler=dict(type='DefaultSampler', shuffle=False)),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9)),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        default_hooks=hooks,
        custom_hooks=[dict(type='mmeffnet.NonFiniteLossHook', **(nonfinite or {})), SAFE_LOADING],
        resume=resume,
        load_from=load_from,
        default_scope='mmengine')


# --- atomic files ------------------------------------------------------------------------------
def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    path = tmp_path / 'last_checkpoint'
    atomic_write_bytes(b'first', str(path))
    atomic_write_bytes(b'second', str(path))
    assert path.read_bytes() == b'second'

    with pytest.raises(TypeError):  # a write that fails half-way
        atomic_write_bytes(object(), str(path))
    assert path.read_bytes() == b'second'
    assert sorted(os.listdir(tmp_path)) == ['last_checkpoint'], 'a temp file was left behind'


def test_failed_save_keeps_the_previous_checkpoint_and_last_checkpoint(tmp_path, monkeypatch):
    """With max_keep_ckpts=1, mmengine's CheckpointHook deletes epoch_1.pth before it writes
    epoch_2.pth: a save that dies leaves no checkpoint. The safe hook deletes it only after."""
    import mmengine.runner.checkpoint as mm_checkpoint
    runner = _runner(tmp_path, max_epochs=2, checkpoint=dict(max_keep_ckpts=1))
    real_save, calls = torch.save, []

    def save_that_dies_the_second_time(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            f.write(b'PK\x03\x04 half a zip')  # what reached the buffer before the crash
            raise OSError('No space left on device')
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(mm_checkpoint.torch, 'save', save_that_dies_the_second_time)
    with pytest.raises(OSError, match='No space left'):
        runner.train()
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == ['epoch_1.pth']
    assert not list(tmp_path.glob('.*.partial')), 'the temp file of the failed save was left behind'
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'epoch_1.pth')
    assert safe_torch_load(str(tmp_path / 'epoch_1.pth'))['meta']['epoch'] == 1


def test_checkpoints_hold_every_process_random_state_and_resume_restores_it(tmp_path):
    straight = _runner(tmp_path / 'a', max_epochs=2)
    straight.train()
    ckpt = safe_torch_load(str(tmp_path / 'a' / 'epoch_1.pth'))
    states = ckpt['meta']['rng_states']
    assert len(states) == 1 and set(states[0]) >= {'python', 'numpy', 'torch'}

    resumed_dir = tmp_path / 'b'
    resumed_dir.mkdir()
    (resumed_dir / 'epoch_1.pth').write_bytes((tmp_path / 'a' / 'epoch_1.pth').read_bytes())
    resumed = _runner(resumed_dir, max_epochs=2, resume=True, load_from=str(resumed_dir / 'epoch_1.pth'))
    resumed.train()
    # the random state at the end (hence every draw in epoch 2) matches the uninterrupted run
    end_a = safe_torch_load(str(tmp_path / 'a' / 'epoch_2.pth'))['meta']['rng_states'][0]
    end_b = safe_torch_load(str(resumed_dir / 'epoch_2.pth'))['meta']['rng_states'][0]
    assert torch.equal(end_a['torch'], end_b['torch']) and end_a['python'] == end_b['python']
    assert (end_a['numpy'][1] == end_b['numpy'][1]).all()


class DropoutModel(TwoLossModel):
    """TwoLossModel with dropout: its losses depend on the random state, as a detector's drop path
    and augmentations do."""

    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(0.5)

    def forward(self, inputs, targets=None, mode='loss'):
        return super().forward(self.drop(inputs), targets, mode)


class LogLosses(Hook):
    """A hook recording (iteration, loss, lr) and able to crash the run after a given iteration."""

    priority = 'LOWEST'

    def __init__(self, crash_after=None):
        self.records, self.crash_after = {}, crash_after

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.records[runner.iter + 1] = (float(outputs['loss']), runner.optim_wrapper.get_lr()['lr'][0])
        if runner.iter + 1 == self.crash_after:
            raise KeyboardInterrupt('simulated crash')


def _resumable_runner(work_dir, resume_from=None):
    return Runner(
        model=DropoutModel(),
        work_dir=str(work_dir),
        randomness=dict(seed=0),
        train_dataloader=dict(
            dataset=Points(),
            batch_size=2,
            collate_fn=dict(type='default_collate'),
            sampler=dict(type='DefaultSampler', shuffle=True)),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9)),
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=5),
            dict(type='MultiStepLR', milestones=[2], gamma=0.1, by_epoch=True)
        ],
        train_cfg=dict(by_epoch=True, max_epochs=3),
        default_hooks=dict(checkpoint=dict(type='mmeffnet.SafeCheckpointHook', interval=1, max_keep_ckpts=1)),
        custom_hooks=[dict(type='mmeffnet.NonFiniteLossHook'), SAFE_LOADING],
        resume=resume_from is not None,
        load_from=resume_from,
        default_scope='mmengine')


def assert_bitwise_equal(a, b, where: str) -> None:
    """``a == b`` to the bit, through nested dicts/lists; ``where`` names the first differing entry.
    (``repr`` would not do: it prints tensors to 4 decimals.)"""
    assert type(a) is type(b), f'{where}: {type(a).__name__} vs {type(b).__name__}'
    if isinstance(a, torch.Tensor):
        assert (a.dtype, a.shape) == (b.dtype, b.shape), f'{where}: {a.dtype} {a.shape} vs {b.dtype} {b.shape}'
        if not torch.equal(a, b):
            diff = (a.double() - b.double()).abs().max().item() if a.is_floating_point() else 'n/a'
            raise AssertionError(f'{where}: tensors differ (max abs diff {diff})')
    elif isinstance(a, dict):
        assert list(a) == list(b), f'{where}: keys {list(a)} vs {list(b)}'
        for k in a:
            assert_bitwise_equal(a[k], b[k], f'{where}[{k!r}]')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f'{where}: length {len(a)} vs {len(b)}'
        for i, (x, y) in enumerate(zip(a, b)):
            assert_bitwise_equal(x, y, f'{where}[{i}]')
    else:
        assert a == b, f'{where}: {a!r} vs {b!r}'


def test_assert_bitwise_equal_sees_what_repr_hides():
    w = torch.full((3, ), 0.1)
    a = {'state': [{'w': w}], 'lr': 0.1}
    b = {'state': [{'w': w.nextafter(torch.tensor(1.0))}], 'lr': 0.1}  # 1 ulp apart
    assert repr(a) == repr(b)
    with pytest.raises(AssertionError, match=r"optimizer\['state'\]\[0\]\['w'\]: tensors differ"):
        assert_bitwise_equal(a, b, 'optimizer')


def test_crash_then_resume_auto_equals_the_uninterrupted_run(tmp_path):
    """The fast resume-equivalence check (in process; the real-process SIGKILL version of it on the
    detection recipe is tests/test_reliability_resume.py, slow): a run that crashes in the middle of
    epoch 2 and is resumed as ``--resume`` does it logs the same losses and learning rates as the
    uninterrupted run from the resume point on and ends with the same weights, optimizer, scheduler
    and random state, to the bit. Dropout makes the losses depend on the restored random state."""
    straight_log = LogLosses()
    straight = _resumable_runner(tmp_path / 'straight')
    straight.register_hook(straight_log)
    straight.train()

    work_dir = tmp_path / 'crashed'
    crashed_log = LogLosses(crash_after=6)  # 4 iterations per epoch: iteration 6 is mid epoch 2
    crashed = _resumable_runner(work_dir)
    crashed.register_hook(crashed_log)
    with pytest.raises(KeyboardInterrupt):
        crashed.train()
    resume_from = resolve_resume('auto', str(work_dir))
    assert resume_from == str(work_dir / 'epoch_1.pth')
    kept = tmp_path / 'epoch_1_copy.pth'  # max_keep_ckpts=1: the resumed run deletes epoch_1.pth
    kept.write_bytes(open(resume_from, 'rb').read())

    resumed_log = LogLosses()
    resumed = _resumable_runner(work_dir, resume_from=resume_from)
    resumed.register_hook(resumed_log)
    resumed.train()
    assert sorted(resumed_log.records) == list(range(5, 13)) and resumed.iter == 12
    assert resumed_log.records == {i: straight_log.records[i] for i in range(5, 13)}
    assert crashed_log.records == {i: straight_log.records[i] for i in range(1, 7)}

    a = safe_torch_load(str(tmp_path / 'straight' / 'epoch_3.pth'))
    b = safe_torch_load(str(work_dir / 'epoch_3.pth'))
    for key in ('state_dict', 'optimizer', 'param_schedulers'):
        assert_bitwise_equal(a[key], b[key], key)
    sa, sb = a['meta']['rng_states'][0], b['meta']['rng_states'][0]
    assert torch.equal(sa['torch'], sb['torch']) and sa['python'] == sb['python']

    # without restoring the random state the dropout draws after the resume would differ: teeth
    plain_log = LogLosses()
    plain = _resumable_runner(tmp_path / 'plain_resume', resume_from=str(kept))
    hook = next(h for h in plain.hooks if isinstance(h, SafeCheckpointHook))
    hook.after_load_checkpoint = lambda runner, checkpoint: None  # never sees the saved random state
    plain.register_hook(plain_log)
    plain.train()
    assert plain_log.records[5] != straight_log.records[5]


# --- resume: which checkpoint ------------------------------------------------------------------
def _fake_checkpoint(path, epoch):
    torch.save(dict(state_dict={'w': torch.zeros(1)}, meta=dict(epoch=epoch, iter=epoch * 4)), path)
    os.utime(path, (epoch, epoch))  # older epochs have older mtimes


def test_resume_uses_last_checkpoint_when_it_loads(tmp_path):
    for epoch in (1, 2):
        _fake_checkpoint(tmp_path / f'epoch_{epoch}.pth', epoch)
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_1.pth'))
    assert find_resumable_checkpoint(str(tmp_path)) == str(tmp_path / 'epoch_1.pth')


@pytest.mark.parametrize('damage', ['truncated', 'missing', 'empty last_checkpoint', 'garbage'])
def test_resume_falls_back_to_the_previous_good_checkpoint(tmp_path, damage, monkeypatch):
    for epoch in (1, 2, 3):
        _fake_checkpoint(tmp_path / f'epoch_{epoch}.pth', epoch)
    last = tmp_path / 'epoch_3.pth'
    (tmp_path / 'last_checkpoint').write_text(str(last))
    if damage == 'truncated':
        last.write_bytes(last.read_bytes()[:100])
    elif damage == 'missing':
        last.unlink()
    elif damage == 'garbage':
        last.write_bytes(os.urandom(4096))
    else:
        (tmp_path / 'last_checkpoint').write_text('')
        last.write_bytes(b'')
    warnings = []
    monkeypatch.setattr(resume, 'print_log', lambda msg, **kw: warnings.append((msg, kw.get('level'))))
    assert find_resumable_checkpoint(str(tmp_path)) == str(tmp_path / 'epoch_2.pth')
    (message, level), = warnings
    assert level == logging.WARNING
    if damage != 'empty last_checkpoint':
        assert f'cannot use {last} (named in {tmp_path / "last_checkpoint"})' in message
    assert f'Resuming from the previous good checkpoint {tmp_path / "epoch_2.pth"}' in message


def test_resume_with_only_damaged_checkpoints_is_an_error_listing_them(tmp_path):
    (tmp_path / 'epoch_1.pth').write_bytes(b'')
    torch.save({'state_dict': {}}, tmp_path / 'published.pth')  # weights only: not resumable
    with pytest.raises(ValueError) as err:
        find_resumable_checkpoint(str(tmp_path))
    message = str(err.value)
    assert f'no usable checkpoint in {tmp_path}' in message
    assert str(tmp_path / 'epoch_1.pth') in message and 'published.pth' in message and 'meta' in message


def test_resume_with_nothing_to_resume_starts_afresh(tmp_path):
    assert resolve_resume('auto', str(tmp_path / 'new_work_dir')) is None
    assert resolve_resume('auto', str(tmp_path)) is None
    assert resolve_resume(None, str(tmp_path)) is None


def test_explicit_resume_of_a_bad_file_names_it(tmp_path):
    path = tmp_path / 'iter_100.pth'
    path.write_bytes(b'\x00' * 64)
    with pytest.raises(ValueError, match=f'--resume {path}: cannot resume from it: .*truncated or not a PyTorch'):
        resolve_resume(str(path), str(tmp_path))


# --- non-finite losses -------------------------------------------------------------------------
def test_nonfinite_loss_stops_naming_iteration_and_terms_after_saving(tmp_path):
    runner = _runner(tmp_path, max_epochs=2, poisoned={5})  # sample 5 is in batch 3 (iteration 3)
    with pytest.raises(NonFiniteLossError) as err:
        runner.train()
    message = str(err.value)
    assert message.startswith('non-finite loss at iteration 3 (epoch 1, batch 3): loss=nan, loss_l2=nan, loss_l1=nan')
    saved = tmp_path / 'nonfinite_iter_3.pth'
    assert f'saved in {saved}' in message
    state = safe_torch_load(str(saved))
    assert state['meta']['iter'] == 2  # the state before the bad iteration: two good steps
    assert all(torch.isfinite(v).all() for v in state['state_dict'].values())
    assert 'optimizer' in state
    # last_checkpoint still names the last regular checkpoint (none yet in epoch 1)
    assert not (tmp_path / 'last_checkpoint').exists()


def test_nonfinite_loss_skip_mode_skips_the_step_and_trains_on(tmp_path):
    from mmengine.hooks import Hook

    class RecordWeights(Hook):

        def __init__(self):
            self.after = {}

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            self.after[runner.iter + 1] = runner.model.fc.weight.detach().clone()

    runner = _runner(tmp_path, max_epochs=2, poisoned={5}, nonfinite=dict(action='skip'))
    record = RecordWeights()
    runner.register_hook(record)
    runner.train()
    hook = next(h for h in runner.hooks if type(h).__name__ == 'NonFiniteLossHook')
    assert hook.skipped == [3, 7]  # sample 5 is in batch 3 of both epochs
    assert runner.iter == 8
    for skipped in hook.skipped:  # no update at the skipped steps, updates at the others
        assert torch.equal(record.after[skipped], record.after[skipped - 1])
        assert not torch.equal(record.after[skipped + 1], record.after[skipped])
    assert all(math.isfinite(v) for v in runner.model.fc.weight.detach().flatten().tolist())


def test_skip_mode_stops_after_too_many_nonfinite_iterations_in_a_row(tmp_path):
    runner = _runner(
        tmp_path, max_epochs=1, poisoned=set(range(8)), nonfinite=dict(action='skip', max_consecutive_skips=2))
    with pytest.raises(NonFiniteLossError, match=r'iteration 3 .* \(3 non-finite iterations in a row'):
        runner.train()


def test_nonfinite_hook_rejects_an_unknown_action():
    from mmeffnet.runtime.nonfinite import NonFiniteLossHook
    with pytest.raises(ValueError, match="action='ignore'; choose one of \\('stop', 'skip'\\)"):
        NonFiniteLossHook(action='ignore')


def test_safe_checkpoint_hook_is_registered_for_every_toolbox():
    from mmengine.registry import HOOKS
    for scope in ('mmdet', 'mmseg', 'mmpretrain'):
        registry = __import__(f'{scope}.registry', fromlist=['HOOKS']).HOOKS
        assert registry.get('mmeffnet.SafeCheckpointHook') is SafeCheckpointHook
    assert HOOKS.get('mmeffnet.NonFiniteLossHook').__name__ == 'NonFiniteLossHook'
