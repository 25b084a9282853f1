"""Config fragments of the classification configs: the per-variant ImageNet settings, in one place.

Every ``configs/classification/efficientnet-*_in1k.py`` (training) and ``eval/*.py`` differs from
its base only in these: the arch, its input size, classifier width and dropout
(``mmeffnet.arch.ARCHS``), the TF reference's resize interpolation (bicubic for B*,
bilinear for Lite), and the batch size. The configs call these functions instead of repeating
the pipelines.
"""
from typing import List, Optional, Tuple

from ...arch import build_network_spec, resolve_arch


def _interpolation(arch: str) -> str:
    return 'bilinear' if resolve_arch(arch).lite else 'bicubic'


def variant_model(arch: str) -> dict:
    """The model overrides of ``arch``: backbone arch, classifier width and dropout."""
    return dict(
        backbone=dict(arch=arch),
        head=dict(in_channels=build_network_spec(arch).head_channels, dropout_rate=resolve_arch(arch).dropout))


def tf_test_pipeline(arch: str, img_size: Optional[int] = None) -> List[dict]:
    """TF evaluation preprocessing: centre crop of (size / (size + 32)) of the image, resized to
    ``img_size`` (default: the arch's resolution)."""
    return [
        dict(type='mmeffnet.LoadImageWithFallback'),
        # [TF] centre square of img_size / (img_size + 32) of the short side, resized to img_size
        dict(
            type='EfficientNetCenterCrop',
            crop_size=img_size or resolve_arch(arch).resolution,
            crop_padding=32,
            interpolation=_interpolation(arch)),
        dict(type='PackInputs'),
    ]


def tf_train_pipeline(arch: str, img_size: Optional[int] = None, auto_augment: bool = True) -> List[dict]:
    """TF training preprocessing: Inception-style random crop to ``img_size`` (default: the arch's
    resolution), flip, and AutoAugment unless ``auto_augment=False`` (fine-tuning)."""
    pipeline = [
        dict(type='mmeffnet.LoadImageWithFallback'),
        # [TF] distorted_bounding_box_crop (area 0.08-1, aspect 3/4-4/3, 10 attempts, else centre crop)
        dict(
            type='EfficientNetRandomCrop',
            scale=img_size or resolve_arch(arch).resolution,
            crop_padding=32,
            interpolation=_interpolation(arch)),
        dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    ]
    if auto_augment:
        # [paper] AutoAugment; mmpretrain's ImageNet policy. [TF] fills with grey 128, nearest sampling.
        pipeline.append(
            dict(type='AutoAugment', policies='imagenet', hparams=dict(pad_val=128, interpolation='nearest')))
    return pipeline + [dict(type='PackInputs')]


def train_variant(arch: str, batch_size: int) -> Tuple[int, dict, list, list, dict, dict, dict]:
    """``img_size, model, train_pipeline, test_pipeline, train_dataloader, val_dataloader,
    test_dataloader`` of a training config for ``arch`` with ``batch_size`` images per GPU."""
    train, test = tf_train_pipeline(arch), tf_test_pipeline(arch)
    val_loader = dict(batch_size=batch_size, dataset=dict(pipeline=test))
    return (resolve_arch(arch).resolution, variant_model(arch), train, test,
            dict(batch_size=batch_size, dataset=dict(pipeline=train)), val_loader, val_loader)


def eval_variant(arch: str, batch_size: int = 64, img_size: Optional[int] = None) -> Tuple[int, dict, list, dict, dict]:
    """``img_size, model, test_pipeline, val_dataloader, test_dataloader`` of an evaluation config
    for ``arch`` (``img_size`` default: the arch's resolution)."""
    img_size = img_size or resolve_arch(arch).resolution
    test = tf_test_pipeline(arch, img_size)
    loader = dict(batch_size=batch_size, dataset=dict(pipeline=test))
    return img_size, variant_model(arch), test, loader, loader
