"""``finn.md``: FINN's estimates per model next to the backend's latency."""

from __future__ import annotations

from pathlib import Path


def side_bits(bits: dict[str, list[int]], side: int) -> str:
    """One side of the job's bits per layer in layer order: 0 weights, 1 activations."""
    return "/".join(str(b[side]) for b in bits.values())


def fmt(value, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def settings_line(settings: dict) -> str:
    target = (f"the most frames/s within {settings['lut_budget']:,} LUT" if settings.get("lut_budget")
              else f"{settings['target_fps']:,} frames/s" if settings.get("target_fps") else "FINN's default (PE=SIMD=1)")
    return (f"FINN (finn-plus) estimates for `{settings['fpga_part']}` at {1e3 / settings['clk_ns']:.0f} MHz, "
            f"folding for {target}; analytical estimates only, no Vivado.")


def host_lines(models: list[dict]) -> list[str]:
    first = next((m for m in models if m.get("ok") and m.get("input_quantizer")), None)
    if first is None:
        return []
    q = first["input_quantizer"]
    lo, hi = ((-(2 ** (q["bits"] - 1)) + int(q["narrow"]), 2 ** (q["bits"] - 1) - 1) if q["signed"]
              else (0, 2 ** q["bits"] - 1))
    return ["", f"The accelerator reads {first['accelerator_input_dtype']} and writes "
                f"{first['accelerator_output_dtype']}: the host feeds `clip(round(x / {q['scale']:.6g}), {lo}, {hi})` "
                f"of the normalized input x (the exported input quantizer of `{first['label']}`; each model "
                f"has its own scale, see finn.json), host-side nodes before the accelerator: "
                f"{', '.join(first['host_before']) or 'none'}; it multiplies the output by the model's "
                f"`output_scale` to get logits (a positive scale keeps the arg-max)."]


def write_markdown(report: dict, path: Path) -> Path:
    models = report["models"]
    lines = ["# FINN estimates", "", settings_line(report["settings"]),
             f"Backend latency: `{report.get('backend')}` on profile `{report.get('profile')}` (from summary.json).", "",
             "| model | test acc | weight bits | activation bits | backend cycles | backend latency (us) | FINN frames/s "
             "| FINN max cycles | FINN latency (us, critical path) | LUT | BRAM_18K | DSP | weight dtypes = chosen bits |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in models:
        acc = fmt(100 * m["test_accuracy"], ".2f") + "%" if m.get("test_accuracy") is not None else "-"
        secs = m.get("backend_latency_seconds")
        head = (f"| {m['label']} | {acc} | {side_bits(m['bits'], 0)} | {side_bits(m['bits'], 1)} | "
                f"{fmt(m.get('backend_latency_cycles'))} | {fmt(secs * 1e6 if secs else None, '.2f')} | ")
        if not m["ok"]:
            lines.append(head + f"failed at {m['failed_step']} | | | | | | |")
            continue
        lines.append(head + f"{fmt(m['finn_throughput_fps'])} | {fmt(m['finn_max_cycles'])} | "
                            f"{fmt(m['finn_latency_seconds'] * 1e6, '.1f')} | {fmt(m['LUT'])} | {fmt(m['BRAM_18K'])} | "
                            f"{fmt(m['DSP'])} | {'yes' if m['weight_bits_match'] else 'NO'} |")
    lines += host_lines(models)
    for m in models:
        if not m["ok"]:
            lines += ["", f"## {m['label']}: failed at {m['failed_step']}", "", f"    {m['error']}"]
            continue
        lines += ["", f"## {m['label']}", "", "| FINN layer | layer | weights | input | PE | SIMD | cycles | LUT | BRAM_18K |",
                  "|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {n['node']} | {n['layer']} | {n['weight_dtype']} | {n['input_dtype']} | {n['PE']} | {n['SIMD']} | "
                  f"{fmt(n['cycles'])} | {fmt(n['LUT'])} | {fmt(n['BRAM_18K'])} |" for n in m["layers"]]
        lines += ["- " + p for p in m.get("weight_bit_problems", [])]
    path.write_text("\n".join(lines) + "\n")
    return path
