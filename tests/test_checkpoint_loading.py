"""Strict backbone checkpoint loading (``init_cfg=dict(type='Pretrained', ...)``): foreign layouts
load directly, anything that does not fit is an error naming the keys, unsafe files never run code."""
import logging
import os

import pytest
import torch

from mmeffnet import EfficientNet
from mmeffnet.checkpoint import CheckpointMismatchError, CheckpointReadError, convert_checkpoint, save_converted
from reference_models import ODD, lukemelas_ref, real_image, reference_outputs, timm_ref, torchvision_ref


def pretrained(checkpoint, prefix=None, **kwargs) -> EfficientNet:
    """Build + init a backbone the way a config's ``init_cfg=Pretrained`` does."""
    model = EfficientNet(init_cfg=dict(type='Pretrained', checkpoint=str(checkpoint), prefix=prefix), **kwargs)
    model.init_weights()
    return model.eval()


def params(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


class LogRecords(logging.Handler):
    """Collect what mmengine's current logger emits (it does not propagate to pytest's caplog)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())

    def __enter__(self):
        from mmengine.logging import MMLogger
        self.logger = MMLogger.get_current_instance()
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self)


# ----------------------------------------------------------------------------- foreign files directly
@pytest.mark.parametrize('source', ['torchvision', 'timm-safetensors', 'lukemelas'])
def test_pretrained_points_directly_at_foreign_weights(tmp_path, source):
    """No conversion step: torchvision .pth, timm .safetensors and lukemelas .pth files load into
    the backbone through ``Pretrained`` (classifier dropped) and reproduce the reference."""
    if source == 'torchvision':
        ref, hooks = torchvision_ref('efficientnet_b0')
        path = tmp_path / 'efficientnet_b0_rwightman-7f5810bc.pth'
        torch.save(ref.state_dict(), path)
        settings = dict(padding='symmetric', norm_cfg=dict(type='BN', eps=1e-5, momentum=0.01))
    elif source == 'timm-safetensors':
        from safetensors.torch import save_file
        ref, hooks = timm_ref('tf_efficientnet_b0')
        path = tmp_path / 'model.safetensors'
        save_file(ref.state_dict(), str(path))
        settings = dict(padding='same')
    else:
        ref, hooks = lukemelas_ref('efficientnet-b0', ODD)
        path = tmp_path / 'efficientnet-b0-355c32eb.pth'
        torch.save(ref.state_dict(), path)
        settings = dict(padding='same')
    with LogRecords() as log:
        ours = pretrained(path, arch='b0', out_indices=(2, 4, 6), **settings)
    assert log.messages == []  # the right padding/eps: nothing to warn about
    x = real_image(*ODD)
    ref_feats, _ = reference_outputs(ref, hooks, x)
    with torch.no_grad():
        for level, feat in zip((2, 4, 6), ours(x)):
            assert (feat - ref_feats[level]).abs().max() < 1e-4, level


def test_unbuilt_levels_are_the_only_tolerated_difference(tmp_path):
    full = EfficientNet('b0', out_indices=(6, ))
    path = tmp_path / 'b0.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in full.state_dict().items()}}, path)
    partial = pretrained(path, prefix='backbone', arch='b0', out_indices=(3, 4, 5))  # no level 6 built
    for key, value in partial.state_dict().items():
        torch.testing.assert_close(value, full.state_dict()[key])
    # ... but a checkpoint lacking levels the model needs is an error
    detector_backbone = tmp_path / 'levels0-5.pth'
    torch.save(partial.state_dict(), detector_backbone)
    with pytest.raises(CheckpointMismatchError, match=r'missing keys \(5\): layers\.6\.conv\.weight'):
        pretrained(detector_backbone, arch='b0', out_indices=(6, ))


# ----------------------------------------------------------------------------- wrong arch
def test_checkpoint_of_another_arch_lists_missing_unexpected_and_mismatched_keys(tmp_path):
    path = tmp_path / 'b0.pth'
    torch.save(EfficientNet('b0').state_dict(), path)
    model = EfficientNet('b3')
    before = params(model)
    with pytest.raises(CheckpointMismatchError) as err:
        model.init_cfg = dict(type='Pretrained', checkpoint=str(path))
        model.init_weights()
    message = str(err.value)
    assert "does not fit this EfficientNet (arch='b3')" in message
    assert 'missing keys (' in message and 'layers.1.1.depthwise_conv.conv.weight' in message  # b3 has 2 MBConv1
    assert 'shape mismatches (' in message and 'layers.0.conv.weight (32, 3, 3, 3) vs model (40, 3, 3, 3)' in message
    assert "the checkpoint has the shapes of arch 'b0'" in message
    for key, value in model.state_dict().items():  # nothing was half-loaded
        torch.testing.assert_close(value, before[key])


def test_foreign_checkpoint_of_another_arch_is_refused_too(tmp_path):
    ref, _ = timm_ref('tf_efficientnet_b1')  # same channels as B0, 7 more blocks
    path = tmp_path / 'tf_efficientnet_b1.pth'
    torch.save(ref.state_dict(), path)
    with pytest.raises(CheckpointMismatchError) as err:
        pretrained(path, arch='b0')
    message = str(err.value)
    assert 'unexpected keys (' in message and 'layers.1.1.depthwise_conv.conv.weight' in message
    assert "the checkpoint has the shapes of arch 'b1'" in message


def test_lite_checkpoint_into_b0_reports_the_missing_se(tmp_path):
    ref, _ = timm_ref('tf_efficientnet_lite0')
    path = tmp_path / 'tf_efficientnet_lite0.pth'
    torch.save(ref.state_dict(), path)
    with pytest.raises(CheckpointMismatchError, match=r"missing keys \(64\): layers\.1\.0\.se\.conv1\.conv\.weight"):
        pretrained(path, arch='b0')


# ----------------------------------------------------------------------------- wrong prefix / layout
def test_wrong_prefix_lists_the_prefixes_found(tmp_path):
    path = tmp_path / 'classifier.pth'
    state = {f'backbone.{k}': v for k, v in EfficientNet('b0').state_dict().items()}
    state['head.fc.weight'] = torch.zeros(10, 1280)
    torch.save({'state_dict': state, 'meta': {}}, path)
    found = r"prefix 'model\.'; its top-level names are \['backbone', 'head'\]"
    with pytest.raises(CheckpointMismatchError, match=found):
        pretrained(path, prefix='model')
    with pytest.raises(CheckpointMismatchError, match=r"whole-model checkpoint\? set prefix='backbone'"):
        pretrained(path, prefix=None)
    pretrained(path, prefix='backbone')  # the right one loads


def test_prefix_on_a_bare_foreign_state_dict_says_to_drop_it(tmp_path):
    ref, _ = torchvision_ref('efficientnet_b0')
    path = tmp_path / 'tv.pth'
    torch.save(ref.state_dict(), path)
    with pytest.raises(
            CheckpointMismatchError,
            match=r"\['classifier', 'features'\] \(it is a bare torchvision-layout backbone state dict"):
        pretrained(path, prefix='backbone')


# ----------------------------------------------------------------------------- padding / eps warnings
def test_padding_and_eps_mismatch_are_logged_and_matter(tmp_path):
    ref, _ = timm_ref('tf_efficientnet_b0')
    src = tmp_path / 'tf_efficientnet_b0.pth'
    torch.save(ref.state_dict(), src)
    out = tmp_path / 'b0.pth'
    save_converted(convert_checkpoint('timm', str(src)), str(out))
    x = real_image(*ODD)
    right = pretrained(out, prefix='backbone', padding='same')
    with LogRecords() as log:
        wrong = pretrained(
            out, prefix='backbone', padding='symmetric', norm_cfg=dict(type='BN', eps=1e-5, momentum=0.01))
    assert any("made for padding='same' but the backbone uses padding='symmetric'" in m for m in log.messages)
    assert any('made for BN eps=0.001' in m and 'eps=1e-05' in m for m in log.messages)
    with torch.no_grad():
        assert (right(x)[0] - wrong(x)[0]).abs().max() > 1e-2  # the warning is about a real difference


def test_raw_torchvision_weights_into_default_settings_warn(tmp_path):
    ref, _ = torchvision_ref('efficientnet_b0')
    path = tmp_path / 'tv.pth'
    torch.save(ref.state_dict(), path)
    with LogRecords() as log:
        pretrained(path)  # defaults: padding='same', eps=1e-3
    assert len(log.messages) == 2 and "padding='symmetric'" in log.messages[0] and 'eps=1e-05' in log.messages[1]


# ----------------------------------------------------------------------------- unreadable / unsafe files
def test_code_executing_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / 'pwned'

    class Exploit:

        def __reduce__(self):
            return (os.system, (f'touch {marker}', ))

    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': EfficientNet('b0').state_dict(), 'meta': Exploit()}, path)
    with pytest.raises(CheckpointReadError, match=f'cannot load checkpoint {path}'):
        pretrained(path)
    assert not marker.exists()


@pytest.mark.parametrize('kind', ['text', 'truncated', 'not-a-dict', 'no-tensors', 'missing'])
def test_unreadable_checkpoints_give_a_clear_error(tmp_path, kind):
    path = tmp_path / 'bad.pth'
    if kind == 'text':
        path.write_text('this is not a checkpoint\n')
    elif kind == 'truncated':
        torch.save(EfficientNet('b0', out_indices=(1, )).state_dict(), path)
        path.write_bytes(path.read_bytes()[:5000])
    elif kind == 'not-a-dict':
        torch.save([torch.zeros(3)], path)
    elif kind == 'no-tensors':
        torch.save({'state_dict': {'epoch': 3}}, path)
    error, pattern = {
        'text': (CheckpointReadError, 'cannot load checkpoint .*bad.pth'),
        'truncated': (CheckpointReadError, 'cannot load checkpoint .*bad.pth'),
        'not-a-dict': (CheckpointMismatchError, 'bad.pth holds a list, not a dict of tensors'),
        'no-tensors': (CheckpointMismatchError, r"bad.pth contains no tensors \(keys: \['epoch'\]\)"),
        'missing': (FileNotFoundError, 'checkpoint file not found: .*bad.pth')
    }[kind]
    with pytest.raises(error, match=pattern):
        pretrained(path)
