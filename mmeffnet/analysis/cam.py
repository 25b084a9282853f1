"""Class activation maps (Zhou et al., CVPR 2016) of mmpretrain image classifiers, as in Figure 7 of
the EfficientNet paper.

For a network that ends in global average pooling and a linear classifier, the score of class
``k`` is ``w_k . mean_xy f(x, y) + b_k``, so ``cam_k(x, y) = w_k . f(x, y) + b_k`` shows how much
each location of the last feature map ``f`` adds to that score. ``compute_cam`` returns it
upsampled to the network's input view; ``render_figure`` draws the input and one heat map per
model side by side, each with its top-5 classes (``tools/analysis/cam.py`` is the command line).
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import Config

PANEL_MIN_SIZE = 224  # panels smaller than this are enlarged (CAMs of 64 px inputs stay readable)
TITLE_HEIGHT = 28
TEXT_LINE_HEIGHT = 18
GAP = 8
HEAT_ALPHA = 0.5


@dataclass
class CamResult:
    """One model's view of one image."""
    image: np.ndarray  # the network's input view (after the test pipeline), RGB uint8, H x W x 3
    cam: np.ndarray  # float32 H x W in [0, 1] (1 = strongest evidence for ``class_index``)
    class_index: int
    topk: List[Tuple[int, str, float]]  # (class index, name, probability), best first


def _adapt_norm_layers(cfg: Config) -> None:
    # SyncBN cannot run in one process; for inference it is the same as BN.
    from ..config import swap_sync_bn
    swap_sync_bn(cfg, distributed=False)


def load_classifier(config: Union[str, Config], checkpoint: str, device: str = 'cpu') -> Tuple[nn.Module, Config]:
    """Build the config's ``ImageClassifier`` and load ``checkpoint`` into it strictly (a
    checkpoint of another arch or class count is a ``CheckpointMismatchError``)."""
    from mmengine.registry import init_default_scope

    from ..checkpoint import check_and_load, extract_state_dict, read_checkpoint

    cfg = Config.fromfile(config) if isinstance(config, str) else config
    if cfg.get('default_scope') != 'mmpretrain':
        raise ValueError(f'{config}: CAMs are for mmpretrain classification configs, this one has '
                         f'default_scope={cfg.get("default_scope")!r}')
    init_default_scope('mmpretrain')
    from mmpretrain.registry import MODELS
    _adapt_norm_layers(cfg)
    model_cfg = cfg.model.copy()
    model_cfg.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    model = MODELS.build(model_cfg)
    neck, head = getattr(model, 'neck', None), getattr(model, 'head', None)
    if type(neck).__name__ != 'GlobalAveragePooling' or not isinstance(getattr(head, 'fc', None), nn.Linear):
        raise ValueError(f'{config}: a CAM needs global average pooling followed by a linear classifier '
                         f'(neck GlobalAveragePooling, head with an `fc` Linear); this model has neck '
                         f'{type(neck).__name__} and head {type(head).__name__}')
    ckpt = read_checkpoint(checkpoint)
    check_and_load(model, extract_state_dict(ckpt, checkpoint), checkpoint)
    model.class_names = _class_names(ckpt, cfg, head.num_classes)
    return model.to(device).eval(), cfg


def _class_names(checkpoint: dict, cfg: Config, num_classes: int) -> List[str]:
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    classes = (meta or {}).get('dataset_meta', {}).get('classes') if isinstance(meta, dict) else None
    if classes is None:
        ds = cfg.get('test_dataloader', {}).get('dataset', {})
        classes = ds.get('classes') or (ds.get('metainfo') or {}).get('classes')
        if classes is None and num_classes == 1000 and ds.get('type') == 'ImageNet':
            from mmpretrain.datasets.categories import IMAGENET_CATEGORIES
            classes = IMAGENET_CATEGORIES
    if classes is None or isinstance(classes, str) or len(classes) != num_classes:
        return [f'class {i}' for i in range(num_classes)]
    return [str(c) for c in classes]


def prepare_input(cfg: Config, image_path: str) -> dict:
    """Run the config's test pipeline on one image file."""
    from mmengine.dataset import Compose
    pipeline = Compose(cfg.test_dataloader.dataset.pipeline)
    return pipeline(dict(img_path=image_path, img_shape=None))


@torch.no_grad()
def compute_cam(model: nn.Module,
                cfg: Config,
                image_path: str,
                target: Optional[int] = None,
                topk: int = 5) -> CamResult:
    """The CAM of class ``target`` (default: the predicted class) for one image."""
    data = prepare_input(cfg, image_path)
    batch = model.data_preprocessor(dict(inputs=[data['inputs']], data_samples=[data['data_samples']]), False)
    features = model.backbone(batch['inputs'])[-1]  # (1, C, h, w): what the classifier pools
    logits = model.head.fc(features.mean((2, 3)))[0]
    probs = logits.softmax(0)
    num_classes = probs.numel()
    if target is not None and not 0 <= target < num_classes:
        raise ValueError(f'target class {target} is not one of the model\'s {num_classes} classes 0..{num_classes - 1}')
    k = int(probs.argmax()) if target is None else int(target)
    weight, bias = model.head.fc.weight[k], model.head.fc.bias[k] if model.head.fc.bias is not None else 0.
    cam = torch.einsum('c,chw->hw', weight, features[0]) + bias
    view = data['inputs'].permute(1, 2, 0).cpu().numpy()
    if view.shape[2] == 3:
        view = view[..., ::-1]  # the pipeline keeps OpenCV's BGR order
    height, width = view.shape[:2]
    cam = F.interpolate(cam[None, None], size=(height, width), mode='bilinear', align_corners=False)[0, 0]
    cam = (cam - cam.min()) / (cam.max() - cam.min()).clamp_min(1e-12)
    names = getattr(model, 'class_names', [f'class {i}' for i in range(num_classes)])
    top = probs.topk(min(topk, num_classes))
    return CamResult(
        np.ascontiguousarray(view).astype(np.uint8),
        cam.cpu().numpy().astype(np.float32), k,
        [(int(i), names[int(i)], float(p)) for p, i in zip(top.values, top.indices)])


def heat_overlay(image: np.ndarray, cam: np.ndarray, alpha: float = HEAT_ALPHA) -> np.ndarray:
    """``image`` (RGB) blended with the CAM in the JET colour map (red = high)."""
    heat_bgr = cv2.applyColorMap(np.uint8(np.clip(cam, 0, 1) * 255), cv2.COLORMAP_JET)
    heat = heat_bgr[..., ::-1].astype(np.float32)
    return np.uint8(np.clip((1 - alpha) * image.astype(np.float32) + alpha * heat, 0, 255))


def panel_size(image_size: Tuple[int, int]) -> Tuple[int, int]:
    """(height, width) of one panel for an input view of ``image_size`` (height, width)."""
    h, w = image_size
    scale = max(1., PANEL_MIN_SIZE / min(h, w))
    return int(round(h * scale)), int(round(w * scale))


def panel_origin(index: int, size: Tuple[int, int]) -> Tuple[int, int]:
    """(y, x) of the top-left pixel of panel ``index`` (0 = the input image) in the figure."""
    return TITLE_HEIGHT, GAP + index * (size[1] + GAP)


def _put_text(canvas: np.ndarray, text: str, x: int, y: int, width: int, scale: float = 0.45) -> None:
    font = cv2.FONT_HERSHEY_SIMPLEX
    while len(text) > 3 and cv2.getTextSize(text, font, scale, 1)[0][0] > width:
        text = text[:-4] + '...'
    cv2.putText(canvas, text, (x, y), font, scale, (0, 0, 0), 1, cv2.LINE_AA)


def render_figure(results: Sequence[CamResult], labels: Sequence[str], title: str = 'input') -> np.ndarray:
    """The input view, then each model's CAM over it with its top-5 classes: an RGB image."""
    if not results:
        raise ValueError('render_figure needs at least one CAM')
    size = panel_size(results[0].image.shape[:2])
    lines = max(len(r.topk) for r in results)
    height = TITLE_HEIGHT + size[0] + GAP + lines * TEXT_LINE_HEIGHT + GAP
    width = GAP + (len(results) + 1) * (size[1] + GAP)
    canvas = np.full((height, width, 3), 255, np.uint8)

    def place(index: int, picture: np.ndarray, caption: str) -> None:
        y, x = panel_origin(index, size)
        canvas[y:y + size[0], x:x + size[1]] = cv2.resize(picture, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        _put_text(canvas, caption, x, TITLE_HEIGHT - 9, size[1], scale=0.5)

    place(0, results[0].image, title)
    for i, (result, label) in enumerate(zip(results, labels), start=1):
        picture = cv2.resize(result.image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        cam = cv2.resize(result.cam, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        place(i, heat_overlay(picture, cam), label)
        y0, x0 = TITLE_HEIGHT + size[0] + GAP, panel_origin(i, size)[1]
        for j, (_, name, prob) in enumerate(result.topk):
            _put_text(canvas, f'{prob * 100:5.1f}% {name}', x0, y0 + (j + 1) * TEXT_LINE_HEIGHT - 5, size[1])
    return canvas
