"""The one read-through path every backend shares: memo, persistent cache, the subclass hook."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from importlib import metadata

import pytest

import hw_backends
from hw_backends import Backend, SimulationError, Workload
from hw_backends.base import dominating
from hw_backends.analytic import estimate
from hw_backends.cache import LatencyCache, cache_key
from hw_backends.command import Measurement
from hw_backends.precision import simulation_job


class Counting(Backend):
    """The analytic model behind the persistent cache; counts and optionally fails specs."""

    name = "counting"

    def __init__(self, profile="eyeriss", cache=None, fail_on: str | None = None) -> None:
        super().__init__(profile, cache)
        self.computed: list[str] = []
        self.fail_on = fail_on

    def simulate_specs(self, specs, progress):
        for spec, label in specs.items():
            if self.fail_on and label.startswith(self.fail_on):
                raise SimulationError(f"cannot simulate {label}", layer=label, profile=self.profile.name)
            self.computed.append(label)
            yield spec, estimate(spec, self.profile)


def test_subclass_computes_only_misses_and_gets_memo_and_cache(small_workload, cache_url):
    bits = small_workload.uniform_bits(4, 8)
    backend = Counting()
    report = backend.latency(small_workload, bits)
    assert report.per_layer == hw_backends.get("analytic", profile="eyeriss").latency(small_workload, bits).per_layer
    # the envelope needs every pair above (4, 8); on Bit Fusion PEs w5..w8 are one spec
    distinct = {simulation_job(layer, backend.profile, *combo).spec
                for layer in small_workload.layers for combo in dominating(4, 8)}
    assert len(small_workload.layers) < len(distinct) < 2 * len(small_workload.layers)  # depthwise: one
    assert len(backend.computed) == len(distinct)
    backend.latency(small_workload, bits)
    assert len(backend.computed) == len(distinct)  # memo
    fresh = Counting()
    assert fresh.latency(small_workload, bits) == report
    assert fresh.computed == []  # persistent cache
    assert len(LatencyCache(cache_url)) == len(distinct)


def test_results_before_a_failure_are_stored_and_the_failure_is_not(small_workload, cache_url):
    bits = small_workload.uniform_bits(8, 8)
    failing = small_workload.layers[2].name
    with pytest.raises(SimulationError, match=f"cannot simulate {failing}"):
        Counting(fail_on=failing).latency(small_workload, bits)
    assert len(LatencyCache(cache_url)) == 2
    retry = Counting()
    retry.latency(small_workload, bits)
    assert retry.computed == [f"{layer.name} (w8/a8)" for layer in small_workload.layers[2:]]


def test_equal_specs_of_differently_named_layers_are_computed_once(small_layers):
    backend = Counting(cache=False)
    first = Workload("a", small_layers[:1])
    renamed = Workload("b", (dataclasses.replace(small_layers[0], name="other"),))
    backend.latency(first, first.uniform_bits())
    backend.latency(renamed, renamed.uniform_bits())
    assert backend.computed == [f"{small_layers[0].name} (w8/a8)"]


def test_analytic_opts_out_of_the_persistent_cache():
    backend = hw_backends.get("analytic", profile="eyeriss")
    assert backend.cache is None
    with pytest.raises(TypeError):
        hw_backends.get("analytic", profile="eyeriss", cache=None)


def test_cache_keys_are_unchanged(small_layers):
    """Existing cache databases stay valid: namespaces and the key function are pinned."""
    layer = small_layers[0]
    sim = hw_backends.get("scalesim", profile="eyeriss", cache=False)
    assert sim.cache_namespace == ("scalesim", "1", metadata.version("scalesim"), sim.profile.content_hash)
    spec = simulation_job(layer, sim.profile, 4, 8).spec
    expected = hashlib.sha256(json.dumps([list(sim.cache_namespace), list(spec.key())]).encode()).hexdigest()
    assert cache_key(sim.cache_namespace, spec.key()) == expected
    command = hw_backends.get("command", profile={"name": "dev", "clock_hz": 1e9, "command": ["x"],
                                                  "params": {"a": 1}}, cache=False)
    assert command.cache_namespace == ("command", "1", "03626f453659d5af")
    assert cache_key(command.cache_namespace, Measurement.of(layer, 4, 8).key()) == (
        "4d3fa3d88b34b131a55d7d826548a57012ee6deca7689f238d74b92d055f58eb")


def test_command_backend_uses_the_base_initialiser(tmp_path):
    backend = hw_backends.get("command", profile={"name": "dev", "clock_hz": 1e9, "command": ["x"]},
                              cache=f"sqlite:///{tmp_path / 'c.db'}")
    assert isinstance(backend.cache, LatencyCache)
    assert repr(backend) == "CommandBackend(profile='dev')"


def test_a_new_cache_file_opens_while_another_process_is_writing_it(tmp_path):
    """Two workers starting together on a new cache file: one holds a write lock in rollback mode,
    where switching to WAL does not wait on SQLite's busy handler. The other waits, then opens."""
    import sqlite3
    import threading

    path = tmp_path / "latency.db"
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("CREATE TABLE other (x)")
    threading.Timer(0.5, lambda: writer.execute("COMMIT")).start()
    cache = LatencyCache(f"sqlite:///{path}")
    assert len(cache) == 0
    with sqlite3.connect(path) as reader:
        assert reader.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    writer.close()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_cache_opens_when_another_worker_creates_its_table_first(database, tmp_path, request):
    """Two workers opening a new cache together: the table appears between one's check and its
    create, which then fails (SQLite: OperationalError; PostgreSQL: ProgrammingError)."""
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'race.db'}" if database == "sqlite" else request.getfixturevalue("postgres")
    other = sa.create_engine(url)
    with other.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS latency"))

    raced = []

    def the_other_worker_first(table, connection, **kw):
        if table.name == "latency" and not raced:
            raced.append(table)
            LatencyCache(url)  # the whole open, on its own connection, committed

    sa.event.listen(sa.Table, "before_create", the_other_worker_first)
    try:
        cache = LatencyCache(url)
    finally:
        sa.event.remove(sa.Table, "before_create", the_other_worker_first)
    assert raced and len(cache) == 0
    with other.connect() as conn:
        assert conn.execute(sa.text("select count(*) from latency")).scalar_one() == 0
