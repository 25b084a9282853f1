# Semantic FPN (FPN neck + FPNHead) with EfficientNet-B3 on ADE20K: mmseg's sem_fpn ADE20K recipe
# (4 GPUs x 4 images, 512x512 crops, SGD lr 0.01, poly LR, 160k iterations) with the ResNet swapped.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py', './_base_/_ade20k.py', 'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py'
]
# The neck's input channels are read from the scaled network, not typed in by hand.
from mmeffnet.arch import build_network_spec  # noqa: E402

custom_imports = dict(imports=['mmeffnet', 'mmeffnet.datasets.seg_checks'], allow_failed_imports=False)

backbone_arch = 'b3'
backbone_out_indices = (2, 3, 4, 5)  # the stages ending at strides 4, 8, 16, 32
backbone_channels = [build_network_spec(backbone_arch).level_channels[i] for i in backbone_out_indices]
# ImageNet weights from mmpretrain (TF-ported, so TF 'same' padding; same layout as our backbone).
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
        drop_path_rate=0.2,
        drop_path_schedule='tf',  # the TF reference's per-block rule (rate * i / N)
        padding='same',
        norm_cfg=dict(type='SyncBN', eps=1e-3, momentum=0.01, requires_grad=True),
        init_cfg=dict(type='Pretrained', prefix='backbone', checkpoint=backbone_checkpoint)),
    neck=dict(in_channels=backbone_channels),
    decode_head=dict(num_classes=150))

auto_scale_lr = dict(enable=False, base_batch_size=16)
