"""Running an OpenVINO export (``ssd export --to openvino``: a folder holding ``model.xml`` and ``model.bin``) with
OpenVINO on the CPU. The network gives raw outputs (conf, loc); decoding and NMS are ssdcli's, as for an ONNX file
without NMS. The ssdcli metadata (the same JSON as an ONNX file's, see ``onnx_runtime.METADATA_KEY``) is held in
the model's runtime information under that key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ssdcli.engine.inference.onnx_runtime import METADATA_KEY
from ssdcli.errors import CheckpointError, UsageError

#: The file names of an OpenVINO export inside its folder (the weights go beside the graph as ``model.bin``).
OPENVINO_GRAPH = "model.xml"
#: Float32 inference on every CPU (OpenVINO may otherwise choose bf16 where the CPU has it): the export is
#: verified at float32 and evaluation must reproduce it.
CPU_CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}


def openvino_module() -> Any:
    """The ``openvino`` package, or a UsageError saying how to install it."""
    try:
        import openvino
    except ImportError:
        raise UsageError("OpenVINO files need the optional package openvino: pip install 'ssdcli[openvino]'") from None
    return openvino


def is_openvino(path: str | Path) -> bool:
    """Whether ``path`` names an OpenVINO export: a ``.xml`` file, or a folder holding ``model.xml``."""
    path = Path(path)
    return path.suffix.lower() == ".xml" or (path.is_dir() and (path / OPENVINO_GRAPH).is_file())


def graph_file(path: str | Path) -> Path:
    """The ``.xml`` file of an export given as its folder or as the file; CheckpointError if it is missing."""
    path = Path(path)
    graph = path / OPENVINO_GRAPH if path.is_dir() else path
    if not graph.is_file():
        raise CheckpointError(f"OpenVINO model not found (expected a folder holding {OPENVINO_GRAPH})", path=path)
    return graph


def compile_graph(openvino: Any, model: Any) -> Any:
    """``model`` (an ``openvino.Model``) compiled for the CPU at float32."""
    return openvino.Core().compile_model(model, "CPU", CPU_CONFIG)


def open_openvino(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """The compiled model of an OpenVINO export (folder or ``.xml`` file) and its ssdcli metadata."""
    openvino = openvino_module()
    graph = graph_file(path)
    try:
        model = openvino.Core().read_model(str(graph))
    except Exception as error:  # noqa: BLE001 - OpenVINO raises its own exception types
        raise CheckpointError(f"not a readable OpenVINO model ({str(error).splitlines()[0]})", path=path) from None
    if not model.has_rt_info([METADATA_KEY]):
        raise CheckpointError("OpenVINO model has no ssdcli metadata (export it with 'ssd export')", path=path)
    meta = json.loads(model.get_rt_info([METADATA_KEY]).astype(str))
    return compile_graph(openvino, model), meta


class OpenVinoNetwork:
    """images [B, 3, S, S] normalised -> (conf [B, A, C], loc [B, A, 4]) through a compiled OpenVINO model."""

    def __init__(self, compiled: Any) -> None:
        self.compiled = compiled
        self.request = compiled.create_infer_request()

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The two outputs as arrays for images [B, 3, S, S] float32."""
        outputs = self.request.infer({0: np.ascontiguousarray(images, dtype=np.float32)})
        return np.array(outputs[self.compiled.output("conf")]), np.array(outputs[self.compiled.output("loc")])

    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor]:
        conf, loc = self.run(images.cpu().numpy())
        return torch.from_numpy(conf), torch.from_numpy(loc)
