"""Typed records handed between the job's steps and written to the output directory.

Each record is a dataclass whose :meth:`to_dict` is the JSON the output directory keeps
(``models/<label>.json``, ``summary.json``, ``compare.json``) and whose ``from_dict`` reads it
back, so ``brevitas-amed report`` redraws a finished job from files alone.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Optional

CandidateKind = Literal["search", "baseline", "strategy"]


@dataclasses.dataclass
class Accuracy:
    """Top-1 accuracy in [0, 1] on the validation and test splits."""

    val: float
    test: float


@dataclasses.dataclass
class Candidate:
    """A bit allocation to fine-tune: a search trial, a uniform baseline or a strategy's point.

    Attributes:
        label: Unique name in the output directory (``amed-t66``, ``uniform-8``, ``ohq-1``).
        kind: Where it came from.
        method: The method that proposed it (a sampler, ``uniform``, or a strategy).
        knob_bits: ``{knob: bits}`` for every searchable knob.
        trial: The study's trial number, for search candidates.
        search_accuracy: Validation accuracy the search measured, for search candidates: the mean
            over the trials that evaluated these bits.
        search_quality: The quality score of that mean accuracy, for search candidates.
        evaluations: How many trials the mean is over, for search candidates.
    """

    label: str
    kind: CandidateKind
    method: str
    knob_bits: dict[str, int]
    trial: Optional[int] = None
    search_accuracy: Optional[float] = None
    search_quality: Optional[float] = None
    evaluations: Optional[int] = None


@dataclasses.dataclass
class QonnxResult:
    """The exported QONNX file (relative to the output directory) and its check by qonnx."""

    path: str
    verified: Optional[bool] = None
    max_abs_diff: Optional[float] = None
    output_step: Optional[float] = None
    same_predictions: Optional[bool] = None


@dataclasses.dataclass
class FinalModel(Candidate):
    """A fine-tuned, evaluated and exported candidate.

    Attributes:
        key: Hash of the bits and fine-tuning settings; a rerun with the same key reuses it.
        bits: ``{layer: [weight_bits, act_bits]}`` (``None`` for float).
        checkpoint: The fine-tuned state_dict, relative to the output directory.
        qonnx: The export, or ``None`` when export is off.
    """

    key: str = ""
    bits: dict[str, list[Optional[int]]] = dataclasses.field(default_factory=dict)
    val_accuracy: float = 0.0
    test_accuracy: float = 0.0
    latency_cycles: int = 0
    latency_seconds: float = 0.0
    latency_ratio: float = 0.0
    per_layer_cycles: dict[str, int] = dataclasses.field(default_factory=dict)
    size_bits: int = 0
    checkpoint: str = ""
    qonnx: Optional[QonnxResult] = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FinalModel":
        known = {f.name for f in dataclasses.fields(cls)}
        body = {k: v for k, v in data.items() if k in known}
        # records written before candidates carried their method
        body.setdefault("method", "uniform" if body.get("kind") == "baseline" else str(body.get("label", "")).split("-")[0])
        if body.get("qonnx") is not None:
            body["qonnx"] = QonnxResult(**body["qonnx"])
        return cls(**body)


class Results:
    """JSON for records that hold ``float_accuracy`` and a list of ``finals``."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        body = dict(data)
        body["float_accuracy"] = Accuracy(**body["float_accuracy"])
        body["finals"] = [FinalModel.from_dict(f) for f in body["finals"]]
        return cls(**body)


@dataclasses.dataclass
class Summary(Results):
    """What a finished job found: ``summary.json``."""

    recipe: str
    model: str
    backend: str
    profile: str
    sampler: str
    trials: int
    float_accuracy: Accuracy
    uniform8_latency_cycles: int
    uniform8_latency_seconds: float
    float_size_bits: int
    best: Optional[str]
    finals: list[FinalModel]
    elapsed_s: float



@dataclasses.dataclass
class SearchCompute:
    """What one method of ``compare`` spent finding its candidates (fine-tuning, the same for every
    method, is not counted).

    Attributes:
        method: The method.
        trials: Finished trials of its study (searches), ``None`` for strategies and uniform bits.
        seconds: Searches: the summed duration of those trials (what a resumed run does not
            repeat); strategies: wall time of ``propose``; uniform bits: 0.
        evaluations: Distinct allocations the trials evaluated (searches), ``None`` otherwise.
    """

    method: str
    trials: Optional[int]
    seconds: float
    evaluations: Optional[int] = None


@dataclasses.dataclass
class Comparison(Results):
    """Every method on one recipe: ``compare.json``."""

    recipe: str
    float_accuracy: Accuracy
    uniform8_latency_cycles: int
    backend: str
    profile: str
    methods: list[str]
    finals: list[FinalModel]
    compute: list[SearchCompute] = dataclasses.field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Comparison":
        result = super().from_dict(data)
        result.compute = [SearchCompute(**c) for c in data.get("compute", [])]  # absent before 0.3
        return result

