"""Refactors of the backbones keep their parameters: same names, shapes and initial values.

``tests/data/backbone_init.json`` holds, for every built-in backbone x task kind x fitting
built-in variant, a digest of its ``state_dict`` under ``torch.manual_seed(0)``, written by
the code before the backbones took resolved entries and shared one Transformer encoder.
Parameter creation order decides which random numbers each tensor draws, so a reordered
``__init__`` changes the values (and so every seed's training run) while every shape test
still passes; this test is what notices.

Regenerate (only when a change to the weights is intended)::

    python tests/test_backbone_init.py > tests/data/backbone_init.json
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch

DATA = Path(__file__).parent / "data" / "backbone_init.json"
#: task name -> knobs: a token task, a pointer task and an aligned task, so every backbone gets cases
TASKS = {"copy": {"length": 6}, "sort": {}, "mqar": {}}
BACKBONES = ("transformer", "seq2seq", "pointer", "ntm", "mlp", "bottleneck")


def _digest(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def fingerprint(model: torch.nn.Module) -> dict[str, str]:
    """Digests of the state_dict's names and shapes, and of each tensor's sum and position-weighted sum."""
    layout, values = [], []
    for name, t in model.state_dict().items():
        x = t.detach().double().flatten()
        w = torch.arange(1, x.numel() + 1, dtype=torch.float64)
        layout.append(f"{name}:{list(t.shape)}")
        values.append(f"{float(x.sum()):.6g}:{float((x * w).sum()):.6g}")
    return {"layout": _digest(layout), "values": _digest(values)}


def cases() -> list[tuple[str, str, str | None]]:
    import attnzoo
    from attnzoo.backbones import get_backbone
    from attnzoo.registry import get_entry
    from attnzoo.tasks import create_task

    out = []
    for bname in BACKBONES:
        spec, _ = get_backbone(bname)
        for tname, knobs in TASKS.items():
            task = create_task(tname, **knobs)
            for variant in [None, *attnzoo.list_attention()]:
                if variant is not None and get_entry(variant).source != "builtin":
                    continue  # a plugin's variant is not ours to pin
                if spec.fits(task.spec, None if variant is None else attnzoo.get_spec(variant)) is None:
                    out.append((bname, tname, variant))
    return out


def build(bname: str, tname: str, variant: str | None) -> torch.nn.Module:
    from attnzoo.backbones import create_backbone
    from attnzoo.tasks import create_task

    torch.manual_seed(0)
    return create_backbone(bname, create_task(tname, **TASKS[tname]), variant, d_model=16, num_heads=2)


def _key(case: tuple[str, str, str | None]) -> str:
    return "/".join(str(x) for x in case)


def test_every_builtin_backbone_initialises_as_before():
    expected = json.loads(DATA.read_text())
    got = {_key(c): fingerprint(build(*c)) for c in cases()}
    assert sorted(got) == sorted(expected), "the set of (backbone, task, variant) cases changed"
    changed = [k for k in expected if got[k] != expected[k]]
    assert not changed, f"state_dict layout or initial values changed for: {', '.join(changed)}"


@pytest.mark.parametrize("bname,variant", [("transformer", "scaled-dot"), ("seq2seq", "additive"),
                                           ("bottleneck", "location"), ("ntm", "ntm")])
def test_harness_build_matches_create_backbone(bname, variant):
    """The harness path (resolve, then the resolved factory) builds the same weights as create_backbone."""
    from attnzoo.cell import Cell
    from attnzoo.harness.module import build_model, build_task
    from attnzoo.resolve import resolve

    tname = "copy"
    resolved = resolve(Cell(task=tname, backbone=bname, attention=variant, task_kwargs=TASKS[tname],
                            backbone_kwargs={"d_model": 16, "num_heads": 2}))
    task = build_task(resolved)
    torch.manual_seed(0)
    assert fingerprint(build_model(resolved, task)) == fingerprint(build(bname, tname, variant))


if __name__ == "__main__":
    json.dump({_key(c): fingerprint(build(*c)) for c in cases()}, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
