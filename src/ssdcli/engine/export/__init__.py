"""Export: ONNX and TorchScript files that keep the model's detections, and INT8 ONNX."""
