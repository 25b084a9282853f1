"""Config preparation shared by tools/train.py and tools/test.py: SyncBN adaptation, dataset checks,
and the one-line errors of the CLI."""
import pytest
from mmengine.config import Config

from conftest import run_tool
from mmeffnet.runtime.setup import adapt_sync_bn, check_datasets


def _cfg(**kw):
    return Config(dict(model=dict(type='RetinaNet', backbone=dict(type='mmeffnet.EfficientNet',
                                                                 norm_cfg=dict(type='SyncBN', eps=1e-3, momentum=0.01)),
                                  neck=dict(type='FPN', norm_cfg=dict(type='SyncBN')),
                                  bbox_head=dict(norm_cfg=dict(type='BN'))), **kw))


def test_syncbn_becomes_bn_in_one_process_and_keeps_its_arguments():
    cfg = _cfg()
    assert adapt_sync_bn(cfg, distributed=False) == 2  # (distributed CPU runs: tests/test_distributed.py)
    assert cfg.model.backbone.norm_cfg == dict(type='BN', eps=1e-3, momentum=0.01)
    assert cfg.model.neck.norm_cfg.type == 'BN' and cfg.model.bbox_head.norm_cfg.type == 'BN'


def test_missing_dataset_names_path_and_override(tmp_path):
    cfg = Config(dict(train_dataloader=dict(dataset=dict(
        type='RepeatDataset', times=2, dataset=dict(type='CocoDataset', data_root=str(tmp_path) + '/',
                                                    ann_file='annotations/instances_train2017.json',
                                                    data_prefix=dict(img='train2017/'))))))
    with pytest.raises(FileNotFoundError) as err:
        check_datasets(cfg, ('train', ))
    msg = str(err.value)
    assert 'annotations/instances_train2017.json' in msg and 'train_dataloader.dataset.data_root' in msg
    (tmp_path / 'annotations').mkdir()
    (tmp_path / 'annotations' / 'instances_train2017.json').write_text('{}')
    with pytest.raises(FileNotFoundError, match='data_prefix.img .*train2017'):
        check_datasets(cfg, ('train', ))
    (tmp_path / 'train2017').mkdir()
    check_datasets(cfg, ('train', ))


@pytest.mark.parametrize('tool', ['tools/train.py', 'tools/test.py'])
def test_missing_config_is_one_clear_line(tool, tmp_path):
    args = [tool, str(tmp_path / 'nope.py')] + (['ckpt.pth'] if tool.endswith('test.py') else [])
    proc = run_tool(*args, check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f'ERROR: config file not found: {tmp_path / "nope.py"}')
    assert 'Traceback' not in proc.stderr
