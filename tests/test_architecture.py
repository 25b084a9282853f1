"""The package's import graph, as docs/architecture.md draws it: layers that only import downwards,
and no cycle between modules. Read from the source (``ast``), so a lazy import inside a function
counts as much as one at the top."""
import ast
import os
from typing import Dict, Set

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, 'mmeffnet')

#: bottom to top; a module may import its own layer and the ones below, never one above.
LAYERS = (
    ('mmeffnet.version', 'mmeffnet.registry', 'mmeffnet.utils', 'mmeffnet.env'),
    ('mmeffnet.arch', ),
    ('mmeffnet.converters', ),
    ('mmeffnet.checkpoint', ),
    ('mmeffnet.models', ),
    ('mmeffnet.engine', 'mmeffnet.datasets', 'mmeffnet.config', 'mmeffnet.runtime'),
    ('mmeffnet.search', 'mmeffnet.analysis', 'mmeffnet.deployment'),
    ('mmeffnet.tool_entry', ),  # what our tools import first: set-up of a tool's process
)


def _module_name(path: str) -> str:
    rel = os.path.relpath(path, REPO)[:-len('.py')].replace(os.sep, '.')
    return rel[:-len('.__init__')] if rel.endswith('.__init__') else rel


def import_graph() -> Dict[str, Set[str]]:
    """module -> the mmeffnet modules it imports (``from .x import y`` resolved to ``pkg.x.y`` when
    ``y`` is a module, else ``pkg.x``)."""
    modules = {}
    for root, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith('.py'):
                path = os.path.join(root, name)
                modules[_module_name(path)] = path
    graph = {}
    for module, path in modules.items():
        package = module if path.endswith('__init__.py') else module.rpartition('.')[0]
        targets = set()
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split('.')[:len(package.split('.')) - node.level + 1]
                    target = '.'.join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ''
                if not target.startswith('mmeffnet'):
                    continue
                subs = [f'{target}.{a.name}' for a in node.names if f'{target}.{a.name}' in modules]
                targets.update(subs or [target])
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.startswith('mmeffnet'))
        graph[module] = {t for t in targets if t != module}
    return graph


def layer_of(module: str) -> int:
    for i, names in enumerate(LAYERS):
        if any(module == n or module.startswith(n + '.') for n in names):
            return i
    raise AssertionError(f'{module} is in no layer of LAYERS: add it (and to docs/architecture.md)')


@pytest.fixture(scope='module')
def graph():
    return import_graph()


def test_every_module_imports_only_its_own_layer_or_below(graph):
    upward = [
        f'{m} (layer {layer_of(m)}) -> {t} (layer {layer_of(t)})' for m, targets in graph.items() if m != 'mmeffnet'
        for t in targets if t != 'mmeffnet' and layer_of(t) > layer_of(m)
    ]
    assert not upward, 'upward imports:\n' + '\n'.join(sorted(upward))


def test_no_import_cycle(graph):
    """No cycle among modules (a package ``__init__`` counts as the module it is)."""
    state: Dict[str, int] = {}
    stack = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if t == 'mmeffnet' or (m.startswith(t + '.') and t in graph):
                continue  # a module importing its own package's __init__ is not a cycle of modules
            if state.get(t) == 1:
                cycle = stack[stack.index(t):] + [t]
                raise AssertionError('import cycle: ' + ' -> '.join(cycle))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_the_graph_reader_sees_what_it_should(graph):
    """The reader itself: a known edge and a known absence, so the two tests above cannot pass on
    an empty graph."""
    assert 'mmeffnet.arch.scaling' in graph['mmeffnet.arch.network']
    assert 'mmeffnet.models.layers' in graph['mmeffnet.models.efficientnet']
    assert not graph['mmeffnet.arch.scaling']
