"""The parts of the TF training recipe that mmengine/torch do not have: TF1 RMSProp, the staircase
LR decay every 2.4 epochs with warm-up, TF's EMA, the classifier head with dropout; and the
mmpretrain model-zoo layout loading into our classifier with identical outputs."""
import math
import os.path as osp

import mmpretrain
import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmengine.registry import PARAM_SCHEDULERS, init_default_scope

import mmeffnet.engine  # noqa: F401
import mmeffnet.models.heads  # noqa: F401
from conftest import CONFIGS
from mmeffnet.engine import RMSpropTF, TFExponentialDecayLR, TFExponentialMovingAverage

MMPRETRAIN_CONFIGS = osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'configs')


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on the shared 2-core box two threads per process oversubscribe the cores
    and make the model tests many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------ RMSProp
def tf1_rmsprop_reference(w0, grads, lrs, rho=0.9, momentum=0.9, eps=1e-3, wd=0.):
    """TF1 ApplyRMSProp in numpy: ms starts at 1, eps inside the sqrt, lr inside the momentum."""
    w, ms, mom = w0.copy(), np.ones_like(w0), np.zeros_like(w0)
    for g, lr in zip(grads, lrs):
        g = g + wd * w
        ms = rho * ms + (1 - rho) * g * g
        mom = momentum * mom + lr * g / np.sqrt(ms + eps)
        w = w - mom
    return w


def _run(optimizer_cls, w0, grads, lrs, **kwargs):
    p = nn.Parameter(torch.tensor(w0))
    opt = optimizer_cls([p], lr=lrs[0], **kwargs)
    for g, lr in zip(grads, lrs):
        for group in opt.param_groups:
            group['lr'] = lr
        p.grad = torch.tensor(g)
        opt.step()
    return p.detach().numpy()


def test_rmsprop_tf_matches_tf1_update_with_changing_lr_and_weight_decay():
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((4, 3))
    # Gradients from 1e-3 to 10: both regimes of the epsilon matter.
    grads = [rng.standard_normal((4, 3)) * 10.**(i % 5 - 3) for i in range(30)]
    lrs = [0.05 * 0.97**(i // 3) for i in range(30)]
    ours = _run(RMSpropTF, w0, grads, lrs, alpha=0.9, momentum=0.9, eps=1e-3, weight_decay=1e-5)
    ref = tf1_rmsprop_reference(w0, grads, lrs, wd=1e-5)
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12)


def test_rmsprop_tf_matches_timm_rmsprop_tf():
    timm_optim = pytest.importorskip('timm.optim')
    rng = np.random.default_rng(1)
    w0 = rng.standard_normal(50).astype(np.float32)
    grads = [rng.standard_normal(50).astype(np.float32) * 10.**(i % 4 - 2) for i in range(25)]
    lrs = [0.1 * 0.9**i for i in range(25)]
    ours = _run(RMSpropTF, w0, grads, lrs, eps=1e-3, weight_decay=1e-2)
    theirs = _run(timm_optim.RMSpropTF, w0, grads, lrs, alpha=0.9, momentum=0.9, eps=1e-3, weight_decay=1e-2)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_torch_rmsprop_with_the_tf_epsilon_is_a_different_optimizer():
    """Why the recipe needs RMSpropTF: torch's RMSprop with TF's numbers moves far more early on."""
    rng = np.random.default_rng(2)
    w0 = rng.standard_normal(20)
    grads = [rng.standard_normal(20) * 1e-2 for _ in range(5)]
    lrs = [0.01] * 5
    tf_like = _run(RMSpropTF, w0, grads, lrs)
    torch_rms = _run(torch.optim.RMSprop, w0, grads, lrs, alpha=0.9, momentum=0.9, eps=1e-3)
    tf_step = np.abs(tf_like - w0).mean()
    torch_step = np.abs(torch_rms - w0).mean()
    assert torch_step > 20 * tf_step, (torch_step, tf_step)


@pytest.mark.parametrize('kwargs, bad', [(dict(lr=-1.), 'lr'), (dict(lr=0.1, alpha=1.5), 'alpha'),
                                         (dict(lr=0.1, eps=-1e-3), 'eps'),
                                         (dict(lr=0.1, weight_decay=-1.), 'weight_decay')])
def test_rmsprop_tf_rejects_bad_values(kwargs, bad):
    with pytest.raises(ValueError, match=bad):
        RMSpropTF([nn.Parameter(torch.zeros(1))], **kwargs)


def test_rmsprop_tf_builds_from_an_mmpretrain_config():
    from mmpretrain.registry import OPTIMIZERS
    init_default_scope('mmpretrain')
    opt = OPTIMIZERS.build(dict(type='mmeffnet.RMSpropTF', params=[nn.Parameter(torch.zeros(2))], lr=0.256))
    assert isinstance(opt, RMSpropTF)
    assert opt.defaults == dict(lr=0.256, alpha=0.9, momentum=0.9, eps=1e-3, weight_decay=0.)


# ------------------------------------------------------------------------------------------ LR schedule
def tf_learning_rate(step, lr0, steps_per_epoch, decay_epochs=2.4, factor=0.97, warmup_epochs=5):
    """utils.build_learning_rate of the TF code."""
    warmup_steps = int(warmup_epochs * steps_per_epoch)
    if step < warmup_steps:
        return lr0 * step / warmup_steps
    return lr0 * factor**math.floor(step / (steps_per_epoch * decay_epochs))


def _scheduler(epoch_length, lr0=0.256, **kwargs):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr0)
    wrapper = OptimWrapper(opt)
    cfg = dict(
        type='mmeffnet.TFExponentialDecayLR',
        decay_epochs=2.4,
        decay_factor=0.97,
        warmup_epochs=5,
        by_epoch=True,
        convert_to_iter_based=True,
        end=100,
        **kwargs)
    return wrapper, PARAM_SCHEDULERS.build(cfg, default_args=dict(optimizer=wrapper, epoch_length=epoch_length))


@pytest.mark.parametrize('epoch_length', [10, 7, 313])
def test_lr_schedule_is_tfs_staircase_with_fractional_decay_period(epoch_length):
    wrapper, sched = _scheduler(epoch_length)
    assert sched.end == 100 * epoch_length and not sched.by_epoch
    seen = []
    for step in range(40 * epoch_length):
        seen.append(wrapper.param_groups[0]['lr'])
        sched.step()
    expected = [tf_learning_rate(s, 0.256, epoch_length) for s in range(len(seen))]
    np.testing.assert_allclose(seen, expected, rtol=1e-12)
    # 2.4 epochs is not whole iterations for 7 per epoch: decays happen at steps 17 (16.8), 34 (33.6), ...
    if epoch_length == 7:
        decays = [s for s in range(36, len(seen)) if seen[s] < seen[s - 1]]
        assert decays[:3] == [51, 68, 84], decays[:3]  # ceil(k * 16.8) after the 35-step warm-up


def test_lr_schedule_ends_warmup_on_two_decays_and_peaks_below_lr0():
    wrapper, sched = _scheduler(100)
    lrs = [sched.factor_at(s) for s in range(1000)]
    assert lrs[0] == 0 and lrs[250] == pytest.approx(0.5)
    assert lrs[499] == pytest.approx(499 / 500) and lrs[500] == pytest.approx(0.97**2)


def test_lr_schedule_resumes_from_its_state():
    wrapper, sched = _scheduler(9)
    for _ in range(129):  # the next step, 130, crosses a decay (6 * 21.6 = 129.6)
        sched.step()
    state = sched.state_dict()
    lr_before = wrapper.param_groups[0]['lr']
    wrapper2, sched2 = _scheduler(9)
    sched2.load_state_dict(state)
    sched.step()
    sched2.step()
    assert wrapper.param_groups[0]['lr'] != lr_before
    assert wrapper2.param_groups[0]['lr'] == pytest.approx(wrapper.param_groups[0]['lr'], rel=1e-12)


def test_lr_schedule_rejects_epoch_stepping_and_bad_values():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match='convert_to_iter_based'):
        TFExponentialDecayLR(opt, epoch_length=10, by_epoch=True)
    with pytest.raises(ValueError, match='decay_factor'):
        TFExponentialDecayLR(opt, epoch_length=10, decay_factor=1.5)
    with pytest.raises(ValueError, match='epoch_length'):
        TFExponentialDecayLR(opt, epoch_length=0)


# ------------------------------------------------------------------------------------------ EMA
def test_ema_follows_tf_decay_warmup_and_averages_bn_statistics():
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    ema = TFExponentialMovingAverage(model, momentum=1e-4)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    for t in range(1, 40):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            model[1].running_mean.add_(1.)
        ema.update_parameters(model)
        current = model.state_dict()
        if t == 1:  # mmengine's first update copies the weights
            expected = {k: v.clone().float() for k, v in current.items()}
            continue
        decay = min(0.9999, (1 + t) / (10 + t))  # TF: num_updates = global step of this update
        for k, v in current.items():
            if v.dtype.is_floating_point:
                expected[k] = decay * expected[k] + (1 - decay) * v
    averaged = ema.module.state_dict()
    for k in ('0.weight', '0.bias', '1.running_mean', '1.running_var'):
        torch.testing.assert_close(averaged[k], expected[k], rtol=1e-5, atol=1e-6)
    # Late in training the decay is the configured 0.9999.
    assert ema.momentum_at(10**6) == pytest.approx(1e-4)
    assert ema.momentum_at(0) == pytest.approx(1 - 2 / 11)


# ------------------------------------------------------------------------------------------ head
def test_head_dropout_only_in_training_keys_and_tf_init():
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    head = MODELS.build(dict(type='mmeffnet.EfficientNetClsHead', num_classes=100, in_channels=64, dropout_rate=0.5))
    head.init_weights()
    assert list(head.state_dict()) == ['fc.weight', 'fc.bias']
    assert head.fc.weight.abs().max() <= 0.1 + 1e-6 and head.fc.weight.abs().max() > 0.09  # 1/sqrt(100)
    assert torch.count_nonzero(head.fc.bias) == 0
    feats = (torch.randn(8, 64), )
    head.train()
    torch.manual_seed(0)
    a = head(feats)
    b = head(feats)
    assert not torch.allclose(a, b), 'dropout is not active in training'
    head.eval()
    torch.testing.assert_close(head(feats), head.fc(feats[0]))
    with pytest.raises(ValueError, match='dropout_rate'):
        MODELS.build(dict(type='mmeffnet.EfficientNetClsHead', num_classes=10, in_channels=8, dropout_rate=1.0))


# ------------------------------------------------------------------------------------------ zoo layout
@pytest.mark.parametrize('arch', ['b0', pytest.param('b2', marks=pytest.mark.slow)])  # b2: 30 s, slow
def test_mmpretrain_zoo_layout_loads_strictly_and_gives_the_same_logits(arch, tmp_path):
    """An mmpretrain EfficientNet classifier (the model-zoo checkpoints' own model) saved and loaded
    into our eval config's classifier: every key fits and the logits are the same."""
    from mmpretrain.registry import MODELS

    from mmeffnet.checkpoint import check_and_load, extract_state_dict, read_checkpoint
    init_default_scope('mmpretrain')
    theirs_cfg = Config.fromfile(osp.join(MMPRETRAIN_CONFIGS, 'efficientnet', f'efficientnet-{arch}_8xb32_in1k.py'))
    theirs = MODELS.build(theirs_cfg.model).eval()
    torch.manual_seed(0)
    with torch.no_grad():  # BN statistics of real activations, as in a trained checkpoint: with the
        # initial ones (mean 0, var 1) a random deep network's output hardly depends on its input.
        for m in theirs.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the calibration batches
                m.weight.normal_(1, 0.1)
                m.bias.normal_(0, 0.1)
        theirs.train()
        for _ in range(2):
            theirs.extract_feat(torch.randn(4, 3, 67, 64), stage='backbone')
        theirs.eval()
        theirs.head.fc.weight.normal_(0, 0.1)
    path = str(tmp_path / 'zoo.pth')
    torch.save({'state_dict': theirs.state_dict(), 'meta': {}}, path)

    def ours(padding):
        cfg = Config.fromfile(f'{CONFIGS}/classification/eval/efficientnet-{arch}_in1k.py')
        cfg.model.backbone.norm_cfg = dict(type='BN', eps=1e-3, momentum=0.01)
        cfg.model.backbone.padding = padding
        model = MODELS.build(cfg.model).eval()
        check_and_load(model, extract_state_dict(read_checkpoint(path), path), path)
        return model

    x = torch.randn(2, 3, 67, 64)  # odd and even sizes: TF SAME padding is asymmetric there
    with torch.no_grad():
        expected_feats = theirs.extract_feat(x, stage='backbone')[-1]
        expected_logits = theirs(x, mode='tensor')
        model = ours('same')
        feats, logits = model.extract_feat(x, stage='backbone')[-1], model(x, mode='tensor')
        wrong = ours('symmetric')(x, mode='tensor')  # same weights, PyTorch padding
    print(f'{arch}: |feature| max {expected_feats.abs().max():.3g}, '
          f'feature diff {(feats - expected_feats).abs().max():.3g}, '
          f'logit diff {(logits - expected_logits).abs().max():.3g}, with symmetric padding '
          f'{(wrong - expected_logits).abs().max():.3g}')
    # Equal up to float32 summation order (relative to the values' scale) ...
    assert (feats - expected_feats).abs().max() <= 2e-5 * expected_feats.abs().max()
    assert (logits - expected_logits).abs().max() <= 2e-5 * expected_logits.abs().max()
    # ... and the comparison is sharp enough to see a wrong padding (the weights load either way).
    assert (wrong - expected_logits).abs().max() >= 1e-2 * expected_logits.abs().max()
