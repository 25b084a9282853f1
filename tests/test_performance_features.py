"""The speed/memory features of the backbone (issue 7), each checked against the plain reference:
memory-saving BN+activation, channels_last, fuse() (deploy), ONNX export, torch.compile."""
import copy
import importlib.util
import os.path as osp
import shutil
import sys

import pytest
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils._python_dispatch import TorchDispatchMode

from conftest import TOOLS, run_tool
from mmeffnet import EfficientNet
from mmeffnet.deployment.onnx import compare_with_onnxruntime, export_onnx
from mmeffnet.models.layers import ConvBNAct

sys.path.insert(0, osp.join(TOOLS, 'analysis'))  # the benchmark's package (project tooling)
from benchmarking.measure import saved_tensor_bytes  # noqa: E402


def plain_bn_act(module: nn.Module) -> nn.Module:
    """The reference path: nn.BatchNorm2d then the activation module (memory-saving op off)."""
    for m in module.modules():
        if isinstance(m, ConvBNAct):
            m.memory = 'plain'
    return module


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial affine parameters and running statistics, so BN folding is really exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                n = m.num_features
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.2 * torch.randn(n, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
    return model


def assert_close_grads(a: nn.Module, b: nn.Module) -> None:
    for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        if p.grad is None and q.grad is None:
            continue
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=lambda m: f'{name}: {m}')


def assert_same_buffers(a: nn.Module, b: nn.Module) -> None:
    for (name, x), (_, y) in zip(a.named_buffers(), b.named_buffers()):
        assert torch.equal(x, y), f'buffer {name} differs: {x.flatten()[:4]} vs {y.flatten()[:4]}'


# ---------------------------------------------------------------- memory-saving BN + activation
@pytest.mark.parametrize('act', ['SiLU', 'ReLU6', 'ReLU', None])
@pytest.mark.parametrize('bn_mode', ['train', 'frozen-eval', 'cumulative-momentum'])
def test_memory_saving_bn_act_matches_plain_path(act, bn_mode):
    norm_cfg = dict(type='BN', eps=1e-3, momentum=None if bn_mode == 'cumulative-momentum' else 0.01)
    act_cfg = dict(type=act, inplace=True) if act else None
    torch.manual_seed(0)
    block = randomize_bn(ConvBNAct(8, 16, 3, stride=2, norm_cfg=norm_cfg, act_cfg=act_cfg))
    if bn_mode == 'frozen-eval':  # norm_eval: BN in eval mode while its parameters still train
        block.bn.eval()
    ref = plain_bn_act(copy.deepcopy(block))
    assert block._memory_saving(), 'the memory-saving op should take this block'
    assert not ref._memory_saving()
    x = torch.randn(2, 8, 17, 13)
    x_ref = x.clone().requires_grad_()
    x.requires_grad_()
    grad = torch.randn(2, 16, 9, 7)

    for _ in range(2):  # twice: the second step sees updated running statistics
        out = block(x)
        out_ref = ref(x_ref)
        assert torch.equal(out, out_ref), f'forward differs by {(out - out_ref).abs().max():.3g}'
        out.backward(grad)
        out_ref.backward(grad)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-4, atol=1e-5)
    assert_close_grads(block, ref)
    assert_same_buffers(block, ref)  # running_mean / running_var / num_batches_tracked
    if bn_mode != 'frozen-eval':
        assert int(block.bn.num_batches_tracked) == 2

    # what it is for: fewer bytes kept for backward (with an activation: BN output not kept)
    saved = saved_tensor_bytes(lambda: block(x))
    saved_ref = saved_tensor_bytes(lambda: ref(x_ref))
    feature_map = out.numel() * out.element_size()
    stats = 4 * block.bn.num_features * 4  # a few per-channel vectors (mean, invstd)
    if act is not None:  # the BN output (activation input) is not kept: one feature map less
        assert saved_ref - saved >= feature_map - stats, (saved, saved_ref, feature_map)
    else:
        assert saved <= saved_ref + stats


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('bn_mode', ['train', 'frozen-eval'])
@pytest.mark.parametrize('act', ['SiLU', None])
def test_memory_saving_bn_act_under_autocast_equals_plain_path(dtype, bn_mode, act):
    """AMP: the op gives exactly the plain path's half-precision output and gradients, and its
    BatchNorm parameter gradients are float32 sums that do not overflow where a half-precision
    sum would (a loss-scaled gradient summed over 2x32x32 positions > 65504, fp16's maximum)."""
    torch.manual_seed(0)
    block = randomize_bn(
        ConvBNAct(
            8,
            16,
            3,
            norm_cfg=dict(type='BN', eps=1e-3, momentum=0.01),
            act_cfg=dict(type=act, inplace=True) if act else None))
    if bn_mode == 'frozen-eval':
        block.bn.eval()
    ref = plain_bn_act(copy.deepcopy(block))
    x = torch.randn(2, 8, 32, 32, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    grad = 100. + torch.rand(2, 16, 32, 32)  # 2048 positions: sums > 80000 even after the SiLU
    with torch.autocast('cpu', dtype=dtype):
        out = block(x)
        out_ref = ref(x_ref)
    assert out.dtype == out_ref.dtype == dtype
    assert torch.equal(out, out_ref)
    out.backward(grad.to(dtype))
    out_ref.backward(grad.to(dtype))
    assert torch.equal(x.grad, x_ref.grad)
    for (name, p), (_, q) in zip(block.named_parameters(), ref.named_parameters()):
        assert p.grad.dtype == torch.float32, name
        assert torch.equal(p.grad, q.grad), f'{name}: {(p.grad - q.grad).abs().max():.3g}'
    assert torch.isfinite(block.bn.bias.grad).all() and block.bn.bias.grad.abs().min() > 65504
    assert_same_buffers(block, ref)


class _RecordBatchNormBackward(TorchDispatchMode):
    """Records the statistics arguments (running_mean, running_var, save_mean, save_invstd) of
    every ``native_batch_norm_backward`` call as shapes, None for an absent tensor."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket is torch.ops.aten.native_batch_norm_backward:  # .default or .out
            self.calls.append([None if a is None else tuple(a.shape) for a in args[3:7]])
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize('bn_mode', ['train', 'frozen-eval'])
def test_memory_saving_backward_passes_batchnorm_backward_its_statistics_like_autograd(bn_mode):
    """The CUDA kernel of ``native_batch_norm_backward`` asserts that save_mean / save_invstd are
    defined (empty in eval mode, as native_batch_norm returns them); the CPU kernel does not check.
    So the op must call it with the same kind of statistics as autograd does for nn.BatchNorm2d
    (in training without running statistics, as for ``track_running_stats=False``)."""
    block = ConvBNAct(4, 8, 3, norm_cfg=dict(type='BN'), act_cfg=dict(type='SiLU'))
    if bn_mode == 'frozen-eval':
        block.bn.eval()
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    recorded = {}
    for name, module in (('ours', block), ('plain', plain_bn_act(copy.deepcopy(block)))):
        out = module(x)
        with _RecordBatchNormBackward() as rec:
            out.sum().backward()
        recorded[name] = rec.calls
    assert len(recorded['ours']) == len(recorded['plain']) == 1
    ours, plain = recorded['ours'][0], recorded['plain'][0]
    if bn_mode == 'train':
        assert ours == [None, None, (8, ), (8, )] and plain[2:] == [(8, ), (8, )]
    else:
        assert ours == plain == [(8, ), (8, ), (0, ), (0, )]


def test_backbone_training_under_autocast_equals_plain_path():
    """The whole backbone (channels_last inside, SE, shortcuts) under bf16 autocast: the same
    outputs and gradients, bit for bit, as the plain BatchNorm -> SiLU modules."""
    torch.manual_seed(0)
    model = EfficientNet('b0', out_indices=(3, 6), drop_path_rate=0.).train()
    ref = plain_bn_act(copy.deepcopy(model))
    x = torch.randn(2, 3, 64, 64)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        outs = model(x)
        outs_ref = ref(x)
    for out, out_ref in zip(outs, outs_ref):
        assert out.dtype == torch.bfloat16 and torch.equal(out, out_ref)
    sum(o.float().square().mean() for o in outs).backward()
    sum(o.float().square().mean() for o in outs_ref).backward()
    for (name, p), (_, q) in zip(model.named_parameters(), ref.named_parameters()):
        assert torch.equal(p.grad, q.grad), f'{name}: {(p.grad - q.grad).abs().max():.3g}'
    assert_same_buffers(model, ref)


def test_memory_saving_backbone_keeps_less_for_backward_same_gradients():
    torch.manual_seed(0)
    model = EfficientNet('b0', out_indices=(3, ), drop_path_rate=0.).train()
    ref = EfficientNet('b0', out_indices=(3, ), drop_path_rate=0., memory='plain').train()
    ref.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 64, 64)
    out = model(x)[0]
    out_ref = ref(x)[0]
    torch.testing.assert_close(out, out_ref, rtol=1e-5, atol=1e-5)
    out.square().mean().backward()
    out_ref.square().mean().backward()
    assert_close_grads(model, ref)
    saved = saved_tensor_bytes(lambda: model(x))
    saved_ref = saved_tensor_bytes(lambda: ref(x))
    # measured 0.73x for B0 to stride 8 (the 1x1 project convs and SE keep their own inputs)
    assert saved < 0.8 * saved_ref, f'memory-saving path keeps {saved} bytes, plain {saved_ref}'


def test_with_cp_recompute_does_not_update_running_stats_twice():
    torch.manual_seed(0)
    model = EfficientNet('b0', out_indices=(3, ), drop_path_rate=0.2, with_cp=True).train()
    ref = EfficientNet('b0', out_indices=(3, ), drop_path_rate=0.2, with_cp=False).train()
    ref.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 64, 64)
    torch.manual_seed(1)  # the same drop-path masks in both (checkpoint restores the RNG state)
    model(x)[0].square().mean().backward()
    torch.manual_seed(1)
    ref(x)[0].square().mean().backward()
    counts = {int(m.num_batches_tracked) for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    assert counts == {1}, f'num_batches_tracked after one step: {counts}'
    assert_same_buffers(model, ref)
    assert_close_grads(model, ref)


# ---------------------------------------------------------------- channels_last
@pytest.mark.parametrize('mode', ['eval', 'train'])
def test_channels_last_internal_path_returns_nchw_equal_to_reference(mode):
    torch.manual_seed(0)
    out_indices = (2, 4, 6) if mode == 'eval' else (2, 3)  # train: fewer levels, the backward is slow
    model = randomize_bn(EfficientNet('b0', out_indices=out_indices, drop_path_rate=0.))
    model.train(mode == 'train')
    ref = copy.deepcopy(model)
    model.channels_last, ref.channels_last = True, False  # the constructor's option, set on copies
    seen = []
    model.layers[2].register_forward_pre_hook(
        lambda m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    x = torch.randn(2, 3, 67, 75)
    with torch.set_grad_enabled(mode == 'train'):
        outs, outs_ref = model(x), ref(x)
    assert seen == [True], 'the stages should run in channels_last'
    for o, r in zip(outs, outs_ref):
        assert o.shape == r.shape and o.is_contiguous(), 'outputs must come back NCHW-contiguous'
        torch.testing.assert_close(o, r, rtol=1e-4, atol=1e-4)
    if mode == 'train':
        sum(o.mean() for o in outs).backward()
        sum(o.mean() for o in outs_ref).backward()
        assert_close_grads(model, ref)
    # the CPU default is channels_last; a channels_last input stays channels_last
    default = EfficientNet('b0', out_indices=(2, ))
    assert default.channels_last is None and default._use_channels_last(x)
    with torch.no_grad():
        cl = model(x.contiguous(memory_format=torch.channels_last))
    assert cl[0].is_contiguous(memory_format=torch.channels_last)


# ---------------------------------------------------------------- fuse (deploy)
@pytest.mark.parametrize('arch', ['b0', 'lite0'])
def test_fuse_equals_unfused_and_refuses_training(arch):
    torch.manual_seed(0)
    model = randomize_bn(EfficientNet(arch, out_indices=(3, 4, 6), drop_path_rate=0.2)).eval()
    x = torch.randn(2, 3, 67, 75)
    with torch.no_grad():
        expected = model(x)
        fused = copy.deepcopy(model).fuse()
        got = fused(x)
    assert fused.fused and not any(isinstance(m, _BatchNorm) for m in fused.modules())
    assert sum(p.numel() for p in fused.parameters()) < sum(p.numel() for p in model.parameters())
    for e, g in zip(expected, got):  # within 1e-4 at unit scale (float32 rounding grows with |x|)
        assert (e - g).abs().max() < 1e-4 * max(1., float(e.abs().max()))
    with pytest.raises(RuntimeError, match='fused'):
        fused.train()
    fused.train(False)  # eval stays allowed
    assert not fused.training


def test_inference_writes_se_product_and_shortcut_in_place_with_the_same_result():
    """Without autograd, MBConv writes the SE product into its depthwise output and the shortcut
    sum into its projection output (no new maps); with autograd it must not (backward needs
    them). Outputs are bitwise the same either way, and the caller's input is never touched."""
    torch.manual_seed(0)
    model = randomize_bn(EfficientNet('b0', out_indices=(2, 6))).eval()
    block = model.layers[2][1]  # stride 1, same width: has the shortcut
    assert block.has_shortcut and block.se is not None
    ptrs = {}

    def record(name):

        def hook(module, args, output):
            ptrs[name] = (args[0].data_ptr(), output.data_ptr())

        return hook

    block.se.register_forward_hook(record('se'))
    block.linear_conv.register_forward_hook(record('linear'))
    block.register_forward_hook(record('block'))
    x = torch.randn(2, 3, 64, 64)
    x_before = x.clone()
    with torch.no_grad():
        no_grad_out = model(x)
    se_in, se_out = ptrs['se']
    assert se_out == se_in, 'SE product not written in place without autograd'
    assert ptrs['block'][1] == ptrs['linear'][1], 'shortcut sum not written in place'
    assert torch.equal(x, x_before)
    with torch.inference_mode():
        inference_out = model(x)
    grad_out = model(x.requires_grad_())
    assert ptrs['se'][0] != ptrs['se'][1] and ptrs['block'][1] != ptrs['linear'][1]
    for a, b, c in zip(no_grad_out, inference_out, grad_out):
        assert torch.equal(a, b) and torch.equal(a, c.detach())
    sum(o.sum() for o in grad_out).backward()  # nothing backward needs was overwritten
    assert x.grad is not None and torch.isfinite(x.grad).all()


# ---------------------------------------------------------------- ONNX
def test_onnx_export_dynamic_sizes_match_pytorch(tmp_path):
    pytest.importorskip('onnxruntime')
    torch.manual_seed(0)
    model = randomize_bn(EfficientNet('b0', out_indices=(3, 4, 5), padding='same')).eval()
    path = str(tmp_path / 'b0.onnx')
    names = export_onnx(model, path, (1, 3, 64, 64))
    assert names == ['output0', 'output1', 'output2']
    # odd sizes: TF SAME padding is asymmetric there; a traced-in constant padding would break them
    diffs = compare_with_onnxruntime(model, path, [(1, 3, 64, 64), (2, 3, 97, 75), (1, 3, 33, 65)])
    assert max(diffs.values()) < 1e-4, diffs


def test_dynamo_exporter_without_onnxscript_names_the_fix(tmp_path):
    if importlib.util.find_spec('onnxscript') is not None:
        pytest.skip('onnxscript is installed here')
    with pytest.raises(ValueError, match='onnxscript'):
        export_onnx(EfficientNet('b0', out_indices=(1, )), str(tmp_path / 'x.onnx'), (1, 3, 32, 32), exporter='dynamo')
    with pytest.raises(ValueError, match='exporter must be one of'):
        export_onnx(
            EfficientNet('b0', out_indices=(1, )), str(tmp_path / 'x.onnx'), (1, 3, 32, 32), exporter='tensorrt')


def test_export_onnx_tool_fused_backbone_verifies(tmp_path):
    pytest.importorskip('onnxruntime')
    out = tmp_path / 'b0_fused.onnx'
    proc = run_tool(
        'tools/deployment/export_onnx.py',
        'backbone',
        '--arch',
        'b0',
        '--out-indices',
        '4',
        '6',
        '--fuse',
        '--shape',
        '1',
        '3',
        '96',
        '96',
        '--out',
        str(out),
        '--verify',
        timeout=300)
    assert out.is_file() and 'verified: max abs diff' in proc.stdout, proc.stdout
    assert 'input [1, 3, 103, 109]' in proc.stdout  # an odd size was checked too


@pytest.mark.slow
def test_export_onnx_tool_whole_detector(tmp_path):
    """About 45 s on a 2-core CPU."""
    pytest.importorskip('onnxruntime')
    pytest.importorskip('mmdet')
    config = osp.join(
        osp.dirname(osp.dirname(osp.abspath(__file__))), 'configs', 'retinanet_effb0_fpn_crop512_8x4_1x_coco.py')
    if not osp.isfile(config):
        pytest.skip(f'{config} is absent')
    out = tmp_path / 'retinanet_b0.onnx'
    proc = run_tool(
        'tools/deployment/export_onnx.py',
        'config',
        config,
        '--fuse',
        '--shape',
        '1',
        '3',
        '128',
        '128',
        '--out',
        str(out),
        '--verify',
        timeout=400)
    # RetinaNet in 'tensor' mode: class scores and box deltas of 5 FPN levels
    assert 'exported config' in proc.stdout and '(10 outputs' in proc.stdout, proc.stdout
    assert 'verified: max abs diff' in proc.stdout, proc.stdout


def test_export_onnx_tool_bad_input_is_one_error_line(tmp_path):
    proc = run_tool(
        'tools/deployment/export_onnx.py',
        'config',
        str(tmp_path / 'nope.py'),
        '--out',
        str(tmp_path / 'x.onnx'),
        check=False,
        timeout=120)
    assert proc.returncode == 2 and 'ERROR: config file not found' in proc.stderr, proc.stderr


# ---------------------------------------------------------------- torch.compile
def _compile_unavailable(backend: str) -> str:
    if not hasattr(torch, 'compile'):
        return 'torch.compile is not available in this torch'
    if backend == 'inductor' and shutil.which('c++') is None and shutil.which('g++') is None:
        return 'inductor on CPU needs a C++ compiler, none found'
    return ''


def _check_compiled_matches_eager(backend: str, train: bool) -> None:
    reason = _compile_unavailable(backend)
    if reason:
        pytest.skip(reason)
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = randomize_bn(EfficientNet('b0', out_indices=(3, 4, 5), drop_path_rate=0.)).train(train)
    ref = copy.deepcopy(model)
    compiled = torch.compile(model, backend=backend, fullgraph=True)  # fullgraph: no graph breaks
    x = torch.randn(2, 3, 64, 64)
    with torch.set_grad_enabled(train):
        outs, outs_ref = compiled(x), ref(x)
    for o, r in zip(outs, outs_ref):  # eager runs channels_last on CPU, the graph NCHW: rounding differs
        torch.testing.assert_close(o, r, rtol=1e-4, atol=1e-4)
    if train:
        sum(o.square().mean() for o in outs).backward()
        sum(o.square().mean() for o in outs_ref).backward()
        assert_close_grads(model, ref)
        for (name, b), (_, b_ref) in zip(model.named_buffers(), ref.named_buffers()):
            # running statistics updated once, as in eager
            torch.testing.assert_close(b, b_ref, rtol=1e-4, atol=1e-6, msg=lambda m: f'{name}: {m}')


def test_torch_compile_graph_matches_eager_eval():
    """Dynamo captures the whole backbone (SAME padding, channels_last logic) in one graph; the
    aot_eager backend checks the captured graph without the minutes of C++ code generation."""
    _check_compiled_matches_eager('aot_eager', train=False)


def test_torch_compile_graph_matches_eager_training():
    _check_compiled_matches_eager('aot_eager', train=True)


@pytest.mark.slow
def test_torch_compile_inductor_matches_eager():
    """The real thing (inductor codegen): about 3-4 minutes on a 2-core CPU."""
    _check_compiled_matches_eager('inductor', train=False)


def test_torch_export_dynamic_sizes_match_eager():
    """torch.export (the deployment graph of ExecuTorch/AOTInductor) captures the backbone once
    for any batch and any size from 33 px (below that the stride-32 map is 1x1, and torch.export
    specialises size-1 dimensions); SAME padding stays exact at odd sizes."""
    from torch.export import Dim, export
    model = randomize_bn(EfficientNet('b0', out_indices=(3, 4, 5))).eval()
    size = dict(min=33, max=1024)
    program = export(
        model, (torch.randn(2, 3, 64, 96), ),
        dynamic_shapes={'x': {
            0: Dim('n', min=1, max=64),
            2: Dim('h', **size),
            3: Dim('w', **size)
        }})
    for shape in [(1, 3, 65, 97), (3, 3, 128, 40)]:
        x = torch.randn(shape)
        with torch.no_grad():
            expected, got = model(x), program.module()(x)
        assert [o.shape for o in got] == [o.shape for o in expected]
        for o, e in zip(got, expected):
            torch.testing.assert_close(o, e, rtol=1e-4, atol=1e-5)
