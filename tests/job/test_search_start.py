"""Where every study of the job starts: the uniform allocations."""

from __future__ import annotations


def test_every_study_starts_at_uniform_widths_widest_first() -> None:
    from types import SimpleNamespace

    from brevitas_amed.job.space import start_allocations

    knobs = {"conv": SimpleNamespace(kind="weight", name="conv"), "act:relu": SimpleNamespace(kind="act", name="act:relu")}
    space = {"conv": [2, 3, 4, 8], "act:relu": [4, 8]}
    qmodel = SimpleNamespace(knobs=knobs, search_space=lambda: space)

    def job(trials: int):
        return SimpleNamespace(qmodel=qmodel, search_space=lambda: space,
                               recipe=SimpleNamespace(search=SimpleNamespace(trials=trials, bit_choices="all")))

    assert start_allocations(job(9)) == [{"w:conv": 8, "a:relu": 8}]  # a tenth of the budget, at least one
    assert start_allocations(job(120)) == [{"w:conv": 8, "a:relu": 8}, {"w:conv": 4, "a:relu": 4},
                                           {"w:conv": 3, "a:relu": 4}, {"w:conv": 2, "a:relu": 4}]
    # A knob without the width takes its next wider choice (at latency levels, the widest of the
    # width's level), not the nearest: 3 bits on {2, 8} is 8; past its widest it takes that.
    space.update({"conv": [3, 6], "act:relu": [2, 8]})
    assert start_allocations(job(120)) == [{"w:conv": 6, "a:relu": 8}, {"w:conv": 3, "a:relu": 8},
                                           {"w:conv": 3, "a:relu": 2}]
