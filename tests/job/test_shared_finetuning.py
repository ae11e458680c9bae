"""Workers share the fine-tuning: a candidate another worker holds is skipped, then waited for."""

from __future__ import annotations

import json
import threading
import time

from brevitas_amed.job.checkpoints import claim
from brevitas_amed.job.context import build_job
from brevitas_amed.job.finetune import MODELS, finetune_all
from brevitas_amed.job.progress import no_progress
from brevitas_amed.job.records import Candidate
from tests.job.tiny import tiny_recipe


def test_a_worker_skips_a_held_candidate_and_the_launcher_waits_for_its_result(tmp_path):
    job = build_job(tiny_recipe(tmp_path / "run", "export.qonnx=false"), no_progress())
    space = job.qmodel.search_space()
    picks = [Candidate(label=f"uniform-{b}", kind="baseline", method="uniform", knob_bits={k: b for k in space})
             for b in (8, 4)]
    lock = job.out / MODELS / ".uniform-8.lock"
    lock.parent.mkdir(exist_ok=True)
    with claim(lock, wait=False) as held:  # another worker is on uniform-8
        assert held
        mine = finetune_all(job, picks, no_progress(), wait=False)
        assert [f.label for f in mine] == ["uniform-4"]  # the helper's share: not the held one
        assert not (job.out / MODELS / "uniform-8.json").exists()
        with claim(lock, wait=False) as again:
            assert not again  # a second claim of a held candidate fails at once

    # the launcher waits for a held candidate, then loads what its holder stored
    release, held = threading.Event(), threading.Event()

    def other_worker():
        with claim(lock, wait=True):
            held.set()
            release.wait(10)
    holder = threading.Thread(target=other_worker)
    holder.start()
    assert held.wait(10)
    record = job.out / MODELS / "uniform-4.json"
    stamp = record.stat().st_mtime_ns
    threading.Timer(1.0, release.set).start()
    started = time.monotonic()
    finals = finetune_all(job, picks, no_progress(), wait=True)
    assert time.monotonic() - started >= 0.9  # it waited for the holder's release
    holder.join()
    assert [f.label for f in finals] == ["uniform-8", "uniform-4"]
    assert record.stat().st_mtime_ns == stamp  # uniform-4 was loaded, not trained again
    assert json.loads((job.out / MODELS / "uniform-8.json").read_text())["label"] == "uniform-8"
