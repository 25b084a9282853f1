# UPerNet with EfficientNet-B5 on ADE20K: mmseg's upernet ADE20K recipe (4 GPUs x 4 images,
# 512x512 crops, SGD lr 0.01, poly LR, 160k iterations) with the ResNet swapped.
_base_ = [
    'mmseg::_base_/models/upernet_r50.py', './_base_/_ade20k.py', 'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py'
]
from mmeffnet.arch import build_network_spec  # noqa: E402

custom_imports = dict(imports=['mmeffnet', 'mmeffnet.datasets.seg_checks'], allow_failed_imports=False)

backbone_arch = 'b5'
backbone_out_indices = (2, 3, 4, 5)  # strides 4, 8, 16, 32
backbone_channels = [build_network_spec(backbone_arch).level_channels[i] for i in backbone_out_indices]
backbone_checkpoint = ('https://download.openmmlab.com/mmclassification/v0/efficientnet/'
                       'efficientnet-b5_3rdparty_8xb32-aa_in1k_20220119-2cab8b78.pth')

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
        drop_path_rate=0.2,
        drop_path_schedule='tf',  # the TF reference's per-block rule (rate * i / N)
        padding='same',
        norm_cfg=dict(type='SyncBN', eps=1e-3, momentum=0.01, requires_grad=True),
        init_cfg=dict(type='Pretrained', prefix='backbone', checkpoint=backbone_checkpoint)),
    decode_head=dict(in_channels=backbone_channels, num_classes=150),
    auxiliary_head=dict(in_channels=backbone_channels[2], in_index=2, num_classes=150))

auto_scale_lr = dict(enable=False, base_batch_size=16)
