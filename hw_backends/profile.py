"""Hardware profiles: YAML files describing one systolic-array accelerator.

A profile names the PE array, its dataflow, the three SRAM scratchpads, the DRAM interface, the
clock and the precision model. Shipped profiles live in ``hw_backends/profiles/*.yaml``; copy one,
edit it and pass its path wherever a profile name is accepted.
"""

from __future__ import annotations

import functools
import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Literal, TypeVar

import pydantic
import yaml

from hw_backends.errors import ProfileError


class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class ArrayConfig(_Strict):
    """The PE array: ``rows`` x ``cols`` processing elements."""

    rows: int = pydantic.Field(gt=0, le=4096)
    cols: int = pydantic.Field(gt=0, le=4096)


class SramConfig(_Strict):
    """Capacity of each double-buffered scratchpad in KiB of 8-bit words."""

    ifmap_kb: float = pydantic.Field(gt=0)
    filter_kb: float = pydantic.Field(gt=0)
    ofmap_kb: float = pydantic.Field(gt=0)


class DramConfig(_Strict):
    """The DRAM interface.

    ``mode: calc`` is SCALE-Sim's ideal-bandwidth mode (no stalls); ``mode: user`` limits each
    operand's interface to the given 8-bit words per cycle.
    """

    mode: Literal["calc", "user"]
    ifmap_words_per_cycle: int = pydantic.Field(default=10, gt=0)
    filter_words_per_cycle: int = pydantic.Field(default=10, gt=0)
    ofmap_words_per_cycle: int = pydantic.Field(default=10, gt=0)


class Profile(_Strict):
    """One accelerator as the backends see it.

    Attributes:
        name: Short name shown in reports.
        description: One line for ``brevitas-amed backends``.
        clock_hz: Clock frequency; ``report.seconds = report.cycles / clock_hz``.
        array: PE array dimensions.
        dataflow: ``ws`` (weight), ``os`` (output) or ``is`` (input) stationary.
        sram: Scratchpad capacities.
        dram: DRAM interface.
        precision: How bits below 8 speed a layer up (see :mod:`hw_backends.precision`).
    """

    name: str = pydantic.Field(min_length=1)
    description: str = ""
    clock_hz: float = pydantic.Field(gt=0)
    array: ArrayConfig
    dataflow: Literal["ws", "os", "is"]
    sram: SramConfig
    dram: DramConfig
    precision: Literal["bitfusion", "packing", "bitfusion+packing"]

    @pydantic.model_validator(mode="after")
    def _packing_needs_finite_bandwidth(self) -> "Profile":
        if "packing" in self.precision and self.dram.mode == "calc":
            raise ValueError(
                f"precision {self.precision!r} packs low-bit values into memory words, which only "
                "changes latency with a finite bandwidth: set dram.mode to 'user' or precision to "
                "'bitfusion'")
        return self

    @property
    def uses_bitfusion(self) -> bool:
        return "bitfusion" in self.precision

    @property
    def uses_packing(self) -> bool:
        return "packing" in self.precision

    @functools.cached_property
    def content_hash(self) -> str:
        """Hash of every field that changes cycle counts (not name, description or clock)."""
        data = self.model_dump(exclude={"name", "description", "clock_hz"})
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def summary(self) -> str:
        """One line: array, dataflow, SRAM, DRAM, precision, clock."""
        s, d = self.sram, self.dram
        bandwidth = "ideal bandwidth" if d.mode == "calc" else (
            f"DRAM {d.ifmap_words_per_cycle}/{d.filter_words_per_cycle}/{d.ofmap_words_per_cycle} B/cycle")
        return (f"{self.array.rows}x{self.array.cols} {self.dataflow.upper()}, SRAM "
                f"{s.ifmap_kb:g}/{s.filter_kb:g}/{s.ofmap_kb:g} KB, {bandwidth}, {self.precision}, "
                f"{self.clock_hz / 1e6:g} MHz")


def shipped_profiles() -> list[str]:
    """Names of the profiles shipped in ``hw_backends/profiles``."""
    folder = resources.files("hw_backends") / "profiles"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_profile(profile: "str | Path | Profile") -> Profile:
    """Load a shipped profile by name, or a profile YAML file by path.

    Args:
        profile: A shipped name (``"eyeriss"``), a path to a YAML file, or a :class:`Profile`.

    Returns:
        The validated profile.

    Raises:
        ProfileError: If the name is unknown, the file is missing or not YAML, or a field is
            missing, unknown or out of range (the message names the field and the file).
    """
    if isinstance(profile, Profile):
        return profile
    text = str(profile)
    if text in shipped_profiles():
        return _load_shipped(text)
    path = Path(text).expanduser()
    if not path.is_file():
        raise ProfileError(
            f"unknown profile {text!r}: not a shipped profile ({', '.join(shipped_profiles())}) "
            "and no such file; pass one of those names or the path to a profile YAML")
    return _parse(path.read_text(), str(path))


@functools.lru_cache(maxsize=None)
def _load_shipped(name: str) -> Profile:
    source = resources.files("hw_backends") / "profiles" / f"{name}.yaml"
    return _parse(source.read_text(), f"shipped profile {name}.yaml")


def _parse(text: str, origin: str) -> Profile:
    return validated(Profile, read_yaml_mapping(text, f"profile {origin}"), f"profile {origin}")


ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)


def read_yaml_mapping(text: str, origin: str) -> dict:
    """The mapping of fields a profile YAML holds (every kind of profile: this one, a command
    profile, a FINN profile).

    Raises:
        ProfileError: Not YAML, or not a mapping (the message starts with ``origin``).
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProfileError(f"{origin}: not valid YAML ({exc})".replace("\n", " ")) from exc
    if not isinstance(data, dict):
        raise ProfileError(f"{origin}: expected a mapping of fields, got {type(data).__name__}")
    return data


def validated(model: type[ModelT], data: dict, origin: str) -> ModelT:
    """``model`` validated from ``data``.

    Raises:
        ProfileError: A field is missing, unknown or invalid; the message names every such field.
    """
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"field '{'.'.join(str(p) for p in err['loc']) or '(profile)'}': {err['msg']}"
            for err in exc.errors())
        raise ProfileError(f"{origin}: {problems}") from exc
