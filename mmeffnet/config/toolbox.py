"""Which OpenMMLab toolbox a config is for: its ``default_scope``."""
from mmengine.config import Config

TOOLBOXES = ('mmdet', 'mmseg', 'mmpretrain')


def toolbox_of(cfg: Config) -> str:
    """``cfg.default_scope`` when it is one of ``TOOLBOXES``; ``ValueError`` naming it otherwise."""
    scope = cfg.get('default_scope')
    if scope not in TOOLBOXES:
        raise ValueError(f'config default_scope={scope!r} is not one of {TOOLBOXES}; '
                         'inherit a base config of mmdet, mmseg or mmpretrain')
    return scope
