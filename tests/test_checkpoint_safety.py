"""mmengine checkpoints on torch >= 2.6: resume works with weights_only=True once a run opts in to our
loader (it is never installed behind anyone's back, and always restored); hostile files don't load."""
import os

import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.runner.checkpoint import CheckpointLoader, load_from_local
from torch.utils.data import Dataset

from mmeffnet import EfficientNet
from mmeffnet.checkpoint import safe_torch_load
from mmeffnet.runtime import install_safe_checkpoint_loading, safe_checkpoint_loading, uninstall_safe_checkpoint_loading


class TinyClassifier(BaseModel):

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)  # built before the Runner seeds anything
        self.backbone = EfficientNet('b0', out_indices=(2, ), drop_path_rate=0.)
        self.fc = nn.Linear(24, 2)

    def forward(self, inputs, labels=None, mode='loss'):
        logits = self.fc(self.backbone(inputs)[0].mean((2, 3)))
        if mode == 'loss':
            return dict(loss=nn.functional.cross_entropy(logits, labels))
        return [logits]


class RandomImages(Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return dict(inputs=torch.randn(3, 32, 32, generator=g), labels=torch.tensor(i % 2))


def _runner(work_dir, max_epochs, resume=False):
    # the config way to opt in: mmeffnet's hook installs the safe loader for the run
    safe_loading = [dict(type='mmeffnet.SafeCheckpointLoadingHook')] if resume else []
    return Runner(
        model=TinyClassifier(),
        work_dir=str(work_dir),
        randomness=dict(seed=0),
        train_dataloader=dict(
            dataset=RandomImages(),
            batch_size=4,
            collate_fn=dict(type='default_collate'),
            sampler=dict(type='DefaultSampler', shuffle=True)),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9)),
        param_scheduler=dict(type='MultiStepLR', milestones=[1], gamma=0.1, by_epoch=True),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        resume=resume,
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1)),
        custom_hooks=safe_loading,
        default_scope='mmengine')


def test_runner_checkpoint_resumes_under_weights_only(tmp_path):
    from mmengine.utils import digit_version
    assert digit_version(torch.__version__) >= digit_version('2.6')  # the default this guards against
    straight = _runner(tmp_path / 'straight', max_epochs=2)
    straight.train()

    # The same run "interrupted" after epoch 1: only epoch_1.pth survives.
    interrupted = tmp_path / 'interrupted'
    _runner(interrupted, max_epochs=2).train()
    os.remove(interrupted / 'epoch_2.pth')
    (interrupted / 'last_checkpoint').write_text(str(interrupted / 'epoch_1.pth'))
    ckpt = interrupted / 'epoch_1.pth'
    with pytest.raises(Exception, match='HistoryBuffer|Unsupported global|weights_only'):
        torch.load(ckpt)  # plain torch.load refuses mmengine's message hub
    assert safe_torch_load(str(ckpt))['meta']['epoch'] == 1

    resumed = _runner(interrupted, max_epochs=2, resume=True)
    resumed.train()
    assert _local_loader() is load_from_local, 'the hook did not put mmengine\'s loader back after the run'
    assert resumed.epoch == 2 and resumed.iter == 4  # continued from epoch 1 (2 iters/epoch)
    assert resumed.optim_wrapper.get_lr()['lr'][0] == pytest.approx(0.005)  # scheduler state restored
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)  # bit-for-bit the uninterrupted run


class _Exploit:

    def __reduce__(self):
        return (os.system, ('echo pwned > /tmp/mmeffnet_pwned', ))


def test_pickle_that_executes_code_is_refused(tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'payload': _Exploit()}, path)
    if os.path.exists('/tmp/mmeffnet_pwned'):
        os.remove('/tmp/mmeffnet_pwned')
    with pytest.raises(RuntimeError, match=f'cannot load checkpoint {path}'):
        safe_torch_load(str(path))
    assert not os.path.exists('/tmp/mmeffnet_pwned')


@pytest.mark.parametrize('content', [b'', b'not a checkpoint at all', b'PK\x03\x04truncated'])
def test_garbage_files_give_a_clear_error(tmp_path, content):
    path = tmp_path / 'bad.pth'
    path.write_bytes(content)
    with pytest.raises(RuntimeError, match='cannot load checkpoint .*bad.pth'):
        safe_torch_load(str(path))


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        safe_torch_load(str(tmp_path / 'nope.pth'))


def _local_loader():
    return CheckpointLoader._schemes['']


def test_safe_loading_is_installed_only_inside_the_block_and_restored():
    assert _local_loader() is load_from_local  # importing mmeffnet did not replace it
    with safe_checkpoint_loading():
        assert _local_loader() is safe_torch_load
        with safe_checkpoint_loading():  # nested: still ours after the inner block
            pass
        assert _local_loader() is safe_torch_load
    assert _local_loader() is load_from_local

    install_safe_checkpoint_loading()
    install_safe_checkpoint_loading()  # idempotent
    try:
        assert _local_loader() is safe_torch_load
    finally:
        uninstall_safe_checkpoint_loading()
    assert _local_loader() is load_from_local


def test_safe_loading_never_replaces_another_packages_loader():

    def theirs(filename, map_location=None):
        return {}

    CheckpointLoader.register_scheme(prefixes='', loader=theirs, force=True)
    try:
        with pytest.raises(RuntimeError, match='another package replaced it'):
            install_safe_checkpoint_loading()
        assert _local_loader() is theirs
    finally:
        CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)
