"""The offline-GPU kit (tools/analysis/offline_gpu/): its mmcv._ext stand-in and publishing the
CUDA rows measured elsewhere into docs/."""
import importlib.util
import json
import os.path as osp

import pytest
import torch
import torch.nn.functional as F

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _load(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, osp.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def standin():
    return _load('mmcv_ext_standin', 'tools/analysis/offline_gpu/mmcv_ext_standin.py')


def test_standin_focal_loss_through_mmcv_equals_mmdet_python_focal_loss(standin, monkeypatch):
    """mmcv's own autograd Function, its ext calls answered by the stand-in, gives mmdet's
    pure-PyTorch focal loss and its autograd gradient (float64; labels include background)."""
    from mmcv.ops import focal_loss as mmcv_focal_loss
    from mmdet.models.losses.focal_loss import py_sigmoid_focal_loss
    monkeypatch.setattr(mmcv_focal_loss, 'ext_module', standin)
    torch.manual_seed(0)
    num_classes = 80
    logits = (torch.randn(400, num_classes, dtype=torch.float64) * 4).requires_grad_()
    labels = torch.randint(0, num_classes + 1, (400, ))  # num_classes = background
    assert (labels == num_classes).any()
    ours = mmcv_focal_loss.sigmoid_focal_loss(logits, labels, 2.0, 0.25, None, 'none')
    ref = py_sigmoid_focal_loss(
        logits,
        F.one_hot(labels, num_classes + 1)[:, :num_classes].double(),
        None,
        gamma=2.0,
        alpha=0.25,
        reduction='none')
    assert (ours - ref).abs().max() < 1e-7  # 1 - sigmoid(x) in the kernel formula: ~1e-9 at |x| ~ 16
    grad_ours, = torch.autograd.grad(ours.sum() * 0.5, logits)
    grad_ref, = torch.autograd.grad(ref.sum() * 0.5, logits)
    assert (grad_ours - grad_ref).abs().max() < 1e-9
    assert grad_ref.abs().max() > 0.1  # not a vacuous comparison


def test_standin_answers_every_other_op_name_with_a_clear_error(standin):
    assert hasattr(standin, 'nms') and hasattr(standin, 'roi_align_forward')  # mmcv.ops imports
    with pytest.raises(NotImplementedError, match="mmcv op 'nms'.*without compiled ops"):
        standin.nms(torch.zeros(1, 4), torch.zeros(1), 0.5, 0)


@pytest.fixture
def tool(tmp_path, monkeypatch):
    """tools/analysis/benchmark.py with its docs page and charts redirected to tmp_path."""
    bench = _load('benchmark_tool', 'tools/analysis/benchmark.py')
    doc = tmp_path / 'benchmarks.md'
    doc.write_text(open(osp.join(ROOT, 'docs', 'benchmarks.md')).read())
    monkeypatch.setattr(bench, 'DOC', str(doc))
    monkeypatch.setattr(bench, 'BLOCKS', {
        key: (start, end, str(tmp_path / osp.basename(chart)))
        for key, (start, end, chart) in bench.BLOCKS.items()
    })
    return bench


def _run_dir(path, kinds, text):
    path.mkdir()
    (path / 'results.md').write_text(text + '\n')
    (path / 'results.json').write_text(json.dumps({'machine': {}, 'rows': [{'kind': k} for k in kinds]}))
    (path / 'chart.png').write_bytes(b'png:' + text.encode())
    return str(path)


def test_publish_puts_cuda_rows_in_their_own_block_and_cpu_rows_in_theirs(tool, tmp_path):
    doc = tmp_path / 'benchmarks.md'
    before = doc.read_text()
    cpu_start, cpu_end, _ = tool.BLOCKS['cpu']
    cuda_start, cuda_end, cuda_chart = tool.BLOCKS['cuda']
    cpu_block = before.split(cpu_start)[1].split(cpu_end)[0]

    assert tool.publish(_run_dir(tmp_path / 'gpu', ['cuda', 'cuda'], 'H200 TABLE')) == 'cuda'
    after = doc.read_text()
    assert after.split(cuda_start)[1].split(cuda_end)[0] == \
        '\nH200 TABLE\n\n![benchmark chart](benchmarks_cuda.png)\n'
    assert after.split(cpu_start)[1].split(cpu_end)[0] == cpu_block  # CPU results untouched
    assert after.split(cpu_start)[0] == before.split(cpu_start)[0]  # prose untouched
    assert open(cuda_chart, 'rb').read() == b'png:H200 TABLE'

    assert tool.publish(_run_dir(tmp_path / 'cpu', ['train', 'infer', 'cuda'], 'CPU TABLE')) == 'cpu'
    again = doc.read_text()
    assert 'CPU TABLE' in again.split(cpu_start)[1].split(cpu_end)[0]
    assert 'H200 TABLE' in again.split(cuda_start)[1].split(cuda_end)[0]


def test_publish_names_what_is_missing(tool, tmp_path):
    (tmp_path / 'half').mkdir()
    (tmp_path / 'half' / 'results.md').write_text('x')
    with pytest.raises(FileNotFoundError, match=r'missing .*results\.json.*chart\.png'):
        tool.publish(str(tmp_path / 'half'))


@pytest.mark.parametrize('content', ['{not json', '{"rows": [{"key": "train"}]}', '[1, 2]'])
def test_publish_names_a_results_json_that_is_not_one(tool, tmp_path, content):
    run_dir = _run_dir(tmp_path / 'bad', ['cuda'], 'TABLE')
    (tmp_path / 'bad' / 'results.json').write_text(content)
    before = (tmp_path / 'benchmarks.md').read_text()
    with pytest.raises(ValueError, match=r'bad/results\.json is not the results\.json of a benchmark run'):
        tool.publish(run_dir)
    assert (tmp_path / 'benchmarks.md').read_text() == before  # nothing written


def test_publish_cli_bad_dir_is_one_error_line_and_exit_2(tmp_path):
    from conftest import run_tool
    proc = run_tool('tools/analysis/benchmark.py', '--publish', str(tmp_path / 'nowhere'), check=False, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().startswith('error: --publish') and 'results.json' in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_standin_focal_loss_takes_half_inputs_as_amp_gives_them(standin):
    """Under fp16 autocast the head's logits are half: computed in float32, written in half."""
    torch.manual_seed(0)
    logits = (torch.randn(64, 80) * 6).half().float()  # values a half tensor holds
    labels = torch.randint(0, 81, (64, ))
    full = torch.zeros(64, 80)
    half = torch.zeros(64, 80, dtype=torch.half)
    standin.sigmoid_focal_loss_forward(logits, labels, logits.new_empty(0), full)
    standin.sigmoid_focal_loss_forward(logits.half(), labels, logits.new_empty(0), half)
    assert half.dtype == torch.half and torch.isfinite(half).all()
    assert torch.allclose(half.float(), full, rtol=1e-3, atol=1e-7)  # half's own output rounding
