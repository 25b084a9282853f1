"""The parts of the speed/memory benchmark against the peers; ``tools/analysis/benchmark.py`` is
its command line. Project tooling, not library: it holds this project's acceptance targets and
its measurement machine's habits, so it lives with the tools and is not installed with mmeffnet.

- :mod:`.peers`: how each compared model is built (ours, mmdet, timm, torchvision, onnxruntime).
- :mod:`.tasks`: a measured unit of work (training step, inference, detector iteration) built
  from a plain-dict spec, so a fresh subprocess can rebuild it for the memory measurement.
- :mod:`.measure`: interleaved timing, saved-activation bytes, peak memory (CPU RSS / CUDA).
- :mod:`.suite`: the rows of the report; :mod:`.report`: markdown table, targets and PNG chart.

Imported as ``benchmarking`` with ``tools/analysis`` on ``sys.path`` (where running
``tools/analysis/benchmark.py`` puts it).
"""
