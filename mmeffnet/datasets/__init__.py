"""Dataset-side components for the OpenMMLab toolboxes, one module per toolbox area.

Nothing is imported here on purpose: ``seg_*`` modules need mmseg and ``det_*`` modules need
mmdet, and a config imports only the module it uses (``custom_imports``), so a segmentation run
never pays for importing mmdet and vice versa.
"""
