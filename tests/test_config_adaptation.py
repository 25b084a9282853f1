"""Config adaptation shared by tools/train.py and tools/test.py (``mmeffnet.config``): the SyncBN
swap, dataset path checks, toolbox detection, and the one-line errors of the CLI."""
import pytest
from mmengine.config import Config

from conftest import run_tool
from mmeffnet.config import SYNC_BN_TYPES, check_dataset_paths, swap_sync_bn, toolbox_of


def _cfg(**kw):
    backbone = dict(type='mmeffnet.EfficientNet', norm_cfg=dict(type='SyncBN', eps=1e-3, momentum=0.01))
    neck, head = dict(type='FPN', norm_cfg=dict(type='SyncBN')), dict(norm_cfg=dict(type='BN'))
    return Config(dict(model=dict(type='RetinaNet', backbone=backbone, neck=neck, bbox_head=head), **kw))


def test_syncbn_becomes_bn_in_one_process_and_keeps_its_arguments():
    cfg = _cfg()
    assert swap_sync_bn(cfg, distributed=False) == 2  # (distributed CPU runs: tests/test_distributed.py)
    assert cfg.model.backbone.norm_cfg == dict(type='BN', eps=1e-3, momentum=0.01)
    assert cfg.model.neck.norm_cfg.type == 'BN' and cfg.model.bbox_head.norm_cfg.type == 'BN'


def test_missing_dataset_names_path_and_override(tmp_path):
    cfg = Config(
        dict(
            train_dataloader=dict(
                dataset=dict(
                    type='RepeatDataset',
                    times=2,
                    dataset=dict(
                        type='CocoDataset',
                        data_root=str(tmp_path) + '/',
                        ann_file='annotations/instances_train2017.json',
                        data_prefix=dict(img='train2017/'))))))
    with pytest.raises(FileNotFoundError) as err:
        check_dataset_paths(cfg, ('train', ))
    msg = str(err.value)
    assert 'annotations/instances_train2017.json' in msg and 'train_dataloader.dataset.data_root' in msg
    (tmp_path / 'annotations').mkdir()
    (tmp_path / 'annotations' / 'instances_train2017.json').write_text('{}')
    with pytest.raises(FileNotFoundError, match='data_prefix.img .*train2017'):
        check_dataset_paths(cfg, ('train', ))
    (tmp_path / 'train2017').mkdir()
    check_dataset_paths(cfg, ('train', ))


def test_sync_bn_types_are_the_registered_synchronized_norms():
    """The one SyncBN list names exactly what the OpenMMLab registries build as synchronized BN."""
    import mmcv.cnn  # noqa: F401  (registers SyncBN)
    import mmcv.ops  # noqa: F401  (registers MMSyncBN)
    import torch.nn as nn
    from mmcv.ops import SyncBatchNorm as MMSyncBatchNorm
    from mmengine.registry import MODELS
    built = [MODELS.get(name) for name in SYNC_BN_TYPES]
    assert issubclass(built[0], nn.SyncBatchNorm) and built[1] is MMSyncBatchNorm


def test_toolbox_of_names_the_scope_and_the_choices():
    assert toolbox_of(Config(dict(default_scope='mmseg'))) == 'mmseg'
    with pytest.raises(ValueError, match=r"default_scope='mmfoo' is not one of \('mmdet', 'mmseg', 'mmpretrain'\)"):
        toolbox_of(Config(dict(default_scope='mmfoo')))


@pytest.mark.parametrize('tool', ['tools/train.py', 'tools/test.py'])
def test_missing_config_is_one_clear_line(tool, tmp_path):
    args = [tool, str(tmp_path / 'nope.py')] + (['ckpt.pth'] if tool.endswith('test.py') else [])
    proc = run_tool(*args, check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f'ERROR: config file not found: {tmp_path / "nope.py"}')
    assert 'Traceback' not in proc.stderr
