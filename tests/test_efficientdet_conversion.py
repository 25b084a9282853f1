"""tools/model_converters/convert_efficientdet.py: an effdet 0.4.1 EfficientDet-D0 converted by the tool
(run as a real process) loads strictly into the model of configs/efficientdet/efficientdet_d0_*_coco.py,
and that model's predictions on a real COCO image, through mmdet's test path, are effdet's.

The effdet weights are tests/test_efficientdet.py's ``randomized_effdet_state('d0')`` (random weights,
BN statistics measured on a real image; nothing is downloaded), with the two prediction convs scaled
(``detection_state``). Bad input ends in one ``ERROR:`` line and exit code 2.
"""
import os
import os.path as osp
import warnings
from typing import Tuple

import pytest
import torch

from conftest import CONFIGS, SHARED_DATA, run_tool
from mmeffnet.checkpoint import safe_torch_load
from mmeffnet.converters.from_effdet import COCO80_IDS, convert_effdet
from test_efficientdet import randomized_effdet_state

effdet = pytest.importorskip('effdet', reason='effdet==0.4.1 is the reference (requirements/tests.txt)')

CONVERTER = 'tools/model_converters/convert_efficientdet.py'
D0_CONFIG = osp.join(CONFIGS, 'efficientdet', 'efficientdet_d0_8xb16-crop512-300e_coco.py')
# 640 x 480: resized to fit 512, both sides scale by exactly 0.8 (see test_predictions_equal_effdets)
COCO_IMAGE = osp.join(SHARED_DATA, 'coco_mini', 'train2017', '000000054718.jpg')
# effdet's post-processing as mmdet test_cfg values (see test_predictions_equal_effdets)
EFFDET_TEST_CFG = dict(
    score_thr=0.0, nms_pre=5000, min_bbox_size=-1, nms=dict(type='nms', iou_threshold=0.5), max_per_img=100)
TOP_K = 40  # detections compared, in order
MIN_SCORE_GAP = 1e-4  # between consecutive compared effdet scores: 10x the score tolerance
SCORE_TOLERANCE = 1e-5  # measured: 7.2e-7
BOX_TOLERANCE = 1e-2  # pixels of the original image; measured: 2.4e-4
MMDET_MAX_LOG_RATIO = 4.135  # DeltaXYWHBBoxCoder clamps dw, dh at |log(16 / 1000)|; effdet does not


def detection_state() -> dict:
    """``randomized_effdet_state('d0')`` with the box prediction weights x 0.1 and the class
    prediction weights x 2.

    Why: with effdet's random init the box deltas are several units, so exp() makes every box far
    larger than the image; clipping to the image would then hide any decoding difference, and
    mmdet's box coder clamps |dw|, |dh| at 4.135 where effdet does not. At x 0.1 the outputs stay
    below 0.2 (boxes move and stretch by up to ~20 % of their anchor) and some compared boxes lie
    inside the image (7 of 40). The class logits of the random state are close together (the best
    scores 0.07-0.11, some neighbours < 1e-4 apart); x 2 spreads them (0.26-0.59 for the 40 compared,
    neighbours >= 3.9e-4 apart) so that float32 noise cannot swap two of them."""
    state = randomized_effdet_state('d0')
    state['box_net.predict.conv_pw.weight'] = state['box_net.predict.conv_pw.weight'] * 0.1
    state['class_net.predict.conv_pw.weight'] = state['class_net.predict.conv_pw.weight'] * 2.0
    return state


@pytest.fixture(scope='module')
def d0_state() -> dict:
    return detection_state()


@pytest.fixture(scope='module')
def converted_d0(d0_state, tmp_path_factory) -> Tuple[str, str]:
    """(path of the converted checkpoint, the tool's stdout): the tool run once on a D0 state dict."""
    folder = tmp_path_factory.mktemp('effdet_d0')
    src, out = folder / 'tf_efficientdet_d0.pth', folder / 'efficientdet_d0_mmdet.pth'
    torch.save(d0_state, src)
    proc = run_tool(CONVERTER, str(src), str(out), timeout=300)
    return str(out), proc.stdout


def d0_detector(checkpoint: str):
    """(config, model) of the D0 config on the CPU with ``checkpoint`` loaded strictly, eval mode;
    test_cfg as effdet post-processes."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import mmeffnet.tool_entry  # noqa: F401 (mmdet:: bases of the config)
    from mmeffnet.config import swap_sync_bn
    cfg = Config.fromfile(D0_CONFIG)
    swap_sync_bn(cfg, distributed=False)  # SyncBN needs CUDA and several processes
    cfg.model.backbone.init_cfg = None  # the ImageNet backbone is not downloaded
    cfg.model.test_cfg.update(EFFDET_TEST_CFG)
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model)
    model.load_state_dict(safe_torch_load(checkpoint)['state_dict'], strict=True)
    return cfg, model.eval()


# ---------------------------------------------------------------------------- the tool
def test_cli_round_trip_loads_strictly_into_the_d0_config(d0_state, converted_d0):
    out, stdout = converted_d0
    assert 'EfficientDet-d0' in stdout
    assert "effdet's 90 COCO outputs" in stdout and "mmdet's 80 CocoDataset classes" in stdout
    assert f"configs/efficientdet/efficientdet_d0_8xb16-crop512-300e_coco.py with load_from='{out}'" in stdout
    checkpoint = safe_torch_load(out)
    meta = checkpoint['meta']
    assert (meta['source'], meta['arch'], meta['num_classes'], meta['ema']) == ('effdet', 'd0', 80, False)
    assert '12, 26, 29, 30, 45, 66, 68, 69, 71, 83 are dropped' in meta['class_mapping']
    assert len(meta['dataset_meta']['classes']) == 80 and meta['dataset_meta']['classes'][0] == 'person'
    expected = convert_effdet(d0_state, arch='d0')
    assert checkpoint['state_dict'].keys() == expected.keys()
    assert all(torch.equal(checkpoint['state_dict'][k], v) for k, v in expected.items())
    _, model = d0_detector(out)  # strict: every key of the model and of the file accounted for
    assert model.bbox_head.num_classes == 80


@pytest.mark.parametrize('kind', ['training-checkpoint', 'training-checkpoint --no-ema', 'safetensors'])
def test_cli_reads_effdets_training_checkpoints_and_safetensors(kind, d0_state, tmp_path):
    """effdet's train.py saves the DetBench (``model.*`` keys and its ``anchors.boxes``) as
    ``state_dict`` and the EMA weights as ``state_dict_ema``; the EMA weights are taken unless
    --no-ema."""
    raw = dict(d0_state, **{'class_net.predict.conv_pw.bias': d0_state['class_net.predict.conv_pw.bias'] + 1})
    bench = {f'model.{k}': v for k, v in raw.items()}
    bench['anchors.boxes'] = torch.zeros(49104, 4)  # the bench's anchor buffer: dropped
    args = ['--no-ema'] if kind.endswith('--no-ema') else []
    if kind == 'safetensors':
        from safetensors.torch import save_file
        src = tmp_path / 'tf_efficientdet_d0.safetensors'
        save_file({k: v.contiguous() for k, v in d0_state.items()}, str(src))
    else:
        src = tmp_path / 'last.pth.tar'
        torch.save(dict(epoch=3, state_dict=bench, state_dict_ema={f'model.{k}': v for k, v in d0_state.items()}), src)
    proc = run_tool(CONVERTER, *args, str(src), str(tmp_path / 'out.pth'), timeout=300)
    converted = safe_torch_load(str(tmp_path / 'out.pth'))
    expected = convert_effdet(raw if args else d0_state, arch='d0')
    assert converted['state_dict'].keys() == expected.keys()
    assert all(torch.equal(converted['state_dict'][k], v) for k, v in expected.items())
    uses_ema = kind == 'training-checkpoint'
    assert converted['meta']['ema'] is uses_ema and ('state_dict_ema (the EMA weights)' in proc.stdout) is uses_ema


@pytest.mark.parametrize('kind', ['missing', 'not-effdet', 'wrong-arch', 'unknown-arch'])
def test_cli_bad_input_is_one_error_line(kind, d0_state, tmp_path):
    d0 = tmp_path / 'd0.pth'
    torch.save(d0_state, d0)
    if kind == 'not-effdet':  # the backbone's checkpoint instead of the detector's
        import timm
        torch.save(timm.create_model('tf_efficientnet_b0').state_dict(), tmp_path / 'b0.pth')
    out = tmp_path / 'out.pth'
    args, expected = {
        'missing': ([str(tmp_path / 'nope.pth')], 'checkpoint file not found'),
        'not-effdet': ([str(tmp_path / 'b0.pth')], 'not an effdet EfficientDet state dict: expected backbone.*, '
                       'fpn.*, class_net.*, box_net.* keys'),
        'wrong-arch': (['--arch', 'd3', str(d0)], 'not an EfficientDet-d3 (backbone b3'),
        'unknown-arch': (['--arch', 'd9', str(d0)], "unknown EfficientDet variant 'd9'; valid names are d0, d1"),
    }[kind]
    proc = run_tool(CONVERTER, *args, str(out), check=False, timeout=300)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith('ERROR:')]
    assert len(errors) == 1 and 'Traceback' not in proc.stderr, proc.stderr
    assert expected in errors[0], errors[0]
    if kind == 'wrong-arch':
        assert 'its tensors say backbone b0' in errors[0] and 'i.e. d0' in errors[0]
    assert not out.exists() and not [n for n in os.listdir(tmp_path) if n.endswith('.partial')]


# ---------------------------------------------------------------------------- predictions
def effdet_detections(state: dict, inputs: torch.Tensor, scale: float, ori_shape: Tuple[int, int]):
    """effdet's full inference path (``DetBenchPredict``: its top-5000 selection, box decoding,
    clipping, batched NMS at IoU 0.5, 100 per image, rescaling) on ``inputs``; returns its detections
    (``x1, y1, x2, y2, score, COCO id`` in original-image pixels) and its raw outputs."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # torch.jit.script deprecation inside effdet
        bench = effdet.create_model(
            'tf_efficientdet_d0', bench_task='predict', pretrained=False, pretrained_backbone=False)
    bench.model.load_state_dict(state)
    bench.eval()
    height, width = ori_shape
    img_info = dict(img_scale=torch.tensor([1. / scale]), img_size=torch.tensor([[float(width), float(height)]]))
    with torch.no_grad():
        return bench(inputs, img_info)[0], bench.model(inputs)


def test_predictions_equal_effdets(converted_d0, d0_state):
    """Our D0 (the config's model, the tool's checkpoint), run by ``model.test_step`` on the output
    of the config's own test pipeline (as ``mmdet.apis.inference_detector`` does), detects what
    effdet's ``DetBenchPredict`` detects on a real COCO image: the same top-K labels in the same
    order, scores within ``SCORE_TOLERANCE``, boxes in original-image pixels within ``BOX_TOLERANCE``.

    The same input: effdet's own transform (``ResizePad``) resizes with PIL's antialiased bilinear
    filter and pads with the mean colour (``(124, 116, 104)``, ~0.005 after normalising), mmdet's
    ``Resize`` with cv2's bilinear one and its preprocessor pads with 0 after normalising: on this
    image the resized pixels differ by 1.5/255 on average (up to 34/255). That compares resizers,
    not detectors, so effdet is given the tensor our data preprocessor made. The geometry is the
    same: both fit the image into 512 x 512 keeping its aspect, top-left, bottom/right padding
    (checked against ``ResizePad``). The image is 640 x 480 because mmdet scales each side by its
    rounded size (e.g. 338 / 422) and effdet both by one factor; here both are exactly 0.8.

    Post-processing, made to match: ``test_cfg`` score_thr 0 (effdet has no threshold), NMS IoU 0.5
    per class, 100 per image, and min_bbox_size -1 (mmdet otherwise drops boxes that clipping made
    empty, effdet keeps them). What still differs, and why it does not reach the compared detections:

    * candidates: effdet keeps the 5000 best (anchor, class) logits of all levels and its 90
      classes, mmdet the 5000 best per level (``nms_pre``) of 80 classes, a superset of effdet's
      80-class candidates. Greedy NMS decides a box by the higher-scoring boxes of its class only,
      so the detections above effdet's 5000th score are the same: the K-th compared score is
      checked to be above it;
    * effdet's 10 unused COCO ids also take some of its 100 places: their detections are dropped
      before comparing (ids -> our labels by ``COCO80_IDS``);
    * mmdet's box coder clamps |dw|, |dh| at 4.135, effdet's does not: checked not to happen here;
    * effdet runs NMS in input pixels, mmdet after rescaling to the original: with one scale for
      both sides the IoUs are the same.

    Near-ties: the compared effdet scores (and the next one) are checked to be ``MIN_SCORE_GAP``
    apart, 10x what float32 noise could move two scores together. Measured: boxes 2.4e-4 px,
    scores 7.2e-7 (float32 rounding of the same computation).
    """
    if not osp.isfile(COCO_IMAGE):
        pytest.skip(f'real COCO image {COCO_IMAGE} is absent (../shared/data/coco_mini beside the repo)')
    from mmengine.dataset import Compose
    cfg, model = d0_detector(converted_d0[0])
    data = Compose(cfg.test_dataloader.dataset.pipeline)(dict(img_path=COCO_IMAGE, img_id=0))
    batch = dict(inputs=[data['inputs']], data_samples=[data['data_samples']])
    with torch.no_grad():
        ours = model.test_step(batch)[0].pred_instances
        inputs = model.data_preprocessor(batch, False)['inputs']
    meta = data['data_samples'].metainfo
    scale = _check_same_geometry_as_resize_pad(meta, inputs)

    detections, (class_out, box_out) = effdet_detections(d0_state, inputs, scale, meta['ori_shape'])
    used = torch.tensor([int(c) in COCO80_IDS for c in detections[:, 5]]) & (detections[:, 4] > 0)
    ref = detections[used]
    ref_labels = torch.tensor([COCO80_IDS.index(int(c)) for c in ref[:, 5]])
    assert len(ref) > TOP_K and len(ours.scores) > TOP_K
    gaps = ref[:TOP_K, 4] - ref[1:TOP_K + 1, 4]
    assert gaps.min() >= MIN_SCORE_GAP, f'near-tie in effdet top-{TOP_K + 1}: {gaps.min():.2e}'
    logits = torch.cat([c.permute(0, 2, 3, 1).flatten() for c in class_out])
    assert ref[TOP_K - 1, 4] > logits.topk(5000).values[-1].sigmoid(), 'compared a detection outside the candidates'
    assert max(b.abs().max() for b in box_out) < MMDET_MAX_LOG_RATIO, "mmdet's coder would clamp"
    image_h, image_w = meta['ori_shape']
    boxes = ref[:TOP_K, :4]
    inside = (boxes[:, :2] > 0).all(1) & (boxes[:, 2] < image_w) & (boxes[:, 3] < image_h)
    assert inside.sum() >= 5, 'most compared boxes are clipped: the decoding would hardly be compared'

    assert torch.equal(ours.labels[:TOP_K], ref_labels[:TOP_K]), (ours.labels[:TOP_K], ref_labels[:TOP_K])
    score_diff = (ours.scores[:TOP_K] - ref[:TOP_K, 4]).abs().max().item()
    box_diff = (ours.bboxes[:TOP_K] - boxes).abs().max().item()
    print(f'top-{TOP_K} ({int(inside.sum())} boxes inside the image): max |score diff| {score_diff:.1e}, '
          f'max |box diff| {box_diff:.1e} px')
    assert score_diff < SCORE_TOLERANCE and box_diff < BOX_TOLERANCE


def _check_same_geometry_as_resize_pad(meta: dict, inputs: torch.Tensor) -> float:
    """The config's pipeline resized and padded the image as effdet's ``ResizePad`` would (same
    scale, same 512 x 512 canvas, image top-left); returns the one scale of both sides."""
    from effdet.data.transforms import ResizePad
    from PIL import Image
    image = Image.open(COCO_IMAGE).convert('RGB')
    canvas, anno = ResizePad(512)(image, {})
    scale_w, scale_h = meta['scale_factor']
    assert scale_w == scale_h == 1. / anno['img_scale']
    height, width = meta['img_shape']
    assert (height, width) == (int(image.height * scale_h), int(image.width * scale_w))
    assert tuple(inputs.shape[-2:]) == canvas.size[::-1] == (512, 512)
    padding = torch.ones_like(inputs, dtype=torch.bool)
    padding[..., :height, :width] = False
    assert (inputs[padding] == 0).all()  # bottom/right, as ResizePad pastes the image top-left
    return scale_w
