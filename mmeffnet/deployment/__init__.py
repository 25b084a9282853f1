"""Deployment helpers: ONNX export with dynamic batch and spatial size (:mod:`.onnx`)."""
from .onnx import compare_with_onnxruntime, export_onnx

__all__ = ['export_onnx', 'compare_with_onnxruntime']
