"""The installed stack: imports, compiled mmcv ops, and the version report."""
import subprocess
import sys

import torch


def test_stack_imports_and_mmcv_ops_run():
    import mmcv.ops  # noqa: F401
    import mmdet.models  # noqa: F401
    import mmpretrain.models  # noqa: F401
    import mmseg.models  # noqa: F401
    from mmcv.ops import batched_nms
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [0., 0., 10., 10.]])
    _, keep = batched_nms(boxes, torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0, 0, 1]), dict(iou_threshold=0.5))
    assert sorted(keep.tolist()) == [0, 2]  # box 1 suppressed in class 0; box 2 survives in class 1


def test_env_report_names_every_component():
    out = subprocess.run([sys.executable, '-m', 'mmeffnet.env'], capture_output=True, text=True, check=True).stdout
    for name in ('torch', 'mmcv ops', 'mmengine', 'mmdet', 'mmseg', 'mmpretrain', 'cuda available'):
        assert name in out, out
    assert 'compiled (nms runs)' in out
    assert f'{torch.__version__}' in out


def test_runtime_pins():
    import setuptools

    import numpy
    assert int(numpy.__version__.split('.')[0]) < 2
    assert int(setuptools.__version__.split('.')[0]) < 81
    import pkg_resources  # noqa: F401  (mmengine's Config needs it for `mmdet::` bases)
