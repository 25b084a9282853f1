"""A measured unit of work built from a plain dict, so that the memory probe subprocess can
rebuild exactly what the timing loop runs.

Spec keys: ``kind`` ('train' | 'infer' | 'detector' | 'onnx' | 'effdet-train' | 'effdet-infer'),
``model`` (a key of ``peers.LABELS``), ``arch`` (an EfficientDet variant, 'd0'..'d7', for the
effdet kinds), ``size``, ``batch``, ``device`` ('cpu' | 'cuda'), ``amp`` (autocast to
:data:`AMP_DTYPE`), ``channels_last`` (feed a channels_last input), ``threads`` (onnxruntime),
``config`` (detector), ``sync_bn`` (train: every BatchNorm a ``GlooSyncBatchNorm``; run in a
gloo process group, :mod:`.syncprobe`).
"""
import logging
import os.path as osp
import tempfile
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn

from .measure import REPO
from .peers import build_model


@dataclass
class Task:
    step: Callable[[], None]
    #: forward only, with autograd recording (for saved-tensor bytes); None for inference
    forward: Optional[Callable[[], object]] = None


def _as_list(outs) -> Sequence[torch.Tensor]:
    return [outs] if isinstance(outs, torch.Tensor) else list(outs)


# float16, as mmengine's AmpOptimWrapper (`--amp`) trains; also the only half type of mmcv's CUDA
# sigmoid focal loss, which the RetinaNet recipe's loss calls on a GPU (no bfloat16 kernel)
AMP_DTYPE = torch.float16


def _autocast(spec: dict):
    return torch.autocast(spec.get('device', 'cpu'), dtype=AMP_DTYPE, enabled=spec.get('amp', False))


def _input(spec: dict) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(spec['batch'], 3, spec['size'], spec['size'], generator=g)
    x = x.to(spec.get('device', 'cpu'))
    if spec.get('channels_last'):
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _train_task(spec: dict) -> Task:
    model = build_model(spec['model'], spec['arch'], 'pyramid').to(spec.get('device', 'cpu'))
    if spec.get('sync_bn'):
        from mmeffnet.models.gloo_sync_bn import GlooSyncBatchNorm
        model = GlooSyncBatchNorm.convert_batch_norm(model)
    model.train()
    x = _input(spec)
    params = [p for p in model.parameters() if p.requires_grad]

    def forward():
        with _autocast(spec):
            return _as_list(model(x))

    def step():
        for p in params:
            p.grad = None
        loss = sum(o.float().mean() for o in forward())
        loss.backward()

    return Task(step, forward)


def _infer_task(spec: dict) -> Task:
    model = build_model(spec['model'], spec['arch'], 'head').to(spec.get('device', 'cpu'))
    model.eval()
    x = _input(spec)

    @torch.inference_mode()
    def step():
        with _autocast(spec):
            model(x)

    return Task(step)


def _onnx_task(spec: dict) -> Task:
    import onnxruntime as ort

    from mmeffnet.deployment.onnx import export_onnx
    path = osp.join(tempfile.gettempdir(), f"mmeffnet_bench_{spec['arch']}_{spec['size']}.onnx")
    if not osp.exists(path):
        model = build_model('ours-fused', spec['arch'], 'head')
        export_onnx(model, path, (1, 3, spec['size'], spec['size']))
    options = ort.SessionOptions()
    options.intra_op_num_threads = spec.get('threads', 0)
    options.inter_op_num_threads = 1
    # no busy-waiting worker threads after a run: they would take the cores from the next model
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    options.add_session_config_entry('session.inter_op.allow_spinning', '0')
    session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    feed = {session.get_inputs()[0].name: _input(spec).cpu().numpy()}
    return Task(lambda: session.run(None, feed))


# ------------------------------------------------------------------ the RetinaNet recipe
def detector_model_cfg(config: str, backbone: str) -> dict:
    """``model`` of the RetinaNet recipe config, for one process, without downloads; with
    ``backbone='mmdet'`` the backbone is swapped for mmdet's EfficientNet with the same
    arguments (they mean the same to both)."""
    from mmengine.config import Config

    from mmeffnet.config import swap_sync_bn
    cfg = Config.fromfile(config)
    swap_sync_bn(cfg, distributed=False)  # SyncBN -> BN, as tools/train.py does in one process
    model = cfg.model
    bb = model.backbone
    bb.init_cfg = None
    if backbone == 'mmdet':
        model.backbone = dict(
            type='mmdet.EfficientNet',
            arch=bb.arch,
            out_indices=tuple(bb.out_indices),
            drop_path_rate=bb.get('drop_path_rate', 0.),
            frozen_stages=max(bb.get('frozen_stages', 0), 0),
            norm_cfg=bb.norm_cfg,
            norm_eval=bb.get('norm_eval', False))
    return model


def synthetic_det_batch(batch: int, size: int, num_boxes: int = 6) -> dict:
    """Random uint8 images with random boxes: the input a data loader would hand the model."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    g = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=g))
        xy = torch.rand(num_boxes, 2, generator=g) * (size - 64)
        wh = 16 + torch.rand(num_boxes, 2, generator=g) * (size / 3)
        sample = DetDataSample(
            metainfo=dict(img_shape=(size, size), ori_shape=(size, size), scale_factor=(1., 1.), flip=False))
        sample.gt_instances = InstanceData(
            bboxes=torch.cat([xy, (xy + wh).clamp(max=size)], 1),
            labels=torch.randint(0, 80, (num_boxes, ), generator=g))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def _detector_task(spec: dict) -> Task:
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    import mmeffnet  # noqa: F401  (registers mmeffnet.EfficientNet)
    register_all_modules(init_default_scope=True)
    model: nn.Module = MODELS.build(detector_model_cfg(spec['config'], spec['model']))
    model.to(spec.get('device', 'cpu')).train()
    # one plain SGD step per iteration (lr kept small: random boxes, the cost is the same)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad],
                                lr=1e-4,
                                momentum=0.9,
                                weight_decay=1e-4)
    return _optimizer_task(_mmdet_losses(model, synthetic_det_batch(spec['batch'], spec['size']), spec), optimizer)


def _mmdet_losses(model: nn.Module, batch: dict, spec: dict) -> Callable[[], torch.Tensor]:
    """An mmdet detector's summed losses on ``batch``, its data preprocessor included."""

    def losses():
        data = model.data_preprocessor(batch, True)
        with _autocast(spec):
            return model.parse_losses(model(**data, mode='loss'))[0]

    return losses


def _optimizer_task(losses: Callable[[], torch.Tensor], optimizer: torch.optim.Optimizer) -> Task:
    """A training iteration: ``losses()``, backward, one optimizer step (``losses`` is the forward)."""

    def step():
        optimizer.zero_grad(set_to_none=True)
        losses().backward()
        optimizer.step()

    return Task(step, losses)


# ------------------------------------------------------------------ EfficientDet against effdet
def efficientdet_config(variant: str) -> str:
    """The config file of EfficientDet ``variant`` (configs/efficientdet/efficientdet_d*_coco.py)."""
    import glob
    found = glob.glob(osp.join(REPO, 'configs', 'efficientdet', f'efficientdet_{variant}_*.py'))
    if len(found) != 1:
        raise FileNotFoundError(f'expected one config for EfficientDet-{variant}, found {found}')
    return found[0]


def build_efficientdet(spec: dict, train: bool) -> nn.Module:
    """Ours: mmdet's detector from the variant's config (SyncBN run as BN, no download, the official
    init); effdet: ``tf_efficientdet_<variant>`` with 80 classes, its own (official-style) init,
    wrapped in ``DetBenchTrain`` (anchor labelling + focal/Huber loss) for training."""
    if spec['model'] == 'effdet':
        from effdet import create_model
        return create_model(
            f"tf_efficientdet_{spec['arch']}",
            bench_task='train' if train else '',
            bench_labeler=True,
            num_classes=80,
            pretrained=False,
            pretrained_backbone=False)
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.logging import MMLogger

    import mmeffnet  # noqa: F401
    from mmeffnet.config import swap_sync_bn
    register_all_modules(init_default_scope=True)
    cfg = Config.fromfile(efficientdet_config(spec['arch']))
    swap_sync_bn(cfg, distributed=False)
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    logger = MMLogger.get_current_instance()  # init_weights() logs one INFO line per parameter
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
    return model


def _preprocessing_of(variant: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """What our config's data preprocessor does to a uint8 image batch (channel order, mean, std),
    so that effdet's step normalises its input the same way."""
    from mmengine.config import Config
    pre = Config.fromfile(efficientdet_config(variant)).model.data_preprocessor
    mean, std = (torch.tensor(pre[k], dtype=torch.float32).view(1, 3, 1, 1) for k in ('mean', 'std'))
    order = [2, 1, 0] if pre.get('bgr_to_rgb', False) else [0, 1, 2]
    return lambda images: (images[:, order].float() - mean) / std


def _effdet_target(batch: dict) -> dict:
    """effdet's form of the same boxes: (y1, x1, y2, x2) and 1-based classes."""
    boxes = [s.gt_instances.bboxes[:, [1, 0, 3, 2]] for s in batch['data_samples']]
    classes = [s.gt_instances.labels.float() + 1 for s in batch['data_samples']]
    return dict(bbox=torch.stack(boxes), cls=torch.stack(classes))


def _efficientdet_train_task(spec: dict) -> Task:
    model = build_efficientdet(spec, train=True).to(spec.get('device', 'cpu')).train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
    batch = synthetic_det_batch(spec['batch'], spec['size'])
    if spec['model'] != 'effdet':
        return _optimizer_task(_mmdet_losses(model, batch, spec), optimizer)
    normalise = _preprocessing_of(spec['arch'])
    target = _effdet_target(batch)

    def losses():
        x = normalise(torch.stack(batch['inputs']))
        return model(x, target)['loss']

    return _optimizer_task(losses, optimizer)


def _efficientdet_infer_task(spec: dict) -> Task:
    """The network's class and box maps of P3-P7 (no box decoding or NMS), as effdet's model returns them."""
    model = build_efficientdet(spec, train=False).to(spec.get('device', 'cpu')).eval()
    x = _input(spec)
    kwargs = {} if spec['model'] == 'effdet' else dict(mode='tensor')

    @torch.inference_mode()
    def step():
        model(x, **kwargs)

    return Task(step)


KINDS = {
    'train': _train_task,
    'infer': _infer_task,
    'onnx': _onnx_task,
    'detector': _detector_task,
    'effdet-train': _efficientdet_train_task,
    'effdet-infer': _efficientdet_infer_task,
}


def build_task(spec: dict) -> Task:
    if spec['kind'] not in KINDS:
        raise ValueError(f"unknown task kind {spec['kind']!r}; choose from {sorted(KINDS)}")
    return KINDS[spec['kind']](spec)
