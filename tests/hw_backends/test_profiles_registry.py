"""Profiles load and fail clearly; the registry finds built-ins, registrations and entry points."""

from __future__ import annotations

import sys

import pytest

import hw_backends
from hw_backends import ProfileError, UnknownBackendError, load_profile, registry


def test_shipped_profiles_state_clock_and_precision():
    assert hw_backends.shipped_profiles() == ["eyeriss", "lowmem", "scalesim"]
    stock = load_profile("scalesim")
    assert (stock.array.rows, stock.array.cols, stock.dataflow, stock.dram.mode) == (32, 32, "ws", "calc")
    assert stock.sram.ifmap_kb == stock.sram.filter_kb == stock.sram.ofmap_kb == 64
    eyeriss = load_profile("eyeriss")
    assert (eyeriss.array.rows, eyeriss.array.cols) == (12, 14)
    assert eyeriss.sram.ifmap_kb + eyeriss.sram.filter_kb + eyeriss.sram.ofmap_kb == 108
    lowmem = load_profile("lowmem")
    assert lowmem.dram.mode == "user" and lowmem.uses_packing
    assert all(load_profile(name).clock_hz > 0 for name in hw_backends.shipped_profiles())


def _copy_of(tmp_path, name: str, old: str, new: str, filename: str = "edited.yaml"):
    from importlib import resources

    text = (resources.files("hw_backends") / "profiles" / f"{name}.yaml").read_text()
    assert old in text
    path = tmp_path / filename
    path.write_text(text.replace(old, new))
    return path


def test_edited_copy_loads_and_hash_follows_content(tmp_path):
    path = _copy_of(tmp_path, "eyeriss", "rows: 12", "rows: 16")
    edited = load_profile(path)
    assert edited.array.rows == 16
    assert edited.content_hash != load_profile("eyeriss").content_hash
    renamed = load_profile(_copy_of(tmp_path, "eyeriss", "name: eyeriss", "name: mine", "renamed.yaml"))
    assert renamed.content_hash == load_profile("eyeriss").content_hash
    assert hw_backends.get("analytic", profile=str(path)).profile.array.rows == 16


@pytest.mark.parametrize("old, new, message", [
    ("dataflow: ws", "dataflow: ws\nbogus: 1", r"field 'bogus': Extra inputs are not permitted"),
    ("rows: 12", "rows: -3", r"field 'array.rows': Input should be greater than 0"),
    ("precision: bitfusion", "precision: magic", r"field 'precision'"),
    ("precision: bitfusion", "precision: packing", r"set dram.mode to 'user'"),
    ("clock_hz: 2.0e+8\n", "", r"field 'clock_hz': Field required"),
    ("rows: 12", "rows: [12", r"not valid YAML"),
])
def test_bad_profile_file_names_field_and_file(tmp_path, old, new, message):
    path = _copy_of(tmp_path, "eyeriss", old, new)
    with pytest.raises(ProfileError, match=message) as info:
        load_profile(path)
    assert str(path) in str(info.value)


def test_unknown_profile_lists_shipped_names():
    with pytest.raises(ProfileError, match="eyeriss, lowmem, scalesim"):
        hw_backends.get("analytic", profile="tpu-v9")


def test_available_and_unknown_backend():
    listing = hw_backends.available()
    assert listing["analytic"] == listing["scalesim"] == ["eyeriss", "lowmem", "scalesim"]
    with pytest.raises(UnknownBackendError, match="'zigzag'; known backends: analytic, command, finn, scalesim"):
        hw_backends.get("zigzag")


@pytest.fixture
def clean_registry(monkeypatch):
    monkeypatch.setattr(registry, "_factories", dict(registry._factories))
    monkeypatch.setattr(registry, "_entry_points_loaded", False)


def test_register_a_backend(clean_registry):
    class Doubled(hw_backends.AnalyticBackend):
        name = "doubled"

    hw_backends.register("doubled", Doubled)
    assert "doubled" in hw_backends.available()
    assert isinstance(hw_backends.get("doubled", profile="eyeriss"), Doubled)
    with pytest.raises(ValueError, match="already registered"):
        hw_backends.register("doubled", hw_backends.AnalyticBackend)


def test_entry_point_plugin_is_loaded_lazily(clean_registry, tmp_path, monkeypatch):
    (tmp_path / "amed_toy_plugin.py").write_text(
        "import hw_backends\n"
        "class ToyBackend(hw_backends.AnalyticBackend):\n"
        "    name = 'toy'\n"
        "    @staticmethod\n"
        "    def available_profiles():\n"
        "        return ['eyeriss']\n")
    dist = tmp_path / "amed_toy_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: amed-toy-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[brevitas_amed.hw_backends]\ntoy = amed_toy_plugin:ToyBackend\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "amed_toy_plugin" not in sys.modules
    assert hw_backends.available()["toy"] == ["eyeriss"]
    assert type(hw_backends.get("toy", profile="eyeriss")).__name__ == "ToyBackend"
