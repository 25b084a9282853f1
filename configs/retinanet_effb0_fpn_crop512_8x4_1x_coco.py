# The RetinaNet-EfficientNet recipe (configs/retinanet_effb3_fpn_crop896_8x4_1x_coco.py) with B0, for
# quick experiments: about a third of B3-896's compute per image. Everything but the backbone size
# and the input size is inherited unchanged (neck, head, assigner, optimizer, 1x schedule, 8 x 4).
# Why 512: the recipe's 896 is EfficientDet-D3's input, the detector built on B3; EfficientDet
# pairs B0 with 512 (D0), i.e. each backbone at its own compound-scaled resolution.
_base_ = ['./retinanet_effb3_fpn_crop896_8x4_1x_coco.py']
from mmeffnet.arch import build_network_spec  # noqa: E402
from mmeffnet.config.fragments.detection import retinanet_pipelines  # noqa: E402

backbone_arch = 'b0'
backbone_out_indices = (3, 4, 5)
backbone_channels = [build_network_spec(backbone_arch).level_channels[i] for i in backbone_out_indices]
# mmpretrain's ImageNet B0, trained as the B3 the recipe uses (TF-ported, AutoAugment)
backbone_checkpoint = ('https://download.openmmlab.com/mmclassification/v0/efficientnet/'
                       'efficientnet-b0_3rdparty_8xb32-aa_in1k_20220119-8d939117.pth')

image_size = (512, 512)
model = dict(
    data_preprocessor=dict(batch_augments=[dict(type='BatchFixedSizePad', size=image_size)]),
    backbone=dict(
        arch=backbone_arch, init_cfg=dict(type='Pretrained', prefix='backbone', checkpoint=backbone_checkpoint)),
    neck=dict(in_channels=backbone_channels))

train_pipeline, test_pipeline = retinanet_pipelines(image_size, {{_base_.backend_args}})
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
