"""The ONNX Runtime session and its model card, checked against each other before serving."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from cxr.card import CardError, ModelCard, file_sha256, load_card
from cxr.imaging import PreprocessParams
from cxr.runtime import session_options

logger = logging.getLogger(__name__)

ORT_TO_NUMPY = {
    "tensor(float)": "float32",
    "tensor(uint8)": "uint8",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(float16)": "float16",
}


class ModelMismatch(RuntimeError):
    """The model file and its card disagree (or one is missing/unreadable): refuse to serve."""


def choose_providers(requested: list[str]) -> list[str]:
    """Explicit providers: the requested ones, else CUDA first when this build has it, then CPU."""
    available = ort.get_available_providers()
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            raise ModelMismatch(
                f"ORT_PROVIDERS {missing} not available; this build has {available}"
            )
        return requested
    preferred = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return [p for p in preferred if p in available] or available


def _check_input(card: ModelCard, session: ort.InferenceSession) -> None:
    spec = card.input
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ModelMismatch(
            f"model has {len(inputs)} inputs {[i.name for i in inputs]}; expected 1"
        )
    actual = inputs[0]
    if actual.name != spec.name:
        raise ModelMismatch(f"model input is named {actual.name!r}; card says {spec.name!r}")
    dtype = ORT_TO_NUMPY.get(actual.type, actual.type)
    if dtype != spec.dtype:
        raise ModelMismatch(f"model input dtype is {dtype}; card says {spec.dtype}")
    actual_shape = [d if isinstance(d, int) else None for d in actual.shape]
    if len(actual_shape) != len(spec.shape) or actual_shape[1:] != spec.shape[1:]:
        raise ModelMismatch(f"model input shape is {actual_shape}; card says {spec.shape}")
    size = card.preprocessing.size
    if actual_shape[1:] != [size, size, 1]:
        raise ModelMismatch(
            f"model input shape {actual_shape} does not fit preprocessing size {size} (NHWC grey)"
        )
    names = {o.name for o in session.get_outputs()}
    for name in card.output_names():
        if name not in names:
            raise ModelMismatch(f"card output {name!r} is not a model output {sorted(names)}")


@dataclass
class OnnxModel:
    """An ORT session verified against its card; `run` maps a float32 NHWC batch to named
    outputs."""

    session: ort.InferenceSession
    card: ModelCard
    params: PreprocessParams
    input_name: str
    output_names: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def version(self) -> str:
        return self.card.version

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.params.size, self.params.size, 1)

    @property
    def on_cpu(self) -> bool:
        """True when ORT runs this model on the CPU only (no accelerator provider active)."""
        return self.session.get_providers() == ["CPUExecutionProvider"]

    def run(self, batch: npt.NDArray[np.float32]) -> dict[str, npt.NDArray[Any]]:
        """Run one batch; every output by name, first axis = batch."""
        values = self.session.run(self.output_names, {self.input_name: batch})
        return dict(zip(self.output_names, values, strict=True))


def load_model(
    model_path: Path,
    card_path: Path,
    *,
    providers: list[str] | None = None,
    intra_op_threads: int = 0,
) -> OnnxModel:
    """Open model.onnx, check it against model.json (sha256, input spec, outputs) or raise."""
    try:
        card = load_card(card_path)
    except CardError as exc:
        raise ModelMismatch(str(exc)) from None
    if not model_path.is_file():
        raise ModelMismatch(f"model file {model_path} not found")
    digest = file_sha256(model_path)
    if digest != card.sha256:
        raise ModelMismatch(
            f"sha256 of {model_path} is {digest}; card {card_path.name} says {card.sha256} "
            "(model file changed or card stale)"
        )
    params = card.params
    chosen = choose_providers(providers or [])
    try:
        session = ort.InferenceSession(
            str(model_path), sess_options=session_options(intra_op_threads), providers=chosen
        )
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types for bad files
        raise ModelMismatch(f"ONNX Runtime could not load {model_path}: {exc}") from None
    _check_input(card, session)
    outputs = [o.name for o in session.get_outputs()]
    model = OnnxModel(
        session=session,
        card=card,
        params=params,
        input_name=session.get_inputs()[0].name,
        output_names=outputs,
    )
    logger.info(
        "model %s %s loaded; providers %s; input %s %s; outputs %s",
        model.name,
        model.version,
        session.get_providers(),
        model.input_name,
        [None, *model.input_shape],
        outputs,
    )
    return model
