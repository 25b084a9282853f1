"""The speed/memory benchmark against the peers (``tools/analysis/benchmark.py``).

- :mod:`.peers`: how each compared model is built (ours, mmdet, timm, torchvision, onnxruntime).
- :mod:`.tasks`: a measured unit of work (training step, inference, detector iteration) built
  from a plain-dict spec, so a fresh subprocess can rebuild it for the memory measurement.
- :mod:`.measure`: interleaved timing, saved-activation bytes, peak memory (CPU RSS / CUDA).
- :mod:`.suite`: the rows of the report; :mod:`.report`: markdown table and PNG chart.
"""
