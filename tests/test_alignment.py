"""Gold alignments (Task.gold_alignment): reading the token at a gold position answers the task."""

from __future__ import annotations

import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnzoo.tasks import create_task, list_tasks
from attnzoo.tasks.base import PAD, gold_at, gold_in_order
from attnzoo.tasks.dates import CHARS, MONTHS

#: tasks whose gold position holds the answer token itself
TOKEN_GOLD = {
    "copy": {"length": 6}, "reverse": {"length": 6}, "associative-recall": {"num_pairs": 4},
    "mqar": {"input_seq_len": 24, "num_kv_pairs": 4}, "induction-heads": {},
    "selective-copy": {"seq_len": 16, "num_tokens": 4},
    "mad-in-context-recall": {"seq_len": 24}, "mad-noisy-recall": {"seq_len": 24},
    "mad-selective-copy": {"seq_len": 24, "num_tokens_to_copy": 4},
}
NO_GOLD = ("listops", "mad-compression", "mad-memorization", "mad-fuzzy-recall")


def _batch(name: str, kwargs: dict, seed: int, n: int = 16, long: bool = False):
    task = create_task(name, **kwargs)
    return task, task.generate(n, torch.Generator().manual_seed(seed), long=long)


@pytest.mark.parametrize("name", sorted(TOKEN_GOLD))
@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_the_gold_position_holds_the_answer(name: str, seed: int) -> None:
    task, batch = _batch(name, TOKEN_GOLD[name], seed)
    src, tgt = batch["src"], batch["tgt"]
    scored = batch.get("tgt_mask", torch.ones_like(tgt, dtype=torch.bool))
    gold = task.gold_alignment(batch)  # (N, T, S)
    assert gold.dtype == torch.bool and gold.shape == (*tgt.shape, src.shape[1])
    assert torch.equal(gold.any(dim=2), scored), "every scored position has a gold position, unscored none"
    read = torch.where(gold, src[:, None, :], -1).amax(dim=2)  # (N, T) the token at the gold position
    assert torch.equal(read[scored], tgt[scored])
    assert torch.equal(torch.where(gold, src[:, None, :], 10**6).amin(dim=2)[scored], tgt[scored])


@pytest.mark.parametrize("name", ["copy", "reverse", "induction-heads", "selective-copy", "sort"])
def test_gold_on_the_long_split(name: str) -> None:
    task = create_task(name)
    batch = task.generate(8, torch.Generator().manual_seed(1), long=True)
    gold = task.gold_alignment(batch)
    assert gold.shape == (*batch["tgt"].shape, batch["src"].shape[1])
    if name != "sort":
        scored = batch.get("tgt_mask", torch.ones_like(batch["tgt"], dtype=torch.bool))
        read = torch.where(gold, batch["src"][:, None, :], -1).amax(dim=2)
        assert torch.equal(read[scored], batch["tgt"][scored])


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), length=st.integers(2, 12))
def test_sort_gold_points_at_the_next_smallest(seed: int, length: int) -> None:
    task, batch = _batch("sort", {"length": length}, seed)
    gold = task.gold_alignment(batch)
    assert torch.equal(gold.long().argmax(dim=2), batch["tgt"]) and torch.equal(gold.sum(dim=2), torch.ones_like(batch["tgt"]))
    values = torch.where(gold, batch["src"][:, None, :], 0).sum(dim=2)  # (N, T) the pointed-at values
    assert bool((values[:, 1:] > values[:, :-1]).all())


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_date_gold_fields_determine_the_date(seed: int) -> None:
    task, batch = _batch("date-format", {}, seed, n=24)
    gold = task.gold_alignment(batch)
    assert not gold[:, [4, 7]].any(), "the separators read nothing"
    for src, tgt, g in zip(batch["src"].tolist(), batch["tgt"].tolist(), gold):
        iso = "".join(CHARS[t - 1] for t in tgt)
        field = {name: "".join(CHARS[src[s] - 1] for s in g[t].nonzero().flatten().tolist())
                 for name, t in (("year", 0), ("month", 5), ("day", 8))}
        assert int(field["year"]) % 100 == int(iso[2:4]) and (len(field["year"]) == 2 or field["year"] == iso[:4])
        month = field["month"]
        number = int(month) if month.isdigit() else [m[:3] for m in MONTHS].index(month[:3].title()) + 1
        assert number == int(iso[5:7]) and int(field["day"]) == int(iso[8:10])
        assert torch.equal(g[1], g[0]) and torch.equal(g[6], g[5]) and torch.equal(g[9], g[8])


@pytest.mark.parametrize("name", NO_GOLD)
def test_tasks_without_a_gold_alignment_say_none(name: str) -> None:
    task = create_task(name)
    assert task.gold_alignment(task.generate(2, torch.Generator().manual_seed(0))) is None


@pytest.mark.parametrize("name", list_tasks())
def test_token_names_cover_the_vocabularies(name: str) -> None:
    task = create_task(name)
    batch = task.generate(2, torch.Generator().manual_seed(0))
    assert len(task.token_names()) == task.vocab_size and len(task.target_names()) == task.num_classes
    assert len(task.decode(batch["src"][0])) == batch["src"].shape[1]
    assert all(isinstance(x, str) and x for x in task.decode(batch["tgt"][0], target=True))
    assert task.decode([PAD])[0] == "·"


def test_date_names_spell_the_date() -> None:
    task, batch = _batch("date-format", {}, 3, n=1)
    text = "".join(task.decode(batch["tgt"][0], target=True))
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", text)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.booleans(), min_size=5, max_size=5), min_size=1, max_size=4), st.integers(1, 5))
def test_gold_in_order_and_gold_at(rows: list[list[bool]], count: int) -> None:
    content = torch.tensor(rows)
    pos = gold_in_order(content, count)
    for row, p in zip(rows, pos.tolist()):
        want = [i for i, c in enumerate(row) if c][:count]
        assert p == want + [-1] * (count - len(want))
    gold = gold_at(pos, 5)
    assert torch.equal(gold.any(dim=2), pos >= 0)
