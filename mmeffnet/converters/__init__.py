"""Per-source weight renames: each ``from_<source>.py`` turns one implementation's key names into
the canonical form of ``canonical.py`` (timm, torchvision, lukemelas ``efficientnet_pytorch``,
mmpretrain/mmdet, official TF checkpoints; ``from_effdet.py``: effdet's EfficientDet detectors).

Which source a state dict comes from and the way from there to mmeffnet's layout (the dispatch)
is ``mmeffnet/checkpoint/conversion.py``; this package only knows names and shapes (and the
network plan of ``mmeffnet/arch``).
"""
