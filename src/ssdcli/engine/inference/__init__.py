"""Inference: a trained model in any form (checkpoint, ONNX, TorchScript) turned into detections in pixels."""
