"""FINN's weight datatypes against the bits the job chose: a plain check on FINN's result."""

from __future__ import annotations


def expected_weight_dtype(bits: int) -> str:
    """FINN's datatype for signed ``bits``-bit weights (brevitas-amed's weights are signed)."""
    return "BIPOLAR" if bits == 1 else f"INT{bits}"


def weight_bit_mismatches(layers: list[dict], chosen: dict[str, list[int]]) -> list[str]:
    """Every MVAU/VVAU whose weight datatype is not the chosen weight bits of its layer.

    Args:
        layers: the FINN runner's ``layers`` (one per MVAU/VVAU: ``node``, ``layer``, ``weight_dtype``).
        chosen: the job's bits per layer, ``{layer: [weight_bits, activation_bits]}``.

    Returns:
        One line per problem: a wrong datatype, a FINN layer tied to no chosen layer, or a chosen
        layer that no FINN layer carries. Empty when FINN's weights carry exactly the chosen bits.
    """
    problems = []
    seen = set()
    for node in layers:
        layer = node.get("layer")
        if layer is None or layer not in chosen:
            problems.append(f"{node['node']}: no chosen layer holds its weights ({layer})")
            continue
        seen.add(layer)
        if chosen[layer][0] is None:
            problems.append(f"{node['node']} ({layer}): FINN holds integer weights of a layer the job kept in float")
            continue
        want = expected_weight_dtype(int(chosen[layer][0]))
        if node["weight_dtype"] != want:
            problems.append(f"{node['node']} ({layer}): FINN weight datatype {node['weight_dtype']}, chosen {want}")
    problems += [f"{layer}: chosen {bits[0]}-bit weights but no FINN MVAU/VVAU carries them"
                 for layer, bits in chosen.items() if layer not in seen and bits[0] is not None]
    return problems
