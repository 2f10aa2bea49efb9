"""Every registered task keeps the batch contract, is seeded, and is solved by its own src."""

from __future__ import annotations

import datetime as dt

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attnzoo.tasks import PAD, Task, create_task, get_task_class, list_tasks

ALL = list_tasks()
BUILTIN = {
    "copy", "reverse", "associative-recall", "mqar", "selective-copy", "induction-heads", "sort", "listops",
    "date-format",
}  # fmt: skip
N = 64


def gen(task: Task, seed: int, n: int = N, long: bool = False) -> dict[str, torch.Tensor]:
    return task.generate(n, torch.Generator().manual_seed(seed), long=long)


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def assert_solved(task: Task, batch: dict) -> None:
    for i, (src, tgt) in enumerate(zip(batch["src"].tolist(), batch["tgt"].tolist())):
        assert task.solve(src) == tgt, f"row {i}: src={src}"


def test_builtin_tasks_are_registered():
    assert BUILTIN <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_spec_and_docstring(name):
    cls = get_task_class(name)
    assert cls.spec.name == name
    assert cls.__doc__ and "Chance" in cls.__doc__ and "Knobs" in cls.__doc__
    if name in ("associative-recall", "mqar", "induction-heads", "selective-copy"):
        assert cls.spec.content_addressed


@pytest.mark.parametrize("name", ALL)
def test_generation_is_seeded(name):
    task = create_task(name)
    assert same(gen(task, 1), gen(task, 1))
    assert not torch.equal(gen(task, 1)["src"], gen(task, 2)["src"])


@pytest.mark.parametrize("name", ALL)
def test_batch_contract(name):
    task = create_task(name)
    splits = [False, True] if task.spec.length_generalization else [False]
    for long in splits:
        batch = gen(task, 0, long=long)
        task.check_batch(batch, long=long)
        s, t = (task.long_src_len, task.long_tgt_len) if long else (task.src_len, task.tgt_len)
        assert batch["src"].shape == (N, s) and batch["src"].dtype == torch.long
        assert batch["tgt"].shape == (N, t) and batch["tgt"].dtype == torch.long
        assert 0 <= batch["src"].min() and batch["src"].max() < task.vocab_size
        assert 0 <= batch["tgt"].min() and batch["tgt"].max() < task.num_classes
        scored = batch["tgt"][batch["tgt_mask"]] if "tgt_mask" in batch else batch["tgt"]
        assert (scored != PAD).all()
        if "tgt_mask" in batch:  # unscored positions hold PAD
            assert (batch["tgt"][~batch["tgt_mask"]] == PAD).all()
        if task.spec.output == "pointers":
            assert batch["tgt"].max() < s
        if task.spec.slices:
            assert set(batch["slice"].tolist()) == set(range(len(task.spec.slices)))


@pytest.mark.parametrize("name", ALL)
def test_solver_agrees_with_generator(name):
    task = create_task(name)
    assert_solved(task, gen(task, 3))
    if task.spec.length_generalization:
        assert_solved(task, gen(task, 3, long=True))


@pytest.mark.parametrize("name", ALL)
def test_fixed_splits(name):
    task = create_task(name)
    splits = ["val", "test"] + (["test_long"] if task.spec.length_generalization else [])
    data = {s: task.fixed_split(s, seed=0) for s in splits}
    assert data["val"]["src"].shape[0] == task.val_size and data["test"]["src"].shape[0] == task.test_size
    for s in splits:
        assert same(data[s], task.fixed_split(s, seed=0))
        assert not torch.equal(data[s]["src"], task.fixed_split(s, seed=1)["src"])
    assert not torch.equal(data["val"]["src"], data["test"]["src"][: task.val_size])
    if task.spec.length_generalization:
        assert task.long_src_len > task.src_len
        assert data["test_long"]["src"].shape[1] == task.long_src_len > data["test"]["src"].shape[1]
    else:
        with pytest.raises(ValueError, match="test_long"):
            task.fixed_split("test_long", seed=0)


@pytest.mark.parametrize("name", ALL)
def test_training_batches_differ_from_eval_splits(name):
    task = create_task(name)
    train = gen(task, 0, n=task.val_size)
    assert not torch.equal(train["src"], task.fixed_split("val", seed=0)["src"])


@pytest.mark.parametrize("name", ALL)
def test_knobs_round_trip(name):
    task = create_task(name)
    knobs = task.knobs()
    again = create_task(name, **knobs)
    assert again.knobs() == knobs
    assert same(gen(task, 5), gen(again, 5))
    assert name in repr(task) or type(task).__name__ in repr(task)


@pytest.mark.parametrize("name", ALL)
def test_unknown_knob_lists_accepted(name):
    task = create_task(name)
    with pytest.raises(TypeError, match="no_such_knob") as info:
        create_task(name, no_such_knob=1)
    for knob in task.knobs():
        assert knob in str(info.value)


@pytest.mark.parametrize("name", ALL)
def test_chance_is_a_probability(name):
    c = create_task(name).chance()
    assert 0.0 < c < 1.0


@pytest.mark.parametrize("name", ALL)
def test_check_batch_catches_a_pad_target(name):
    task = create_task(name)
    batch = gen(task, 0, n=4)
    batch["tgt"] = torch.zeros_like(batch["tgt"])
    with pytest.raises(ValueError, match="PAD"):
        task.check_batch(batch)


@pytest.mark.parametrize(
    ("name", "knobs"),
    [
        ("copy", {"length": 0}),
        ("copy", {"length": 5, "long_length": 5}),
        ("associative-recall", {"num_pairs": 12, "num_values": 10}),
        ("mqar", {"num_kv_pairs": 40, "vocab_size": 64}),
        ("mqar", {"input_seq_len": 20, "num_kv_pairs": 8}),
        ("mqar", {"placement": "zipf"}),
        ("mqar", {"num_queries": 9}),
        ("selective-copy", {"seq_len": 8, "num_tokens": 8}),
        ("induction-heads", {"name_len": 5, "num_name_pieces": 4}),
        ("sort", {"length": 10, "num_values": 15}),
        ("listops", {"min_length": 70}),
        ("listops", {"max_depth": 2, "max_args": 3, "min_length": 6}),
    ],
)
def test_bad_knob_values_raise(name, knobs):
    with pytest.raises(ValueError, match=next(iter(knobs)).split("_")[0]):
        create_task(name, **knobs)


# -- task-specific checks ----------------------------------------------------


def test_copy_and_reverse():
    src = gen(create_task("copy"), 0)["src"]
    assert torch.equal(gen(create_task("reverse"), 0)["tgt"], src.flip(1))


def test_associative_recall_layout():
    task = create_task("associative-recall", num_pairs=4)
    b = gen(task, 0)
    keys, values = b["src"][:, 0:8:2], b["src"][:, 1:8:2]
    assert (b["src"][:, -2] == task.QUERY).all()
    assert all(len(set(r)) == 4 for r in keys.tolist()) and all(len(set(r)) == 4 for r in values.tolist())
    assert (keys < 2 + task.num_keys).all() and (values >= 2 + task.num_keys).all()
    assert task.chance() == 0.25


def test_mqar_follows_zoology():
    task = create_task("mqar", vocab_size=64, input_seq_len=64, num_kv_pairs=8)
    b = gen(task, 0, n=2000)
    src, half = b["src"], 32
    assert (src[:, 0:16:2] < half).all() and (src[:, 0:16:2] > 0).all()  # keys from the lower half
    assert (src[:, 1:16:2] >= half).all()  # values from the upper half
    section = src[:, 16:]
    is_query = section < half
    assert (is_query.sum(1) == 8).all()  # every key is queried once
    assert not is_query[:, 1::2].any()  # queries sit at even offsets
    # the power law (a = 0.01) crowds queries toward the start of the query section
    first_half = is_query[:, :24].float().mean() / is_query[:, 24:].float().mean()
    assert first_half > 2
    uniform = gen(create_task("mqar", placement="uniform"), 0, n=2000)["src"][:, 16:] < half
    assert 0.7 < uniform[:, :24].float().mean() / uniform[:, 24:].float().mean() < 1.4
    padded = gen(create_task("mqar", random_non_queries=False), 0)["src"][:, 16:]
    assert ((padded == PAD) | (padded < half)).all()


def test_mqar_fewer_queries():
    task = create_task("mqar", num_kv_pairs=8, num_queries=3)
    b = gen(task, 0)
    assert b["tgt"].shape == (N, 64)  # aligned with src, scored at the 3 query positions
    assert (b["tgt_mask"].sum(1) == 3).all()
    assert_solved(task, b)


def test_mqar_is_scored_in_place_at_each_query():
    """As Zoology scores it: the answer sits at the query token's own position, PAD elsewhere."""
    task = create_task("mqar", vocab_size=32, input_seq_len=24, num_kv_pairs=4)
    assert task.spec.aligned and task.tgt_len == task.src_len == 24
    b = gen(task, 0, n=200)
    src, tgt, mask = b["src"], b["tgt"], b["tgt_mask"]
    half, m = 16, 4
    assert not mask[:, : 2 * m].any()
    assert torch.equal(mask[:, 2 * m :], (src[:, 2 * m :] > 0) & (src[:, 2 * m :] < half))
    for i in range(len(src)):
        table = dict(zip(src[i, 0 : 2 * m : 2].tolist(), src[i, 1 : 2 * m : 2].tolist()))
        for pos in mask[i].nonzero().flatten().tolist():
            assert tgt[i, pos].item() == table[src[i, pos].item()]


def test_induction_heads_slices():
    task = create_task("induction-heads", name_frac=0.5)
    b = gen(task, 0, n=1000)
    names = b["slice"] == 1
    assert 0.4 < names.float().mean() < 0.6
    assert b["tgt_mask"][names].all() and (b["tgt_mask"][~names].sum(1) == 1).all()
    assert (b["tgt"][names] > task.num_symbols).all() and (b["tgt"][~names, 0] <= task.num_symbols).all()
    trigger = b["src"][:, -1:]
    assert ((b["src"] == trigger).sum(1) == 2).all()  # the trigger occurs exactly twice
    pieces = torch.nn.functional.one_hot(b["src"], task.vocab_size)[..., task.num_symbols + 1 :].sum(1)
    assert (pieces <= 1).all()  # every name piece at most once: no bag-of-tokens shortcut to the name
    assert (pieces.sum(1) == task.distractors + task.name_len * names.long()).all()
    only_single = create_task("induction-heads", name_frac=0.0)
    assert only_single.chance() == pytest.approx(1 / 15)


def test_selective_copy_is_sparse():
    task = create_task("selective-copy")
    b = gen(task, 0, long=True)
    assert ((b["src"] != task.BLANK).sum(1) == task.num_tokens).all()


def test_sort_pointers():
    task = create_task("sort")
    assert task.num_classes == task.long_src_len  # sized for the long split
    b = gen(task, 0)
    assert (b["src"][:, 0] == task.MARK).all()
    ranked = b["src"].gather(1, b["tgt"])
    assert (ranked[:, 1:] > ranked[:, :-1]).all()
    assert (b["tgt"] >= 1).all()


def test_listops_examples_and_chance():
    task = create_task("listops")
    ids = {tok: i for i, tok in enumerate(("<pad>", *map(str, range(10)), "[MIN", "[MAX", "[MED", "[SM", "]"))}
    enc = lambda s: [ids[w] for w in s.split()]  # noqa: E731
    assert task.solve(enc("[MAX 2 9 [MIN 4 7 ] 0 ]")) == [ids["9"]]
    assert task.solve(enc("[MED 1 2 4 8 ]")) == [ids["3"]]  # int(np.median) = int(3.0)
    assert task.solve(enc("[SM 5 6 [MED 3 4 ] ]")) == [ids["4"]]  # 5 + 6 + int(3.5) = 14 -> 4
    b = gen(task, 0, n=2000)
    lengths = (b["src"] != PAD).sum(1)
    assert lengths.min() >= task.min_length and lengths.max() <= task.max_length
    freq = b["tgt"][:, 0].bincount().max().item() / 2000
    assert abs(task.chance() - freq) < 0.03


def test_date_format_solver_reads_human_dates():
    from attnzoo.tasks.dates import CHARS

    task = create_task("date-format")
    enc = lambda s: [CHARS.index(c) + 1 for c in s]  # noqa: E731
    cases = {
        "3 March 2021": "2021-03-03",
        "03/03/21": "2021-03-03",
        "Mar 3, 2021": "2021-03-03",
        "Wednesday, March 3rd 2021": "2021-03-03",
        "12/01/69": "1969-12-01",
        "01.12.2068": "2068-12-01",
        "21st of August, 1999": "1999-08-21",
        "may 30 2000": "2000-05-30",
        "Sat, 1 Jan 2000": "2000-01-01",
    }
    for text, iso in cases.items():
        assert task.solve(enc(text)) == enc(iso), text
    b = gen(task, 0, n=500)
    for tgt in b["tgt"].tolist():  # every target is a real date in the range
        d = dt.date.fromisoformat("".join(CHARS[t - 1] for t in tgt))
        assert dt.date(1969, 1, 1) <= d <= dt.date(2068, 12, 31)


# -- Hypothesis over small knobs ----------------------------------------------

_small = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(task: Task, seed: int) -> None:
    for long in [False, True] if task.spec.length_generalization else [False]:
        batch = gen(task, seed, n=16, long=long)
        task.check_batch(batch, long=long)
        assert_solved(task, batch)


@_small
@given(length=st.integers(1, 12), extra=st.integers(1, 6), symbols=st.integers(2, 8), seed=st.integers(0, 99))
def test_copy_reverse_any_knobs(length, extra, symbols, seed):
    for name in ("copy", "reverse"):
        _check(create_task(name, length=length, num_symbols=symbols, long_length=length + extra), seed)


@_small
@given(
    pairs=st.integers(2, 8),
    queries=st.integers(1, 8),
    slack=st.integers(0, 10),
    vocab=st.integers(0, 20),
    placement=st.sampled_from(["power", "uniform"]),
    filler=st.booleans(),
    seed=st.integers(0, 99),
)
def test_mqar_any_knobs(pairs, queries, slack, vocab, placement, filler, seed):
    queries = min(queries, pairs)
    task = create_task(
        "mqar",
        vocab_size=2 * pairs + 2 + vocab,
        input_seq_len=2 * pairs + 2 * queries + slack,
        num_kv_pairs=pairs,
        num_queries=queries,
        placement=placement,
        random_non_queries=filler,
    )
    _check(task, seed)


@_small
@given(pairs=st.integers(2, 6), extra_keys=st.integers(0, 5), extra_values=st.integers(0, 5), seed=st.integers(0, 99))
def test_associative_recall_any_knobs(pairs, extra_keys, extra_values, seed):
    _check(create_task("associative-recall", num_pairs=pairs, num_keys=pairs + extra_keys,
                       num_values=pairs + extra_values), seed)  # fmt: skip


@_small
@given(
    name_len=st.integers(1, 4),
    slack=st.integers(0, 8),
    symbols=st.integers(3, 8),
    frac=st.sampled_from([0.0, 0.3, 1.0]),
    seed=st.integers(0, 99),
)
def test_induction_heads_any_knobs(name_len, slack, symbols, frac, seed):
    task = create_task(
        "induction-heads", seq_len=name_len + 3 + slack, num_symbols=symbols, name_len=name_len,
        num_name_pieces=name_len + 2, name_frac=frac,
    )  # fmt: skip
    _check(task, seed)


@_small
@given(tokens=st.integers(1, 6), slack=st.integers(1, 8), symbols=st.integers(2, 6), seed=st.integers(0, 99))
def test_selective_copy_any_knobs(tokens, slack, symbols, seed):
    _check(create_task("selective-copy", seq_len=tokens + slack, num_tokens=tokens, num_symbols=symbols), seed)


@_small
@given(length=st.integers(2, 8), extra=st.integers(1, 4), seed=st.integers(0, 99))
def test_sort_any_knobs(length, extra, seed):
    _check(create_task("sort", length=length, long_length=length + extra, num_values=length + extra), seed)


@_small
@given(depth=st.integers(1, 4), args=st.integers(2, 4), max_length=st.integers(8, 40), seed=st.integers(0, 99))
def test_listops_any_knobs(depth, args, max_length, seed):
    _check(create_task("listops", max_depth=depth, max_args=args, max_length=max_length, min_length=4), seed)


# -- solve thresholds and contrasts (what the leaderboard's findings check) ---------------------------
from attnzoo.errors import SpecError  # noqa: E402
from attnzoo.tasks.base import (  # noqa: E402
    CONTRAST_KINDS,
    DEFAULT_SOLVE_THRESHOLD,
    NO_ATTENTION,
    Contrast,
    TaskSpec,
    attention_beats_baseline,
    solves,
)


@pytest.mark.parametrize("name", ALL)
def test_solve_threshold_and_contrasts_are_well_formed(name):
    spec = get_task_class(name).spec
    assert 0.0 < spec.solve_threshold <= 1.0
    assert all(isinstance(c, Contrast) and c.kind in CONTRAST_KINDS for c in spec.contrasts)
    assert all(c.why for c in spec.contrasts), "every claim says where the expectation comes from"
    hash(spec)  # still a usable dict key


def test_content_addressed_tasks_claim_attention_beats_the_baselines():
    for name in ("associative-recall", "mqar", "induction-heads", "selective-copy"):
        kinds = [c.kind for c in get_task_class(name).spec.contrasts]
        assert "attention_beats_baseline" in kinds, name
    copy_kinds = {c.kind for c in get_task_class("copy").spec.contrasts}
    assert {"solves", "fails_long", "degrades_with_length"} <= copy_kinds
    assert "depth_helps" in {c.kind for c in get_task_class("induction-heads").spec.contrasts}
    sort = get_task_class("sort").spec.contrasts
    assert any(c.kind == "solves" and c.get("variant") == "pointer" for c in sort)


def test_no_attention_matches_the_leaderboards_baseline_name():
    from attnzoo.leaderboard.grid import BASELINE

    assert NO_ATTENTION == BASELINE


def test_bad_threshold_and_contrasts_are_named():
    with pytest.raises(SpecError, match="solve_threshold.*got 1.5"):
        TaskSpec("t", "s", solve_threshold=1.5)
    with pytest.raises(SpecError, match="contrasts.*got 'beats'"):
        TaskSpec("t", "s", contrasts=("beats",))
    with pytest.raises(SpecError, match="kind.*got 'nope'"):
        Contrast("nope")
    with pytest.raises(SpecError, match="unknown parameter.*colour"):
        Contrast("solves", (("variant", "x"), ("colour", "red")))
    with pytest.raises(SpecError, match="split.*'val'"):
        solves("x", split="val")
    assert TaskSpec("t", "s").solve_threshold == DEFAULT_SOLVE_THRESHOLD
    c = attention_beats_baseline(margin=0.2)
    assert c.get("margin") == 0.2 and c.get("backbone") is None and c.get("split") == "test"
