"""FPGA profiles of the ``finn`` latency backend: a part, a clock, a target throughput, a cost.

Shipped profiles live in ``brevitas_amed/finn/profiles/*.yaml`` (``zynq7020``); copy one, edit it
and pass its path wherever a profile name is accepted.
"""

from __future__ import annotations

import functools
import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Mapping

import pydantic

from hw_backends.errors import ProfileError
from hw_backends.profile import read_yaml_mapping, validated

DEFAULT_PROFILE = "zynq7020"


class FpgaProfile(pydantic.BaseModel):
    """One FPGA dataflow target as FINN folds and estimates it.

    Attributes:
        name: Short name shown in reports.
        description: One line for listings.
        part: FINN's ``fpga_part`` (e.g. ``xc7z020clg400-1``).
        clock_hz: The accelerator's clock; with ``target_fps`` it sets FINN's folding target.
        target_fps: Frames per second every layer is folded for (FINN's ``target_fps``).
        impl_style: FINN's ``preferred_impl_style`` for MVAU/VVAU; FINN falls back to ``hls``
            where its RTL unit cannot take a layer (as ``SpecializeLayers`` does).
        cost: The estimate the backend reports as a layer's cost (in ``LayerLatency.cycles``).
        mvau_wwidth_max: SetFolding's limit on weight bits x SIMD per PE.
        timeout_s: Longest one FINN call (all missing layers of one request) may take.
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    name: str = pydantic.Field(min_length=1)
    description: str = ""
    part: str = pydantic.Field(min_length=1)
    clock_hz: float = pydantic.Field(gt=0)
    target_fps: float = pydantic.Field(gt=0)
    impl_style: Literal["hls", "rtl"] = "hls"
    cost: Literal["LUT", "DSP", "BRAM_18K"] = "LUT"
    mvau_wwidth_max: int = pydantic.Field(default=36, gt=0)
    timeout_s: float = pydantic.Field(default=900.0, gt=0)

    @pydantic.model_validator(mode="after")
    def _cost_fits_style(self) -> "FpgaProfile":
        if self.impl_style == "rtl" and self.cost == "LUT":
            raise ValueError("impl_style rtl with cost LUT: FINN's RTL MVAU multiplies in DSPs and estimates "
                             "0 LUT; use cost: DSP, or impl_style: hls")
        if self.target_cycles < 1:
            raise ValueError(f"target_fps {self.target_fps:g} is above one frame per cycle at clock_hz "
                             f"{self.clock_hz:g}; lower target_fps")
        return self

    @property
    def target_cycles(self) -> int:
        """FINN's folding target: cycles per frame, ``clock_hz / target_fps``."""
        return int(self.clock_hz // self.target_fps)

    @functools.cached_property
    def content_hash(self) -> str:
        """Hash of every field that changes FINN's estimates (all but ``description`` and ``timeout_s``)."""
        data = self.model_dump(exclude={"description", "timeout_s"})
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def shipped_fpga_profiles() -> list[str]:
    """Names of the profiles shipped in ``brevitas_amed/finn/profiles``."""
    folder = resources.files("brevitas_amed.finn") / "profiles"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_fpga_profile(profile: "str | Path | FpgaProfile | Mapping[str, Any]") -> FpgaProfile:
    """An :class:`FpgaProfile` from a shipped name, a YAML path, a mapping of its fields, or itself.

    Raises:
        ProfileError: The name is unknown and no such file exists, the file is not YAML, or a field
            is missing, unknown or invalid (the message names the field and the file).
    """
    if isinstance(profile, FpgaProfile):
        return profile
    if isinstance(profile, Mapping):
        return validated(FpgaProfile, dict(profile), "FINN profile")
    text = str(profile)
    shipped = shipped_fpga_profiles()
    if text in shipped:
        path = Path(str(resources.files("brevitas_amed.finn") / "profiles" / f"{text}.yaml"))
    else:
        path = Path(text).expanduser()
        if not path.is_file():
            raise ProfileError(f"unknown FINN profile {text!r}: not a shipped FINN profile ({', '.join(shipped)}) "
                               "and no such file; pass one of those names or the path to a FINN profile YAML")
    origin = f"FINN profile {path}"
    return validated(FpgaProfile, read_yaml_mapping(path.read_text(), origin), origin)
