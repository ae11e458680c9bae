"""The command backend: a user program measures each layer; failures are clear and never cached."""

from __future__ import annotations

import importlib.util
import json
import textwrap
import time
from pathlib import Path

import pytest

import hw_backends
from hw_backends import Layer, ProfileError, SimulationError, SimulationTimeout, Workload
from hw_backends.cache import LatencyCache

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# Appends one line per run to the counter file named in params, then answers the shape's channel
# product times the bit product, so answers depend on the layer and on both bit widths.
GOOD = """
import json, sys
request = json.load(sys.stdin)
with open(request["profile"]["params"]["counter"], "a") as f:
    f.write(request["layer"]["name"] + "\\n")
layer = request["layer"]
print("warming up the device")
print(json.dumps({"cycles": layer["in_channels"] * layer["out_channels"] * request["weight_bits"] * request["act_bits"]}))
"""


def program(tmp_path: Path, body: str, name: str = "prog.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def backend_for(tmp_path: Path, body: str, cache=None, timeout_s: float = 20.0):
    counter = tmp_path / "runs.txt"
    profile = {"name": "dev", "clock_hz": 1e9, "command": ["{python}", str(program(tmp_path, body))],
               "timeout_s": timeout_s, "params": {"counter": str(counter)}}
    return hw_backends.get("command", profile=profile, cache=cache), counter


def runs(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def test_good_program_measures_each_shape_and_bits_once_and_caches(tmp_path, small_workload, cache_url):
    backend, counter = backend_for(tmp_path, GOOD)
    bits = small_workload.uniform_bits(4, 8)
    report = backend.latency(small_workload, bits)
    layer = small_workload.layers[0]
    assert report.per_layer[layer.name].cycles == layer.in_channels * layer.out_channels * 32
    assert report.seconds == pytest.approx(report.cycles / 1e9)
    measured = 5 * len(small_workload.layers)  # the monotone envelope reads w4..w8 at a8
    assert runs(counter) == measured
    assert backend.latency(small_workload, bits) == report
    assert runs(counter) == measured
    fresh, _ = backend_for(tmp_path, GOOD)  # same profile, new process-level object: the database answers
    assert fresh.latency(small_workload, bits).cycles == report.cycles
    assert runs(counter) == measured
    assert len(LatencyCache(cache_url)) == measured


def test_equal_shapes_share_one_measurement(tmp_path):
    twins = Workload("twins", (Layer("a", "conv", 8, 8, 6, 6, 3, 3), Layer("b", "conv", 8, 8, 6, 6, 3, 3)))
    backend, counter = backend_for(tmp_path, GOOD, cache=False)
    table = backend.layer_table(twins, (2, 8), (8,))
    assert runs(counter) == 7  # w2..w8 at a8, for the monotone envelope; b reuses a's
    assert table["a"][(2, 8)] == table["b"][(2, 8)] != table["a"][(8, 8)]


def test_failing_program_reports_stderr_and_caches_nothing(tmp_path, small_workload, cache_url):
    failing = GOOD.replace('print("warming up the device")',
                           'sys.stderr.write("device unplugged\\n"); sys.exit(3)')
    backend, counter = backend_for(tmp_path, failing)
    with pytest.raises(SimulationError, match=r"exited with status 3 on layer conv3x3 \(w8/a8\) on command "
                                              r"profile 'dev'; its stderr ends with:\ndevice unplugged") as info:
        backend.latency(small_workload, small_workload.uniform_bits())
    assert info.value.layer == "conv3x3 (w8/a8)" and info.value.profile == "dev"
    assert len(LatencyCache(cache_url)) == 0
    with pytest.raises(SimulationError):
        backend.latency(small_workload, small_workload.uniform_bits())
    assert runs(counter) == 2  # tried again: the failure was not remembered


def test_slow_program_times_out_naming_layer_and_profile(tmp_path, small_workload, cache_url):
    slow = GOOD.replace('print("warming up the device")', 'import time; time.sleep(60)')
    backend, counter = backend_for(tmp_path, slow, timeout_s=0.5)
    start = time.monotonic()
    with pytest.raises(SimulationTimeout, match=r"longer than 0.5 s on layer conv3x3 \(w8/a8\) on command profile "
                                                r"'dev'; raise timeout_s") as info:
        backend.latency(small_workload, small_workload.uniform_bits())
    assert time.monotonic() - start < 10
    assert info.value.layer == "conv3x3 (w8/a8)"
    assert len(LatencyCache(cache_url)) == 0


@pytest.mark.parametrize("printed, message", [
    ("'the device is fast'", r"printed 'the device is fast' last .* must be a JSON object like"),
    ("json.dumps({'latency': 3})", r'printed \'{"latency": 3}\' last'),
    ("json.dumps({'cycles': -5})", r"reported cycles=-5 .* finite non-negative number"),
    ("json.dumps({'cycles': 'fast'})", r"reported cycles='fast'"),
    ("json.dumps({'cycles': float('nan')})", r"reported cycles=nan"),
    ("''", r"printed nothing last"),
])
def test_lying_program_is_rejected_and_not_cached(tmp_path, small_workload, cache_url, printed, message):
    lying = [line for line in GOOD.splitlines()[:-1] if "warming" not in line] + [f"print({printed})"]
    backend, _counter = backend_for(tmp_path, "\n".join(lying))
    with pytest.raises(SimulationError, match=message):
        backend.latency(small_workload, small_workload.uniform_bits())
    assert len(LatencyCache(cache_url)) == 0


def test_missing_program_and_bad_profiles_say_what_to_fix(tmp_path, small_workload):
    backend = hw_backends.get("command", profile={"name": "dev", "clock_hz": 1e9,
                                                  "command": [str(tmp_path / "no-such-program")]}, cache=False)
    with pytest.raises(SimulationError, match="cannot start measurement command .* fix 'command' in the profile"):
        backend.latency(small_workload, small_workload.uniform_bits())
    with pytest.raises(ProfileError, match="command backend needs a YAML with name, clock_hz and command"):
        hw_backends.get("command")
    with pytest.raises(ProfileError, match="field 'command': Field required"):
        hw_backends.get("command", profile={"name": "dev", "clock_hz": 1e9})
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: dev\nclock_hz: 1e9\ncommand: [x]\ntimeout_s: -1\n")
    with pytest.raises(ProfileError, match=rf"command profile {bad}: field 'timeout_s'"):
        hw_backends.get("command", profile=bad)


def test_shipped_example_profile_runs_the_example_program(small_workload):
    spec = importlib.util.spec_from_file_location("measure_latency", EXAMPLES / "measure_latency.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    backend = hw_backends.get("command", profile=EXAMPLES / "command_profile.yaml", cache=False)
    bits = {layer.name: (2 + i % 3, 8 - i) for i, layer in enumerate(small_workload.layers)}
    report = backend.latency(small_workload, bits)
    params = backend.profile.params
    for layer in small_workload.layers:
        expected = example.cycles(json.loads(json.dumps(layer.to_dict())), *bits[layer.name], params)
        assert report.per_layer[layer.name].cycles == expected
    assert "command" in hw_backends.available()
