"""Memory policies (``memory=``, issue 21): what training keeps for backward changes, the numbers do not.

'plain' runs the modules as they are; 'save-bn-input' keeps only the BatchNorm inputs of BN +
activation; 'recompute-pointwise' (the default) also rebuilds each MBConv's activation outputs,
SE product and SAME padding in backward instead of keeping them.
"""
import os.path as osp
import sys
import weakref

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.modules.batchnorm import _BatchNorm

import cpu_sync_bn_kernels
from conftest import TOOLS
from mmeffnet import EfficientNet
from mmeffnet.models.memory_saving import MEMORY_POLICIES
from test_performance_features import randomize_bn

sys.path.insert(0, osp.join(TOOLS, 'analysis'))  # the benchmark's package (project tooling)
from benchmarking.measure import saved_tensor_breakdown  # noqa: E402

NORM_ACT = 'norm / activation outputs'

# the cases the plain modules define and the policies must follow
CASES = {
    'batchnorm': dict(drop_path_rate=0.),
    'drop-path': dict(drop_path_rate=0.5),
    'norm-eval': dict(norm_eval=True),
    'frozen-stages': dict(frozen_stages=3),
    'nchw': dict(channels_last=False, drop_path_rate=0.),
    'symmetric-padding': dict(padding='symmetric'),
}


def _train_step(memory: str, amp: bool = False, steps: int = 2, part: slice = slice(None), **options) -> dict:
    """Two training steps of B0 to level 5 (64 px: the stride-2 blocks pad asymmetrically) on
    the images ``part`` of a batch of 2: outputs, input and parameter gradients, buffers."""
    torch.manual_seed(0)
    model = EfficientNet('b0', out_indices=(2, 3, 4, 5), memory=memory, **options)
    model.init_weights()
    randomize_bn(model, seed=7)  # norm_eval normalises with the running statistics
    model.train()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))[part].requires_grad_()
    torch.manual_seed(2)  # the same drop-path masks for every policy
    for _ in range(steps):
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=amp):
            outs = model(x)
        sum((o.float() * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in outs).backward()
    return dict(
        outs=[o.detach() for o in outs],
        grads={
            n: p.grad
            for n, p in model.named_parameters() if p.grad is not None
        },
        input_grad=x.grad,
        buffers=dict(model.named_buffers()))


@pytest.fixture(scope='module')
def plain_runs() -> dict:
    return {case: _train_step('plain', **options) for case, options in CASES.items()}


def _assert_gradients_within_rounding(got: dict, ref: dict, bound: float = 1e-5) -> None:
    """The gradients as one vector within ``bound`` relative (L2) of the reference, and no tensor
    off by more than ``10 * bound`` of the largest gradient. Not per tensor relative: a BatchNorm
    bias feeding another training BatchNorm has a true gradient of 0, a sum that cancels to
    rounding noise (measured 100 % apart between two exact methods)."""
    assert got.keys() == ref.keys()
    diff = torch.cat([(got[n].float() - ref[n].float()).flatten() for n in ref])
    norm = torch.cat([ref[n].float().flatten() for n in ref])
    assert diff.norm() <= bound * norm.norm(), f'relative L2 {diff.norm() / norm.norm():.3g}'
    worst = max(ref, key=lambda n: (got[n].float() - ref[n].float()).abs().max())
    assert diff.abs().max() <= 10 * bound * norm.abs().max(), f'{worst}: {diff.abs().max():.3g}'


@pytest.mark.parametrize('memory', ['save-bn-input', 'recompute-pointwise'])
@pytest.mark.parametrize('case', list(CASES))
def test_policy_changes_no_number(plain_runs, memory, case):
    """Forward outputs and running statistics bitwise those of the plain modules, over two steps
    (the second normalises with updated statistics). Gradients equal to float rounding: the
    rebuilt BN outputs (``x * scale + shift``) and BatchNorm's own kernel round differently.
    Measured on AVX-512 (AMD EPYC): relative L2 <= 1.6e-6 (bound 1e-5), worst tensor <= 7.3e-6
    of the largest gradient (bound 1e-4), input gradient <= 1.7e-6 of its largest (bound 1e-5);
    'save-bn-input' and 'recompute-pointwise' alike."""
    got, ref = _train_step(memory, **CASES[case]), plain_runs[case]
    assert all(torch.equal(a, b) for a, b in zip(got['outs'], ref['outs']))
    assert all(torch.equal(got['buffers'][k], ref['buffers'][k]) for k in ref['buffers'])
    _assert_gradients_within_rounding(got['grads'], ref['grads'])
    _assert_gradients_within_rounding({'input': got['input_grad']}, {'input': ref['input_grad']})


def test_policies_under_bf16_autocast():
    """AMP (CPU bf16 autocast): outputs and statistics bitwise, gradients equal to bf16 rounding.
    Measured (AVX-512): relative L2 1.3e-4, worst tensor 7.5e-4 of the largest gradient, the same
    for both policies (bf16 has 8 bits of mantissa: 3.9e-3 relative per rounding); bound 1e-3."""
    ref = _train_step('plain', amp=True, drop_path_rate=0.)
    for memory in ('save-bn-input', 'recompute-pointwise'):
        got = _train_step(memory, amp=True, drop_path_rate=0.)
        assert all(torch.equal(a, b) for a, b in zip(got['outs'], ref['outs']))
        assert all(torch.equal(got['buffers'][k], ref['buffers'][k]) for k in ref['buffers'])
        _assert_gradients_within_rounding(got['grads'], ref['grads'], bound=1e-3)


def _sync_bn_worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=2)
    from mmeffnet.models import gloo_sync_bn
    gathers = []
    gather = gloo_sync_bn.gather_batch_stats

    def counted(*args, **kwargs):
        gathers.append(1)
        return gather(*args, **kwargs)

    gloo_sync_bn.gather_batch_stats = counted
    results = {}
    for memory in MEMORY_POLICIES:
        gathers.clear()
        results[memory] = _train_step(
            memory, part=slice(rank, rank + 1), norm_cfg=dict(type='mmeffnet.GlooSyncBN', eps=1e-3, momentum=0.01))
        results[memory]['gathers'] = len(gathers)
    results['no-affine'] = _no_affine_grads(rank)
    torch.save(results, osp.join(out_dir, f'rank{rank}.pt'))
    dist.destroy_process_group()


def _no_affine_grads(rank: int) -> dict:
    """Input gradients of SiLU(GlooSyncBN(x)) without affine parameters (the normalized tensor
    is then the pre-activation: the activation's gradient must not overwrite it), per policy."""
    from mmeffnet.models.gloo_sync_bn import GlooSyncBatchNorm
    from mmeffnet.models.memory_saving import batch_norm_act
    bn = GlooSyncBatchNorm(4, affine=False).train()
    grads = {}
    for memory in ('plain', 'save-bn-input'):
        x = torch.randn(2, 4, 5, 5, generator=torch.Generator().manual_seed(rank)).requires_grad_()
        y = torch.nn.functional.silu(bn(x)) if memory == 'plain' else batch_norm_act(x, bn, 'silu')
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        grads[memory] = x.grad
    return grads


def test_policies_under_gloo_sync_bn_in_two_processes(tmp_path):
    """SyncBN on CPU (GlooSyncBN), 2 processes x 1 image: each policy's outputs and running
    statistics bitwise the plain layer's, gradients to float rounding, and the statistics
    all-gathered once per norm layer and forward (two steps), never again in backward."""
    mp.start_processes(
        _sync_bn_worker, args=(str(tmp_path / 'init'), str(tmp_path)), nprocs=2, join=True, start_method='spawn')
    num_norms = sum(isinstance(m, _BatchNorm) for m in EfficientNet('b0', out_indices=(2, 3, 4, 5)).modules())
    for rank in range(2):
        runs = torch.load(tmp_path / f'rank{rank}.pt', weights_only=True)
        ref = runs['plain']
        assert ref['gathers'] == 2 * num_norms
        for memory in ('save-bn-input', 'recompute-pointwise'):
            got = runs[memory]
            assert got['gathers'] == ref['gathers']
            assert all(torch.equal(a, b) for a, b in zip(got['outs'], ref['outs']))
            assert all(torch.equal(got['buffers'][k], ref['buffers'][k]) for k in ref['buffers'])
            _assert_gradients_within_rounding(got['grads'], ref['grads'])
            _assert_gradients_within_rounding({'input': got['input_grad']}, {'input': ref['input_grad']})
        no_affine = runs['no-affine']
        _assert_gradients_within_rounding({'input': no_affine['save-bn-input']}, {'input': no_affine['plain']})
    # the test has teeth: the two processes' images normalised together differ from one alone
    alone = _train_step('plain', part=slice(0, 1))
    assert not torch.allclose(alone['outs'][0],
                              torch.load(tmp_path / 'rank0.pt', weights_only=True)['plain']['outs'][0])


def _torch_sync_bn_worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=2)
    without_kernels = {}
    for memory in ('save-bn-input', 'recompute-pointwise'):  # the module's own path, and its error
        model = EfficientNet('b0', out_indices=(2, ), memory=memory, norm_cfg=dict(type='SyncBN')).train()
        try:
            model(torch.randn(1, 3, 32, 32))
        except ValueError as error:
            without_kernels[memory] = str(error)
    cpu_sync_bn_kernels.enable()  # torch's SyncBatchNorm on CPU tensors, this process only
    calls = {'all_gather': 0, 'all_reduce': 0}
    for name in calls:
        collective = getattr(dist, name)

        def counted(*args, _collective=collective, _name=name, **kwargs):
            calls[_name] += 1
            return _collective(*args, **kwargs)

        setattr(dist, name, counted)
    norm_cfg = dict(type='SyncBN', eps=1e-3, momentum=0.01)  # mmcv's SyncBN: torch.nn.SyncBatchNorm
    results = {}
    for memory in MEMORY_POLICIES:
        calls.update(all_gather=0, all_reduce=0)
        results[memory] = _train_step(memory, part=slice(rank, rank + 1), drop_path_rate=0., norm_cfg=norm_cfg)
        results[memory]['calls'] = dict(calls)
        model = EfficientNet('b0', out_indices=(2, 3, 4, 5), memory=memory, norm_cfg=norm_cfg).train()
        x = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(rank))
        results[memory]['kept'] = sum(saved_tensor_breakdown(lambda: model(x)).values())
    results['without-kernels'] = without_kernels
    torch.save(results, osp.join(out_dir, f'rank{rank}.pt'))
    dist.destroy_process_group()


def test_policies_under_torch_sync_bn_in_two_processes(tmp_path):
    """torch's SyncBatchNorm (mmcv's ``SyncBN``, the GPU recipes' norm), 2 processes x 1 image,
    with its five CUDA kernels given CPU versions (tests/cpu_sync_bn_kernels.py): under each policy
    the outputs, running statistics and gradients are bitwise those of torch's own module and
    function (the same kernels in the same order; the activation's input is rebuilt with the
    forward's kernel), with one all-gather per norm layer and forward and one all-reduce per norm
    layer and backward, and less kept for backward. The kernels' CPU versions are checked too:
    the two processes together compute what one process computes on both images. Before they are
    given, every policy runs the module's own path and gets its error (CPU tensors)."""
    mp.start_processes(
        _torch_sync_bn_worker, args=(str(tmp_path / 'init'), str(tmp_path)), nprocs=2, join=True, start_method='spawn')
    num_norms = sum(isinstance(m, _BatchNorm) for m in EfficientNet('b0', out_indices=(2, 3, 4, 5)).modules())
    full = _train_step('plain', drop_path_rate=0., norm_cfg=dict(type='BN', eps=1e-3, momentum=0.01))
    for rank in range(2):
        runs = torch.load(tmp_path / f'rank{rank}.pt', weights_only=True)
        # where the kernels are missing (CPU tensors as torch ships) the module's own error, as under 'plain'
        assert list(runs.pop('without-kernels').values()) == [
            'SyncBatchNorm expected input tensor to be on GPU '
            f'or XPU or {torch._C._get_privateuse1_backend_name()}'
        ] * 2
        ref = runs['plain']
        assert ref['calls'] == dict(all_gather=2 * num_norms, all_reduce=2 * num_norms)
        for memory in ('save-bn-input', 'recompute-pointwise'):
            got = runs[memory]
            assert got['calls'] == ref['calls']
            assert all(torch.equal(a, b) for a, b in zip(got['outs'], ref['outs']))
            assert all(torch.equal(got['buffers'][k], ref['buffers'][k]) for k in ref['buffers'])
            assert all(torch.equal(got['grads'][n], ref['grads'][n]) for n in ref['grads'])
            assert torch.equal(got['input_grad'], ref['input_grad'])
        # measured (MB, B0 128 px, 1 image): plain 43.3, save-bn-input 35.4, recompute-pointwise 24.8
        assert runs['save-bn-input']['kept'] < 0.9 * ref['kept']
        assert runs['recompute-pointwise']['kept'] < 0.6 * ref['kept']
        for a, b in zip(ref['outs'], full['outs']):  # measured <= 3.7e-5 of the largest (level 5: 2x2 px)
            assert (a - b[rank:rank + 1]).abs().max() <= 1e-4 * b.abs().max()
    alone = _train_step('plain', part=slice(0, 1), drop_path_rate=0.)
    assert not torch.allclose(alone['outs'][0], full['outs'][0][0:1], atol=1e-3)


def test_recompute_pointwise_keeps_less():
    """Bytes autograd keeps for one B0 step (batch 2, 128 px, to level 5), by kind, exact: under
    'recompute-pointwise' no SE product and no padded map is kept, and of the BN / activation
    outputs only those outside the MBConv blocks (stem, head). Measured (MB): plain 72.2,
    save-bn-input 56.2, recompute-pointwise 35.0 (0.62x save-bn-input; B3 at 384 px: 0.53x)."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 128, 128)
    kept = {}
    for memory in MEMORY_POLICIES:
        model = EfficientNet('b0', out_indices=(2, 3, 4, 5), memory=memory).train()
        kept[memory] = saved_tensor_breakdown(lambda: model(x))
    saving, recompute = kept['save-bn-input'], kept['recompute-pointwise']
    assert sum(saving.values()) < 0.8 * sum(kept['plain'].values())
    assert sum(recompute.values()) < 0.65 * sum(saving.values()), kept
    assert not any(kind.startswith(('products', 'padded')) for kind in recompute), recompute
    assert recompute[NORM_ACT] < 0.2 * saving[NORM_ACT], kept
    assert recompute['conv outputs'] == saving['conv outputs']


def test_recompute_pointwise_leaves_no_reference_cycle():
    """The SE gate is saved by the sigmoid that made it: a saved-tensor hook that kept the tensor
    with its grad_fn would make a C++ cycle that no garbage collection frees."""
    model = EfficientNet('b0', out_indices=(2, ), drop_path_rate=0.).train()
    gates = []
    model.layers[2][0].se.conv2.register_forward_hook(lambda m, args, out: gates.append(weakref.ref(out)))
    out = model(torch.randn(1, 3, 32, 32))[0]
    out.sum().backward()
    del out
    assert gates and gates[0]() is None


def test_unknown_policy_names_the_choices():
    with pytest.raises(
            ValueError,
            match=r"memory='recompute' is not a memory policy; choose one of \('plain', "
            r"'save-bn-input', 'recompute-pointwise'\)"):
        EfficientNet('b0', memory='recompute')


def test_batch_norm_without_activation_is_rebuilt_once_for_all_readers():
    """A BatchNorm output without activation read by several saved-tensor users (a BiFPN node's
    output feeds up to three weighted fusions) is rebuilt once per backward, not once per reader,
    and released after the last; the gradients are those of the plain layer."""
    from mmeffnet.models.memory_saving import batch_norm_act
    from mmeffnet.models.recompute import recompute_pointwise
    bn = torch.nn.BatchNorm2d(4).train()
    x = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(0))
    weights = [torch.tensor(float(w), requires_grad=True) for w in (0.5, -1.5, 2.0)]
    grads = {}
    for memory in ('plain', 'recompute-pointwise'):
        rebuilds = []
        leaf = x.clone().requires_grad_()
        with recompute_pointwise():
            out = bn(leaf) if memory == 'plain' else batch_norm_act(leaf, bn, 'identity')
            if memory != 'plain':
                recipe, rebuild = out.grad_fn.recipe, out.grad_fn.recipe.pre_activation
                recipe.pre_activation = lambda: rebuilds.append(1) or rebuild()
            total = sum((w * out).square().sum() for w in weights)  # each product saves ``out``
        total.backward()
        grads[memory] = [leaf.grad] + [w.grad.clone() for w in weights]
        for w in weights:
            w.grad = None
        if memory != 'plain':
            assert len(rebuilds) == 1 and recipe._cached is None
    for got, ref in zip(grads['recompute-pointwise'], grads['plain']):
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
