"""Dataset-side components for the OpenMMLab toolboxes, one module per toolbox area, registered in
the ``mmeffnet`` scope (``type='mmeffnet.CheckedCocoDataset'``, ...).

Nothing is imported here on purpose: ``seg_*`` modules need mmseg, ``det_*`` modules mmdet and
``cls_*`` modules mmpretrain, and a config imports only the module it uses (``custom_imports``), so
a segmentation run never pays for importing mmdet and vice versa.
"""
