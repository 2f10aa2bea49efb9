"""``attnzoo speed`` series with call settings (issue 25, items 3 and 5): ``NAME[key=value]`` rows for
the fused additive kernel, the causal (is_causal) path and the local-attention cliff cases."""

from __future__ import annotations

import pytest
import torch

from attnzoo import speed


def test_split_series() -> None:
    assert speed.split_series("dot") == ("dot", {}, {})
    assert speed.split_series("additive[impl='triton']") == ("additive", {"impl": "triton"}, {})
    assert speed.split_series("local-m[grad=q,window=8]") == ("local-m", {"window": 8}, {"grad": "q"})
    assert speed.split_series("scaled-dot[causal=True]") == ("scaled-dot", {}, {"causal": True})
    with pytest.raises(ValueError, match="grad: expected letters of 'qkv'"):
        speed.split_series("local-m[grad=x]")


def test_extras_follow_the_device() -> None:
    cpu = speed._select("local-m,scaled-dot,additive", torch.device("cpu"))
    assert cpu == ["additive", "local-m", "scaled-dot", "local-m[grad=qkv]", "local-m[grad=q]", "local-m[grad=kv]"]
    cuda = speed._select("scaled-dot", torch.device("cuda"))
    assert "scaled-dot[causal=True]" in cuda
    assert speed._select("dot[impl='sdpa'],nope[x=1]") == ["dot[impl='sdpa']"]


def test_series_rows_run_with_their_settings() -> None:
    rows = speed.run_speed(["local-m[grad=q,window=4]", "scaled-dot[causal=True]", "additive[impl='reference']"],
                           [16], repeats=1, baselines=False, min_sample_ms=0)
    by = {r.variant: r for r in rows}
    assert all(r.status == "ok" for r in rows), [r.error for r in rows]
    assert "only q requiring grad" in by["local-m[grad=q,window=4]"].call and "window=4" in by["local-m[grad=q,window=4]"].call
    assert "causal mask" in by["scaled-dot[causal=True]"].call


def test_cliff_target_reads_ratios() -> None:
    rows = [speed.SpeedRow(v, 64, 1, 8, 1, "cpu", time_ms=t) for v, t in
            (("local-m", 0.5), ("local-m[grad=qkv]", 1.0), ("local-m[grad=q]", 1.1), ("local-m[grad=kv]", 3.0))]
    lines = speed.cliff_target(rows, names=("local-m",))
    assert lines[0].startswith("- local-m[grad=q] / local-m[grad=qkv]: 1.10x")
    assert lines[0].endswith("met") and "NOT" not in lines[0]
    assert "NOT met" in lines[1]
    # without the qkv row the self call is the base
    assert "0.5" not in speed.cliff_target(rows[:1] + rows[2:3], names=("local-m",))[0]
    assert speed.cliff_target(rows[:1] + rows[2:3], names=("local-m",))[0].startswith("- local-m[grad=q] / local-m: 2.20x")
