"""The recipe: one validated YAML file describing a whole AMED job.

Defaults are the built-in digits recipe (offline, CPU, a few minutes), so ``Recipe()`` is a
complete, runnable job and ``recipes/digits.yaml`` spells the same values out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional, Union

import re

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from brevitas_amed.finn.fpga_profile import DEFAULT_PROFILE as FINN_DEFAULT_PROFILE
from brevitas_amed.quant.policy import MAX_BITS, MIN_BITS
from brevitas_amed.training.device_spec import check_device_spec

BIT_RANGE = (MIN_BITS, MAX_BITS)


class RecipeError(ValueError):
    """A recipe that cannot run; the message names the field and what is allowed."""


class RecipeLoader(yaml.SafeLoader):
    """YAML with YAML 1.2 numbers: ``1e-3`` is a float (YAML 1.1 reads it as a string)."""


RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
               r"|[0-9][0-9_]*[eE][-+]?[0-9]+|\.inf|\.Inf|\.INF|\.nan|\.NaN|\.NAN)$"),
    list("-+0123456789."))


class _Section(BaseModel):
    # strict: no bool as int, no float as int, no string as number (a YAML typo is an error)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True)


class PretrainConfig(_Section):
    """Training of the float model when no weights are given (the built-in digits model)."""

    epochs: int = Field(15, ge=0, description="epochs of float training from scratch")
    lr: float = Field(0.01, gt=0)


class ModelConfig(_Section):
    name: str = Field("digits_cnn", min_length=1, description="torchvision name, digits_cnn, or package.module:function")
    weights: Optional[str] = Field(None, description="none (train from scratch), torchvision, or a state_dict file")
    pretrain: PretrainConfig = PretrainConfig()

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: Optional[str]) -> Optional[str]:
        return None if value in (None, "", "none") else value


class DataConfig(_Section):
    name: Literal["digits", "imagefolder", "synthetic"] = "digits"
    path: Optional[str] = Field(None, description="imagefolder root with train/ and val/")
    image_size: Optional[int] = Field(None, ge=8, description="resize (digits) or crop size (imagefolder)")
    channels: Literal[1, 3] = 1
    batch_size: int = Field(64, ge=2)
    num_workers: int = Field(0, ge=0)
    synthetic_samples: int = Field(256, ge=30)

    @model_validator(mode="after")
    def _path_for_imagefolder(self) -> "DataConfig":
        if self.name == "imagefolder" and not self.path:
            raise ValueError("data.path is required for imagefolder: set it to a folder with train/ and val/ (ImageNet layout)")
        return self


class QuantizationConfig(_Section):
    weight_bits: list[int] = Field(default_factory=lambda: [2, 3, 4, 6, 8], min_length=1)
    act_bits: list[int] = Field(default_factory=lambda: [2, 3, 4, 6, 8], min_length=1)
    first_layer: Union[int, Literal["float", "search"]] = 8
    last_layer: Union[int, Literal["float", "search"]] = 8
    per_channel_weights: bool = True
    calibration_batches: int = Field(8, ge=1)

    @field_validator("weight_bits", "act_bits")
    @classmethod
    def _bits(cls, value: list[int]) -> list[int]:
        bad = [b for b in value if not BIT_RANGE[0] <= b <= BIT_RANGE[1]]
        if bad:
            raise ValueError(f"bit widths must be in {BIT_RANGE[0]}..{BIT_RANGE[1]}, got {bad}")
        return sorted(set(value))

    @field_validator("first_layer", "last_layer")
    @classmethod
    def _layer_policy(cls, value):
        if isinstance(value, int) and not BIT_RANGE[0] <= value <= BIT_RANGE[1]:
            raise ValueError(f"use a bit width in {BIT_RANGE[0]}..{BIT_RANGE[1]}, 'float' or 'search', got {value}")
        return value


class HardwareConfig(_Section):
    backend: str = Field("scalesim", min_length=1, description="a registered hw_backends name")
    profile: str = Field("scalesim", min_length=1, description="a shipped profile name or a profile YAML path")
    cache: Optional[str] = Field(None, description="latency cache database URL (default: the user cache dir)")

    @model_validator(mode="before")
    @classmethod
    def _finn_default_profile(cls, data: Any) -> Any:
        # the default profile is a systolic array; the finn backend's default is an FPGA part
        if isinstance(data, dict) and data.get("backend") == "finn" and "profile" not in data:
            return {**data, "profile": FINN_DEFAULT_PROFILE}
        return data

    @model_validator(mode="after")
    def _cache_needs_a_cached_backend(self) -> "HardwareConfig":
        if self.cache and self.backend == "analytic":
            raise ValueError(f"hardware.cache={self.cache!r}: the analytic backend computes each layer in milliseconds "
                             f"and keeps no cache; remove hardware.cache, or use backend scalesim, finn or command")
        return self


#: What a study stamped before a setting existed ran with, where that differs from today's default:
#: such a stamp resumes only with this value (every width was searched before ``bit_choices``).
UNSTAMPED_SETTINGS: dict[str, dict[str, Any]] = {"search": {"bit_choices": "all"}}


class SearchConfig(_Section):
    sampler: Literal["amed", "tpe", "nsga2", "random"] = "amed"
    trials: int = Field(120, ge=1)
    storage: Optional[str] = Field(None, description="Optuna storage: an SQLAlchemy URL (sqlite:///..., "
                                   "postgresql+psycopg://...) or journal:PATH (default: sqlite file in output_dir)")
    study_name: Optional[str] = None
    warmup_epochs: int = Field(3, ge=0, description="shared-weight QAT at random bits before the search")
    bit_choices: Literal["all", "latency_levels"] = Field(
        "latency_levels", description="widths the samplers search per knob: all, or the widest of each latency level (a "
                           "narrower width no faster on the hardware only costs accuracy; weights keep every "
                           "width under quality.size_limit_kb)")
    temperature_unit: Literal["noise", "score"] = Field(
        "noise", description="amed: temperatures in units of one trial's accuracy noise (the binomial standard "
                             "error of the accuracy threshold over the evaluated validation images) or of the score")
    temperature_start: float = Field(2.0, gt=0, description="amed: initial temperature (see temperature_unit)")
    temperature_end: float = Field(0.5, gt=0, description="amed: final temperature, reached at the last trial")
    reevaluate_after: Optional[int] = Field(3, ge=1, description="amed: after this many rejected trials in a row, "
                                                                 "re-evaluate the current state (null: never)")
    max_evaluations: int = Field(3, ge=1, description="amed: most evaluations of one state re-evaluation asks for")
    proxy: Literal["adapt", "batchnorm"] = Field(
        "adapt", description="what a trial measures before its validation accuracy: adapt_steps QAT steps from "
                             "the shared weights, or no training with batch-norm statistics re-estimated")
    adapt_steps: int = Field(10, ge=0, description="per-trial QAT steps at the proposed bits (proxy adapt)")
    adapt_lr: float = Field(1e-3, gt=0)
    bn_batches: int = Field(8, ge=1, description="training batches the batchnorm proxy re-estimates on")
    draws: int = Field(1, ge=1, description="a trial's accuracy: the mean of this many draws (other batches)")
    eval_batches: Optional[int] = Field(None, ge=1, description="validation batches per trial (default all)")
    timeout_s: Optional[float] = Field(None, gt=0)
    heartbeat_s: int = Field(10, ge=1, description="seconds between a worker's heartbeats; a trial whose worker "
                                                    "is silent for twice this is failed and retried once")


    @model_validator(mode="after")
    def _cooling(self) -> "SearchConfig":
        if self.temperature_end > self.temperature_start:
            raise ValueError("search.temperature_end must not exceed search.temperature_start")
        return self


class QualityConfig(_Section):
    beta: float = Field(0.3, ge=0, description="accuracy traded for removing all uniform-8-bit latency")
    accuracy_threshold: Optional[float] = Field(None, ge=0, le=1)
    max_accuracy_drop: Optional[float] = Field(0.01, ge=0, le=1, description="threshold = float accuracy - this")
    penalty: float = Field(10.0, ge=0)
    size_limit_kb: Optional[float] = Field(None, gt=0, description="hard limit on weight storage")

    @model_validator(mode="after")
    def _one_threshold(self) -> "QualityConfig":
        if self.accuracy_threshold is not None and self.max_accuracy_drop is not None:
            raise ValueError("give either quality.accuracy_threshold or quality.max_accuracy_drop, not both (set one to null)")
        return self


class FinetuneConfig(_Section):
    top_k: int = Field(3, ge=1, description="Pareto-best trials to fine-tune, best quality first")
    epochs: int = Field(6, ge=0)
    lr: float = Field(2e-3, gt=0)
    distill: bool = Field(True, description="distil from the float model's logits")
    distill_temperature: float = Field(2.0, gt=0)
    baselines: list[int] = Field(default_factory=lambda: [8, 6, 4], description="uniform bit widths fine-tuned alike")
    selection_z: float = Field(1.0, ge=0, description="the best model must clear the accuracy floor on validation by "
                                                      "this many binomial standard errors of the split")
    candidates: Literal["quality", "spread"] = Field(
        "spread", description="which searched allocations to fine-tune: quality = the top_k best quality scores of "
                               "the front of mean accuracies; spread = the best score, then faster front points spread "
                               "in latency down to spread_margin under the accuracy floor")
    spread_margin: float = Field(0.01, ge=0, le=1, description="with candidates: spread, how far under the search's "
                                                                "accuracy floor (mean search accuracy) a candidate may read")

    @field_validator("baselines")
    @classmethod
    def _baselines(cls, value: list[int]) -> list[int]:
        bad = [b for b in value if not BIT_RANGE[0] <= b <= BIT_RANGE[1]]
        if bad:
            raise ValueError(f"baseline bit widths must be in {BIT_RANGE[0]}..{BIT_RANGE[1]}, got {bad}")
        return sorted(set(value), reverse=True)


class ExportConfig(_Section):
    qonnx: bool = True
    verify: bool = True
    tolerance: float = Field(1e-3, gt=0, description="max |QONNX - PyTorch| allowed, relative to the output "
                                                     "range (one step of an output quantizer is always allowed)")
    verify_samples: int = Field(8, ge=1, description="test inputs executed with qonnx")


class Recipe(_Section):
    """A whole job. ``Recipe()`` is the built-in digits recipe."""

    name: str = Field("digits", min_length=1)
    seed: int = 0
    output_dir: str = Field("runs/digits", min_length=1)
    threads: Optional[int] = Field(1, ge=1, description="torch threads; 1 is fastest for small models, null = all cores")
    device: str = Field("auto", description="auto (first CUDA device, else CPU), cpu, cuda or cuda:N; export and "
                                            "QONNX checks always run on the CPU")
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    quantization: QuantizationConfig = QuantizationConfig()
    hardware: HardwareConfig = HardwareConfig()
    search: SearchConfig = SearchConfig()
    quality: QualityConfig = QualityConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    export: ExportConfig = ExportConfig()

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        return check_device_spec(value)

    @model_validator(mode="after")
    def _cross_checks(self) -> "Recipe":
        q = self.quantization
        for b in self.finetune.baselines:
            if b not in q.weight_bits or b not in q.act_bits:
                raise ValueError(f"finetune.baselines: {b} bits is not in quantization.weight_bits {q.weight_bits} "
                                 f"and act_bits {q.act_bits}; add it there or remove the baseline")
        if self.data.name == "digits" and self.model.name.startswith(("resnet", "mobilenet")) and self.data.channels != 3:
            raise ValueError(f"model {self.model.name} takes RGB input: set data.channels: 3 (and data.image_size: 32 or more)")
        return self

    def search_affecting(self) -> dict[str, Any]:
        """What a stored study depends on: resuming with other values would mix results.

        The seed, model, data, quantization, hardware and quality sections, and the search settings
        that shape each trial's accuracy or parameters (shared-weight epochs, the bit choices, the proxy and its steps, rate,
        batches and draws, evaluation batches). Everything else (trial budget, sampler, temperatures, storage, fine-tuning, export,
        threads, device, data loader workers, the latency cache) may change between runs.
        """
        return self.model_dump(include={"seed": True, "model": True, "data": True, "quantization": True,
                                        "hardware": True, "quality": True,
                                        "search": {"warmup_epochs", "bit_choices", "proxy", "adapt_steps", "adapt_lr", "bn_batches",
                                                   "draws", "eval_batches"}},
                               exclude={"hardware": {"cache"}, "data": {"num_workers"}})


def _format_error(exc: ValidationError, source: str) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "recipe"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        parent = _section_of(err["loc"][:-1])
        allowed = ", ".join(parent.model_fields) if parent else ""
        msg = f"unknown field; allowed here: {allowed}"
    elif "input" in err and err["type"] not in ("missing",) and not isinstance(err["input"], (dict, list)):
        msg = f"{msg} (got {err['input']!r})"
    more = f" (and {len(exc.errors()) - 1} more problems)" if len(exc.errors()) > 1 else ""
    return f"{source}: {where}: {msg}{more}"


def _section_of(loc) -> Optional[type[BaseModel]]:
    cls: type[BaseModel] = Recipe
    for part in loc:
        field = cls.model_fields.get(str(part))
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return None
        cls = field.annotation
    return cls


def _parse_value(text: str) -> Any:
    try:
        return yaml.load(text, Loader=RecipeLoader)
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a raw recipe dict.

    Raises:
        RecipeError: An override without ``=`` or whose path runs through a non-section.
    """
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"--set {item!r}: use key=value, e.g. --set search.trials=50")
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise RecipeError(f"--set {item!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = _parse_value(raw)
    return data


def load_recipe(path: Optional[str | Path] = None, overrides: Optional[list[str]] = None) -> Recipe:
    """Read and validate a recipe; ``path=None`` is the built-in digits recipe.

    Raises:
        RecipeError: Unreadable file, bad YAML, or a field that fails validation (one line that
            names the field and what is allowed).
    """
    source = "built-in digits recipe"
    data: dict[str, Any] = {}
    if path is not None:
        source = str(path)
        p = Path(path)
        if not p.is_file():
            raise RecipeError(f"recipe file {source!r} does not exist; give a path like recipes/digits.yaml")
        try:
            data = yaml.load(p.read_text(encoding="utf-8"), Loader=RecipeLoader) or {}
        except UnicodeDecodeError as exc:
            raise RecipeError(f"{source}: not a text recipe (byte {exc.start} is not UTF-8); give a YAML file "
                              f"like recipes/digits.yaml") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise RecipeError(f"{source}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
        if not isinstance(data, dict):
            raise RecipeError(f"{source}: the recipe must be a mapping of sections (model:, data:, ...), got {type(data).__name__}")
    data = apply_overrides(data, overrides or [])
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(_format_error(exc, source)) from None


def dump_recipe(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)
