# DeepLabV3+ with EfficientNet-B3 at output stride 8 on ADE20K: mmseg's deeplabv3plus ADE20K recipe
# (4 GPUs x 4 images, 512x512 crops, SGD lr 0.01, poly LR, 80k iterations) with the ResNet swapped.
# The two last stride-2 stages of the backbone run at stride 1 with dilated depthwise convs
# (output_stride=8, the "-d8" in the name); the parameters, and so the ImageNet weights, are unchanged.
_base_ = [
    'mmseg::_base_/models/deeplabv3plus_r50-d8.py', './_base_/_ade20k.py', 'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_80k.py'
]
from mmeffnet.arch import build_network_spec  # noqa: E402

custom_imports = dict(imports=['mmeffnet', 'mmeffnet.datasets.seg_checks'], allow_failed_imports=False)

backbone_arch = 'b3'
# strides 4, 8, 8, 8 at output stride 8 (4, 8, 16, 32 undilated). As with mmseg's ResNet:
# level 2 (stride 4) is the decoder's low-level feature (the head takes inputs[0]),
# level 4 feeds the auxiliary FCN head and level 5 the ASPP.
backbone_out_indices = (2, 3, 4, 5)
backbone_channels = [build_network_spec(backbone_arch).level_channels[i] for i in backbone_out_indices]
backbone_checkpoint = ('https://download.openmmlab.com/mmclassification/v0/efficientnet/'
                       'efficientnet-b3_3rdparty_8xb32-aa_in1k_20220119-5b4887a0.pth')

crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmeffnet.EfficientNet',
        arch=backbone_arch,
        out_indices=backbone_out_indices,
        output_stride=8,
        drop_path_rate=0.2,
        drop_path_schedule='tf',  # the TF reference's per-block rule (rate * i / N)
        padding='same',
        norm_cfg=dict(type='SyncBN', eps=1e-3, momentum=0.01, requires_grad=True),
        init_cfg=dict(type='Pretrained', prefix='backbone', checkpoint=backbone_checkpoint)),
    decode_head=dict(
        in_channels=backbone_channels[3], in_index=3, c1_in_channels=backbone_channels[0], num_classes=150),
    auxiliary_head=dict(in_channels=backbone_channels[2], in_index=2, num_classes=150))

auto_scale_lr = dict(enable=False, base_batch_size=16)
