"""Inference: a trained model in any form (checkpoint, TorchScript, ONNX, OpenVINO) as one
:class:`~ssdcli.engine.inference.detectors.Detector` that turns images into detections in pixels."""
