"""The EfficientNet backbone: interface, shapes, training state, fidelity to Table 2, bad input."""
import pytest
import torch
import torch.nn as nn

from mmeffnet import EfficientNet
from mmeffnet.analysis.table2 import measure_against_table2
from mmeffnet.models.layers import MBConv, same_padding

ALL_ARCHS = ['b0', 'b1', 'b2', 'b3', 'b4', 'b5', 'b6', 'b7', 'b8', 'l2', 'lite0', 'lite1', 'lite2', 'lite3', 'lite4']


def test_params_and_flops_match_table2():
    rows = measure_against_table2()
    report = {r.arch: (round(r.params_error, 4), round(r.macs_error, 4)) for r in rows}
    assert all(r.within_bounds for r in rows), report
    b0 = rows[0]
    assert 5.25 < b0.params_m < 5.35 and 0.38 < b0.macs_b < 0.40


@pytest.mark.parametrize('arch', ALL_ARCHS)
def test_every_arch_builds_with_documented_strides(arch):
    model = EfficientNet(arch, out_indices=tuple(range(7)), drop_path_rate=0.).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == list(model.level_channels)
    assert [64 // o.shape[-1] for o in outs] == [2, 2, 4, 8, 16, 32, 32]
    assert model.level_strides == (2, 2, 4, 8, 16, 32, 32)


def test_b3_recipe_levels_and_unbuilt_head():
    model = EfficientNet('b3', out_indices=(3, 4, 5))
    assert model.out_channels == [48, 136, 384] and model.out_strides == [8, 16, 32]
    assert len(model.layers) == 6  # the 1x1 head (level 6) is not built
    full = EfficientNet('b3', out_indices=(6, ))
    assert sum(p.numel() for p in full.parameters()) > sum(p.numel() for p in model.parameters())


def test_negative_out_indices_and_order():
    model = EfficientNet('b0', out_indices=(-1, 3, -3))
    assert model.out_indices == (3, 4, 6)
    assert [f['num_chs'] for f in model.feature_info] == [32, 16, 24, 40, 112, 320, 1280]


@pytest.mark.parametrize('size', [(32, 32), (33, 47), (97, 61)])
def test_small_and_odd_inputs(size):
    h, w = size
    model = EfficientNet('b0', out_indices=(0, 1, 2, 3, 4, 5, 6)).eval()
    with torch.no_grad():
        outs = model(torch.randn(2, 3, h, w))
    expected = []
    for s in model.level_strides:  # TF SAME: ceil(size / stride) at every level
        expected.append((-(-h // s), -(-w // s)))
    assert [tuple(o.shape[-2:]) for o in outs] == expected


def test_same_padding_matches_tf_formula():
    assert same_padding(224, 3, 2, 1) == (0, 1)
    assert same_padding(224, 5, 2, 1) == (1, 2)
    assert same_padding(225, 3, 2, 1) == (1, 1)
    assert same_padding(14, 5, 1, 1) == (2, 2)


def test_symmetric_and_same_padding_share_weights_but_differ_on_even_inputs():
    same = EfficientNet('b0', padding='same').eval()
    same.init_weights()  # the TF init: PyTorch's default one makes the deep features vanish
    sym = EfficientNet('b0', padding='symmetric').eval()
    sym.load_state_dict(same.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(same(x)[0], sym(x)[0])
        # odd sizes: SAME padding is symmetric everywhere, so the two coincide
        x = torch.randn(1, 3, 65, 65)
        y_same, y_sym = same(x)[0], sym(x)[0]
    # at 65 px the stride-2 layers see 65, 33, 17, 9, 5: all odd, all symmetric
    torch.testing.assert_close(y_same, y_sym)


def test_frozen_stages_freeze_params_and_norm_stats():
    model = EfficientNet('b0', out_indices=(6, ), frozen_stages=2).train()  # mmdet's: layers 0 and 1
    for i, layer in enumerate(model.layers):
        frozen = i < 2
        assert all(p.requires_grad != frozen for p in layer.parameters()), i
        bns = [m for m in layer.modules() if isinstance(m, nn.BatchNorm2d)]
        assert all(bn.training != frozen for bn in bns), i
    before = model.layers[1][0].depthwise_conv.bn.running_mean.clone()
    model(torch.randn(2, 3, 64, 64))
    torch.testing.assert_close(model.layers[1][0].depthwise_conv.bn.running_mean, before)


def test_norm_eval_covers_syncbn_and_train_returns_self():
    model = EfficientNet('b0', norm_cfg=dict(type='SyncBN', eps=1e-3, momentum=0.01), norm_eval=True)
    assert model.train() is model and model.eval() is model
    model.train()
    syncbns = [m for m in model.modules() if isinstance(m, nn.SyncBatchNorm)]
    assert syncbns and not any(m.training for m in syncbns)
    assert model.layers[1][0].training  # only norm layers are switched


def test_bn_defaults_are_tf():
    bn = EfficientNet('b0').layers[0].bn
    assert bn.eps == 1e-3 and bn.momentum == 0.01


def test_se_squeeze_is_quarter_of_block_input_channels():
    model = EfficientNet('b0')
    for block in (m for m in model.modules() if isinstance(m, MBConv)):
        in_ch = block.expand_conv.conv.in_channels if block.expand_conv else block.depthwise_conv.conv.in_channels
        assert block.se.conv1.conv.out_channels == max(1, int(in_ch * 0.25))


@pytest.mark.parametrize('frozen', [-1, 0])
def test_frozen_stages_minus_one_and_zero_freeze_nothing(frozen):
    model = EfficientNet('b0', out_indices=(6, ), frozen_stages=frozen).train()
    assert all(p.requires_grad for p in model.parameters())
    assert all(m.training for m in model.modules())


def test_frozen_stages_means_what_it_means_in_mmdet_and_mmpretrain():
    """Same k, same frozen parameters and eval-mode modules as mmdet's and mmpretrain's own backbone."""
    from mmdet.models.backbones import EfficientNet as MMDetEfficientNet
    from mmpretrain.models.backbones import EfficientNet as MMPretrainEfficientNet

    def frozen_state(model):
        model.train()
        return ([name for name, p in model.named_parameters()
                 if not p.requires_grad], [name for name, m in model.named_modules() if not m.training])

    for k in range(8):
        ours = frozen_state(EfficientNet('b0', out_indices=(6, ), frozen_stages=k))
        for theirs_type in (MMDetEfficientNet, MMPretrainEfficientNet):
            theirs = frozen_state(theirs_type(arch='b0', out_indices=(6, ), frozen_stages=k))
            assert len(ours[0]) == len(theirs[0]), (k, theirs_type)
            assert [n.split('.')[:2] for n in ours[0]] == [n.split('.')[:2] for n in theirs[0]], k
            assert {n.split('.')[1] for n in ours[1] if n.count('.') == 1} == \
                {n.split('.')[1] for n in theirs[1] if n.count('.') == 1}, k


def test_drop_path_schedule_linspace_is_mmdets_and_tf_is_tfs():
    from mmdet.models.backbones import EfficientNet as MMDetEfficientNet
    mmdet_rates = [
        m.drop_path.drop_prob if hasattr(m.drop_path, 'drop_prob') else 0.
        for m in MMDetEfficientNet(arch='b3', drop_path_rate=0.2, out_indices=(6, )).modules()
        if hasattr(m, 'drop_path')
    ]
    ours = [m.drop_path_rate for m in EfficientNet('b3', drop_path_rate=0.2).modules() if isinstance(m, MBConv)]
    assert len(ours) == len(mmdet_rates) == 26 and ours == mmdet_rates  # bitwise: the same float32 values
    assert EfficientNet('b3', drop_path_rate=0.2).drop_path_schedule == 'linspace'  # the default
    tf = EfficientNet('b0', drop_path_rate=0.2, drop_path_schedule='tf')
    rates = [m.drop_path_rate for m in tf.modules() if isinstance(m, MBConv)]
    assert rates == pytest.approx([0.2 * i / 16 for i in range(16)])


def test_stochastic_depth_only_in_training():
    model = EfficientNet('b0', drop_path_rate=0.5, out_indices=(2, ))
    x = torch.randn(8, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        a, b = model(x)[0], model(x)[0]
    torch.testing.assert_close(a, b)


def test_lite_has_no_se_and_relu6():
    model = EfficientNet('lite0')
    assert not any(m.se is not None for m in model.modules() if isinstance(m, MBConv))
    assert isinstance(model.layers[0].act, nn.ReLU6)
    assert isinstance(EfficientNet('b0').layers[0].act, nn.SiLU)


def test_with_cp_gives_same_gradients():
    torch.manual_seed(0)
    ref = EfficientNet('b0', out_indices=(5, ), drop_path_rate=0.)
    cp = EfficientNet('b0', out_indices=(5, ), drop_path_rate=0., with_cp=True)
    cp.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 64, 64)
    ref(x)[0].sum().backward()
    cp(x)[0].sum().backward()
    for (name, p), q in zip(ref.named_parameters(), cp.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('output_stride', [8, 16])
def test_dilated_output_stride(output_stride):
    ref = EfficientNet('b3', out_indices=(1, 2, 3, 4, 5))
    model = EfficientNet('b3', out_indices=(1, 2, 3, 4, 5), output_stride=output_stride).eval()
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in ref.parameters())
    model.load_state_dict(ref.state_dict())
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 128, 128))
    expected = [min(s, output_stride) for s in (2, 4, 8, 16, 32)]
    assert model.out_strides == expected
    assert [128 // o.shape[-1] for o in outs] == expected


def test_in_channels():
    model = EfficientNet('b0', in_channels=4, out_indices=(1, ))
    assert model(torch.randn(1, 4, 32, 32))[0].shape[1] == 16
    with pytest.raises(ValueError, match=r'in_channels=4.*\(1, 3, 32, 32\)'):
        model(torch.randn(1, 3, 32, 32))


@pytest.mark.parametrize('kwargs, pattern', [
    (dict(arch='b9'), 'b0, b1, b2'),
    (dict(out_indices=(7, )), 'out_indices contains 7.*-7..6'),
    (dict(out_indices=(-8, )), 'out_indices contains -8'),
    (dict(out_indices=()), 'out_indices is empty'),
    (dict(frozen_stages=8), r'frozen_stages=8 is out of range: use -1\.\.7'),
    (dict(frozen_stages=-2), r'frozen_stages=-2 is out of range: use -1\.\.7'),
    (dict(drop_path_schedule='cosine'), r"drop_path_schedule='cosine'.*\('linspace', 'tf'\)"),
    (dict(output_stride=4), r'output_stride=4.*\(8, 16, 32\)'),
    (dict(padding='valid'), "padding='valid'.*same"),
    (dict(drop_path_rate=1.0), 'drop_path_rate=1.0'),
])
def test_bad_arguments_name_value_and_choices(kwargs, pattern):
    with pytest.raises((ValueError, KeyError), match=pattern):
        EfficientNet(**kwargs)


def test_compound_arch_dict_builds():
    model = EfficientNet(dict(phi=1, alpha=1.2, beta=1.1, gamma=1.15))
    assert model.spec.params.resolution == 258
    assert model.level_channels[-1] == 1408  # 1280 * 1.1


@pytest.mark.parametrize('arch,output_stride', [('b3', 32), ('b3', 8), ('lite1', 16)])
def test_backbone_is_built_from_the_network_plan(arch, output_stride):
    """Every MBConv module is its plan entry (channels, kernel, stride, dilation, SE, drop path,
    place), and the levels' strides are the plan's, measured on an input."""
    model = EfficientNet(arch, out_indices=tuple(range(7)), output_stride=output_stride, drop_path_rate=0.3)
    plan = model.spec.blocks(output_stride, 0.3)
    assert [len(model.layers[level]) for level in range(1, 6)] == \
        [sum(b.level == level for b in plan) for level in range(1, 6)]
    for block in plan:
        module = model.layers[block.level][block.position]
        dw = module.depthwise_conv.conv
        assert (dw.in_channels, dw.kernel_size[0], dw.stride[0], dw.dilation[0]) == \
            (block.mid_channels, block.kernel_size, block.stride, block.dilation), block
        assert module.linear_conv.conv.out_channels == block.out_channels
        assert (module.expand_conv is None) == (block.expand_ratio == 1)
        assert (module.se.conv1.conv.out_channels if module.se else 0) == block.se_channels
        assert (module.drop_path_rate, module.has_shortcut) == (block.drop_path_rate, block.has_shortcut)
    with torch.no_grad():
        outs = model.eval()(torch.randn(1, 3, 64, 64))
    assert tuple(64 // o.shape[-1] for o in outs) == model.level_strides == model.spec.level_strides(output_stride)


def test_tf_initialisation_conv_std_is_sqrt_2_over_fan_out():
    """init_cfg=None: init_weights() applies the TF reference init, conv weights ~ N(0, 2 / fan_out),
    zero conv biases, unit BN weights; before it (as in every OpenMMLab module) the weights are
    PyTorch's defaults, about 0.4 of that std on the depthwise convs."""

    def depthwise_std_ratio(model: nn.Module) -> float:
        return torch.tensor([
            m.weight.std().item() / (2. / (m.kernel_size[0]**2))**.5 for m in model.modules()
            if isinstance(m, nn.Conv2d) and m.groups > 1
        ]).median().item()

    torch.manual_seed(0)
    model = EfficientNet('b0', out_indices=(3, ))
    assert depthwise_std_ratio(model) < 0.6  # construction draws PyTorch's init, not the TF one
    model.init_weights()
    assert 0.9 < depthwise_std_ratio(model) < 1.1
    assert all(m.bias is None or not m.bias.any() for m in model.modules() if isinstance(m, nn.Conv2d))
    assert all(
        bool((m.weight == 1).all() and (m.bias == 0).all()) for m in model.modules() if isinstance(m, nn.BatchNorm2d))
