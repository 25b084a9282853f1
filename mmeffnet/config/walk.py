"""Walking a config: every dict nested in it, with the path a ``--cfg-options`` key would use."""
from typing import Any, Iterator, Tuple


def walk_dicts_with_paths(node: Any, path: str = '') -> Iterator[Tuple[str, dict]]:
    """``(path, dict)`` for every dict nested in ``node`` (dicts, lists, tuples), ``node`` itself
    first; paths read like ``--cfg-options`` keys: ``model.backbone``, ``train_pipeline[2]``."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from walk_dicts_with_paths(value, f'{path}.{key}' if path else str(key))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from walk_dicts_with_paths(value, f'{path}[{i}]')


def walk_dicts(node: Any) -> Iterator[dict]:
    """Every dict nested in ``node`` (dicts, lists, tuples), ``node`` itself first."""
    return (found for _, found in walk_dicts_with_paths(node))
