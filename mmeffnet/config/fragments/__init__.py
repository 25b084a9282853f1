"""Parts our config files share, as functions they call (``from mmeffnet.config.fragments.x import
...`` at the top of a config): ``classification`` (per-variant ImageNet settings and the TF
pipelines), ``detection`` (the RetinaNet recipe's pipelines at an input size). They return plain
config dicts and import no toolbox."""
