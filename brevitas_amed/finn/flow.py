"""FINN's flow on every exported model of a finished job: ``finn.json`` and ``finn.md``.

Each model runs through ``finn_runner.py`` in FINN's own environment (a subprocess; see
``env.py``), up to FINN's analytical estimate reports. The results are tied back to the job's
records: FINN's throughput, cycles and LUT/BRAM/DSP next to the backend's latency, and a check
that every MVAU/VVAU's weight datatype is the weight bits the job chose for that layer.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from brevitas_amed.finn.check import weight_bit_mismatches
from brevitas_amed.finn.report import write_markdown

RUNNER = Path(__file__).resolve().parent / "finn_runner.py"
DEFAULT_PART = "xc7z020clg400-1"


@dataclass
class FinnSettings:
    """How FINN folds and what it estimates for (one setting for every model of a job)."""

    fpga_part: str = DEFAULT_PART
    clk_ns: float = 10.0
    target_fps: int | None = 10_000  # fold for this throughput ...
    lut_budget: int | None = None  # ... or for the most throughput within this many LUTs
    verify_samples: int = 2

    def runner_args(self) -> list[str]:
        args = ["--fpga-part", self.fpga_part, "--clk-ns", str(self.clk_ns),
                "--verify-samples", str(self.verify_samples)]
        if self.lut_budget:
            args += ["--lut-budget", str(self.lut_budget)]
        elif self.target_fps:
            args += ["--target-fps", str(self.target_fps)]
        return args


def load_summary(output_dir: Path) -> dict:
    path = output_dir / "summary.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the job first (`brevitas-amed recipe ...`)")
    return json.loads(path.read_text())


def run_model(python: Path, model: Path, out: Path, settings: FinnSettings, timeout: float | None) -> dict:
    """FINN's flow on one QONNX model; returns the runner's ``result.json``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").unlink(missing_ok=True)
    cmd = [str(python), str(RUNNER), str(model), str(out), *settings.runner_args()]
    with open(out / "finn.log", "w") as log:
        try:
            subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"ok": False, "failed_step": "timeout", "error": f"FINN ran past {timeout} s"}
    result_file = out / "result.json"
    if not result_file.is_file():
        tail = (out / "finn.log").read_text().strip().splitlines()[-1:] or ["no output"]
        return {"ok": False, "failed_step": "runner", "error": tail[0]}
    return json.loads(result_file.read_text())


def model_entry(final: dict, result: dict, settings: FinnSettings) -> dict:
    """One model's line in ``finn.json``: the job's record next to FINN's estimates."""
    entry = {"label": final["label"], "bits": final["bits"], "test_accuracy": final.get("test_accuracy"),
             "backend_latency_cycles": final.get("latency_cycles"),
             "backend_latency_seconds": final.get("latency_seconds"), "ok": bool(result.get("ok"))}
    if not result.get("ok"):
        entry.update(failed_step=result.get("failed_step"), error=result.get("error"))
        return entry
    perf = result["performance"]
    problems = weight_bit_mismatches(result["layers"], final["bits"])
    entry.update(
        target_fps=result.get("target_fps"), lut_budget=settings.lut_budget,
        finn_throughput_fps=perf["estimated_throughput_fps"], finn_max_cycles=perf["max_cycles"],
        finn_critical_path_cycles=perf["critical_path_cycles"],
        finn_latency_seconds=perf["estimated_latency_ns"] * 1e-9, **result["totals"],
        weight_bits_match=not problems, weight_bit_problems=problems,
        streamlined_max_abs_diff=result.get("streamlined_max_abs_diff"),
        input_quantizer=result.get("input_quantizer"), output_scale=result.get("output_scale"),
        accelerator_input_dtype=result.get("accelerator_input_dtype"),
        accelerator_output_dtype=result.get("accelerator_output_dtype"),
        host_before=result.get("host_before"), host_after=result.get("host_after"),
        layers=[{k: n[k] for k in ("node", "layer", "weight_dtype", "input_dtype", "PE", "SIMD", "cycles",
                                   "LUT", "BRAM_18K", "DSP")} for n in result["layers"]],
        seconds=round(sum(s["seconds"] for s in result.get("steps", [])), 1))
    return entry


STREAMLINE_TOLERANCE = 1e-5


def streamlining_differs(entry: dict) -> bool:
    """Whether FINN's streamlined integer graph computed something else than the QONNX model."""
    diff = entry.get("streamlined_max_abs_diff")
    return diff is not None and diff > STREAMLINE_TOLERANCE


def run_finn(output_dir: str | Path, python: Path, settings: FinnSettings | None = None,
             labels: list[str] | None = None, timeout: float | None = 3600, log=print) -> dict:
    """Run FINN on the job's exported models and write ``finn.json`` and ``finn.md``.

    Args:
        output_dir: a finished job's output folder (``summary.json``, ``models/*.onnx``).
        python: the FINN environment's python (``env.finn_python``).
        settings: folding target, part and clock.
        labels: only these models (default: every model with a QONNX export).
        timeout: seconds one model may take.
        log: called with one line per model.

    Returns:
        The ``finn.json`` content.

    Raises:
        FileNotFoundError: no ``summary.json``, or an unknown label.
        RuntimeError: a model did not pass FINN's flow or the weight-bit check (both files are
            written first).
    """
    out = Path(output_dir)
    settings = settings or FinnSettings()
    summary = load_summary(out)
    finals = [f for f in summary["finals"] if (f.get("qonnx") or {}).get("path")]
    if labels:
        unknown = sorted(set(labels) - {f["label"] for f in finals})
        if unknown:
            raise FileNotFoundError(f"no exported model labelled {', '.join(unknown)} in {out / 'summary.json'}")
        finals = [f for f in finals if f["label"] in labels]
    if not finals:
        raise FileNotFoundError(f"{out / 'summary.json'} lists no model with a QONNX export; run the job with "
                                f"export enabled (export.qonnx: true) first")
    entries = []
    for final in finals:
        start = time.time()
        result = run_model(python, out / final["qonnx"]["path"], out / "finn" / final["label"], settings, timeout)
        entries.append(model_entry(final, result, settings))
        e = entries[-1]
        log(f"{e['label']}: " + (f"{e['finn_throughput_fps']:,.0f} frames/s, {e['LUT']:,.0f} LUT, "
                                 f"{e['BRAM_18K']:,.0f} BRAM_18K, weight bits "
                                 f"{'match' if e['weight_bits_match'] else 'MISMATCH'} ({time.time() - start:.0f} s)"
                                 if e["ok"] else f"failed at {e['failed_step']}: {e['error']}"))
    report = {"job": summary.get("recipe"), "model": summary.get("model"), "backend": summary.get("backend"),
              "profile": summary.get("profile"), "settings": asdict(settings), "models": entries}
    (out / "finn.json").write_text(json.dumps(report, indent=1))
    write_markdown(report, out / "finn.md")
    bad = [e for e in entries if not e["ok"] or not e["weight_bits_match"] or streamlining_differs(e)]
    if bad:
        first = bad[0]
        why = (f"failed at {first['failed_step']}: {first['error']}" if not first["ok"]
               else "; ".join(first["weight_bit_problems"]) if not first["weight_bits_match"]
               else f"streamlined graph differs from the QONNX model by {first['streamlined_max_abs_diff']:g}")
        raise RuntimeError(f"{len(bad)} of {len(entries)} models did not pass FINN: {first['label']} {why} "
                           f"(see {out / 'finn.md'} and {out / 'finn' / first['label'] / 'finn.log'})")
    return report
