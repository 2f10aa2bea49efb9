"""The conformance kit must catch broken variants, not just pass good ones.

Each test registers a small deliberately broken variant in-process and removes
it in ``finally`` (pluggy/llm style), then asserts the kit fails the right check.
"""

from __future__ import annotations

import argparse
import json
from contextlib import contextmanager
from typing import Any, Iterator

import pytest
import torch
from torch import Tensor, nn

import attnzoo
from attnzoo.contract import Attention, AttentionOutput, ScoreAttention, masked_softmax
from attnzoo.testing import CHECKS, ConformanceReport, check_attention
from attnzoo.commands import check as check_cli


@contextmanager
def registered(spec: attnzoo.AttentionSpec, factory: Any) -> Iterator[str]:
    attnzoo.add_attention(spec, factory)
    try:
        yield spec.name
    finally:
        attnzoo.remove_attention(spec.name)


def _spec(name: str, **caps: Any) -> attnzoo.AttentionSpec:
    return attnzoo.AttentionSpec(name=name, family="test", summary=f"deliberately broken: {name}", **caps)


class Good(ScoreAttention):
    """Scaled dot product with a learnt temperature: a correct variant."""

    def __init__(self, query_dim, key_dim=None, value_dim=None, *, need_weights=False):
        super().__init__(query_dim, key_dim, value_dim, need_weights=need_weights)
        self.proj = nn.Linear(self.query_dim, self.key_dim)

    def score(self, query, key):
        return torch.bmm(self.proj(query), key.transpose(1, 2)) / self.key_dim**0.5


class NanOnEmptyRow(Good):
    def attend(self, query, key, value, mask, *, state=None, need_weights=True):
        s = self.score(query, key)
        if mask is not None:
            s = s.masked_fill(~mask, float("-inf"))  # empty row -> softmax of all -inf = NaN
        w = torch.softmax(s, -1)
        return AttentionOutput(torch.bmm(w, value), w)


class LeaksFuture(Good):
    def attend(self, query, key, value, mask, *, state=None, need_weights=True):
        w = masked_softmax(self.score(query, key), mask)
        ctx = torch.bmm(w, value) + 0.1 * value.mean(dim=1, keepdim=True)[:, :, : value.shape[-1]]  # sees every key
        ctx = ctx * (w.sum(-1, keepdim=True) > 0)  # keep empty rows zero so only causality breaks
        return AttentionOutput(ctx, w)


class NotNormalised(Good):
    def attend(self, query, key, value, mask, *, state=None, need_weights=True):
        w = masked_softmax(self.score(query, key), mask) * 0.9
        return AttentionOutput(torch.bmm(w, value), w)


class MixesBatch(Good):
    def attend(self, query, key, value, mask, *, state=None, need_weights=True):
        w = masked_softmax(self.score(query, key), mask)
        ctx = torch.bmm(w, value)
        ctx = ctx + 0.1 * ctx.mean(dim=0, keepdim=True)  # batch statistics leak across rows
        return AttentionOutput(ctx, w)


class SilentBadMask(Good):
    def forward(self, query, key=None, value=None, *, mask=None, state=None, need_weights=None):
        try:
            query, key, value, mask = self.check_inputs(query, key, value, mask)
        except ValueError:
            if mask is None:
                raise
            query, key, value, _ = self.check_inputs(query, key, value, None)  # drops a bad mask silently
            mask = None
        return self.attend(query, key, value, mask, need_weights=True if need_weights is None else need_weights)


def _failed(report: ConformanceReport) -> set[str]:
    return {r.name for r in report.failures}


@pytest.mark.parametrize(
    "cls, caps, must_fail",
    [
        (NanOnEmptyRow, {}, "mask.fully-masked"),
        (LeaksFuture, {"causal_safe": True}, "causal"),
        (NotNormalised, {}, "weights.distribution"),
        (MixesBatch, {}, "batch-independence"),
        (SilentBadMask, {}, "errors.mask"),
    ],
    ids=["nan-on-empty-row", "leaks-future", "not-normalised", "mixes-batch", "silent-bad-mask"],
)
def test_kit_catches_broken_variant(cls: type, caps: dict, must_fail: str) -> None:
    spec = _spec(f"broken-{must_fail.replace('.', '-')}", multihead=False, **caps)
    with registered(spec, cls) as name:
        report = check_attention(name)
    assert not report.ok
    assert must_fail in _failed(report), str(report)
    assert report.get(must_fail).message
    with pytest.raises(AssertionError, match=must_fail.replace(".", r"\.")):
        report.raise_for_failures()
    assert "✗ " + must_fail in str(report)


def test_leak_is_caught_only_when_causal_safe_is_claimed() -> None:
    with registered(_spec("broken-leak-honest", causal_safe=False, multihead=False), LeaksFuture) as name:
        report = check_attention(name)
    assert report.get("causal").status == "skipped"
    assert "causal_safe=False" in report.get("causal").message


def test_broken_variant_is_caught_inside_multihead_too() -> None:
    with registered(_spec("broken-nan-mh"), NanOnEmptyRow) as name:
        report = check_attention(name)
    assert {"mask.fully-masked", "multihead.mask.fully-masked"} <= _failed(report)


def test_good_variant_passes_by_name_and_by_factory() -> None:
    spec = _spec("good-test")
    with registered(spec, Good) as name:
        by_name = check_attention(name)
    by_factory = check_attention(Good, spec=spec)
    for report in (by_name, by_factory):
        assert report.ok, str(report)
        assert report.get("gradients").status == "passed"
        assert report.get("stateful.steps-equal-call").status == "skipped"
        assert report.get("multihead.causal").status == "passed"
    assert set(CHECKS) >= {r.name for r in by_name.results if not r.name.startswith("multihead.")}


def test_factory_without_spec_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="spec"):
        check_attention(Good)


def test_report_str_and_dict() -> None:
    report = check_attention("dot")
    text = str(report)
    assert text.splitlines()[0].startswith("attnzoo check dot on cpu: OK")
    assert "✓ shapes.self" in text and "- stateful.initial-state" in text
    d = report.to_dict()
    assert d["ok"] is True and d["counts"]["failed"] == 0
    json.dumps(d)


# --------------------------------------------------------------------------- stateful, pointer, hard


class ToyMemory(Attention):
    """Query-only stateful toy (NTM-like call shape): fixed slots, state = decayed sum of reads."""

    def __init__(self, query_dim, key_dim=None, value_dim=None, *, slots=4, leak_state=False, need_weights=False):
        super().__init__(query_dim, key_dim, value_dim, need_weights=need_weights)
        self.keys = nn.Parameter(torch.randn(slots, self.query_dim))
        self.values = nn.Parameter(torch.randn(slots, self.value_dim))
        self.leak_state = leak_state

    def initial_state(self, batch_size, device=None, dtype=None):
        return torch.zeros(batch_size, self.value_dim, device=device, dtype=dtype or torch.float32)

    def forward(self, query, key=None, value=None, *, mask=None, state=None, need_weights=None):
        if key is not None or value is not None:
            raise ValueError(f"key: ToyMemory takes query only, got key {list(key.shape) if key is not None else None}")
        if mask is not None:
            raise ValueError("mask: ToyMemory takes no mask (expected None), got a tensor")
        self.check_query(query)  # the base's shape and dtype rules
        b, tq, _ = query.shape
        s = self.initial_state(b, query.device, query.dtype) if state is None or self.leak_state else state
        ctxs, ws = [], []
        for t in range(tq):
            w = torch.softmax(query[:, t] @ self.keys.t(), -1)  # (B, N)
            ctxs.append(w @ self.values + s)
            ws.append(w)
            s = 0.5 * s + ctxs[-1]
        return AttentionOutput(torch.stack(ctxs, 1), torch.stack(ws, 1), s)


STATEFUL = dict(self_attention=False, cross_attention=False, stateful=True, multihead=False)


def test_stateful_query_only_variant_passes() -> None:
    report = check_attention(ToyMemory, spec=_spec("toy-memory", **STATEFUL))
    assert report.ok, str(report)
    for name in ("shapes.query-only", "stateful.initial-state", "stateful.steps-equal-call", "causal", "gradcheck"):
        assert report.get(name).status == "passed", str(report)
    assert report.get("mask.forms-agree").status == "skipped"


def test_stateful_variant_that_drops_state_fails_chaining() -> None:
    report = check_attention(ToyMemory, spec=_spec("toy-memory-broken", **STATEFUL), leak_state=True)
    assert "stateful.steps-equal-call" in _failed(report), str(report)


class ToyPointer(Good):
    def attend(self, query, key, value, mask, *, state=None, need_weights=True):
        s = self.score(query, key)
        logits = s if mask is None else s.masked_fill(~mask, torch.finfo(s.dtype).min)
        w = masked_softmax(s, mask)
        return AttentionOutput(torch.bmm(w, value), w, None, {"logits": logits})


def test_pointer_logits_checked() -> None:
    ok = check_attention(ToyPointer, spec=_spec("toy-pointer", pointer_logits=True, aux_keys=("logits",)))
    assert ok.get("pointer.logits").status == "passed", str(ok)
    bad = check_attention(Good, spec=_spec("toy-pointer-missing", pointer_logits=True))
    assert "pointer.logits" in _failed(bad)


class ToyHard(Good):
    """Argmax (eval) / sampled (train) hard attention with REINFORCE aux."""

    def attend(self, query, key, value, mask, *, state=None, need_weights=True):
        s = self.score(query, key)
        logp = torch.log_softmax(s if mask is None else s.masked_fill(~mask, torch.finfo(s.dtype).min), -1)
        probs = logp.exp() if mask is None else logp.exp() * mask
        has = probs.sum(-1, keepdim=True) > 0
        safe = torch.where(has, probs, torch.ones_like(probs))
        if self.training:
            idx = torch.multinomial(safe.reshape(-1, safe.shape[-1]), 1).view(*safe.shape[:2], 1)
        else:
            idx = safe.argmax(-1, keepdim=True)
        w = torch.zeros_like(probs).scatter_(-1, idx, 1.0) * has
        # argmax/multinomial turn a NaN score into a confident pick; NaN in must be NaN out.
        w = torch.where(torch.isnan(s).any(-1, keepdim=True), float("nan"), w)
        log_prob = (logp.gather(-1, idx).squeeze(-1) * has.squeeze(-1)).sum(-1)  # (B,)
        entropy = -(probs * logp).sum(-1).sum(-1)
        return AttentionOutput(torch.bmm(w, value), w, None, {"log_prob": log_prob, "entropy": entropy})


def test_non_differentiable_variant_uses_aux_checks() -> None:
    spec = _spec("toy-hard", differentiable=False, aux_keys=("log_prob", "entropy"))
    report = check_attention(ToyHard, spec=spec)
    assert report.ok, str(report)
    assert report.get("gradcheck").status == "skipped"
    assert "log_prob" in report.get("gradients").message


# --------------------------------------------------------------------------- CLI adapter


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    check_cli.configure_parser(p)
    return p.parse_args(list(argv))


def test_cli_ok_json_and_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_cli.main(_args("dot")) == 0
    assert "attnzoo check dot on cpu: OK" in capsys.readouterr().out
    assert check_cli.main(_args("dot", "--json")) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    report = check_attention("dot")
    assert [d["name"] for d in lines] == [r.name for r in report.results]  # one object per check, in order
    assert all(set(d) == {"variant", "device", "name", "status", "passed", "message"} and d["variant"] == "dot" for d in lines)
    by = {d["name"]: d for d in lines}
    assert by["gradcheck"]["passed"] is True and by["gradcheck"]["message"]
    assert by["stateful.initial-state"] == {"variant": "dot", "device": "cpu", "name": "stateful.initial-state", "status": "skipped",
                                            "passed": None, "message": "spec says stateful=False"}
    assert check_cli.main(_args("scaled")) == 2
    assert "scaled-dot" in capsys.readouterr().err  # suggestion


def test_cli_failure_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    with registered(_spec("broken-cli", multihead=False), NotNormalised) as name:
        assert check_cli.main(_args(name)) == 1
        assert "✗ weights.distribution" in capsys.readouterr().out
        assert check_cli.main(_args(name, "--json", "--check", "weights.distribution", "--check", "causal")) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(d["name"], d["passed"]) for d in lines] == [("weights.distribution", False), ("causal", True)]
    assert "sum to" in lines[0]["message"]


def test_cli_unknown_check_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_cli.main(_args("dot", "--check", "gradchek")) == 2
    assert "did you mean 'gradcheck'" in capsys.readouterr().err


# --------------------------------------------------------------------------- gradcheck, dtypes, NaN (issue 12)


class _HalfGradBmm(torch.autograd.Function):
    """bmm whose backward is wrong for its second argument (half the true gradient)."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return torch.bmm(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        return torch.bmm(grad, b.transpose(1, 2)), 0.5 * torch.bmm(a.transpose(1, 2), grad)


class WrongBackward(ScoreAttention):
    def score(self, query, key):
        return _HalfGradBmm.apply(query, key.transpose(1, 2))  # the key's gradient is halved


def test_wrong_backward_is_reported_as_a_gradient_mismatch() -> None:
    report = check_attention(WrongBackward, spec=_spec("wrong-backward", multihead=False), checks=["gradcheck"])
    r = report.get("gradcheck")
    assert r.failed, str(report)
    assert "AttributeError" not in r.message and "GradcheckError" not in r.message
    assert "analytical and numerical gradients differ" in r.message
    # which input (key, not query or value), which output, and how far off
    assert "context w.r.t. key: max |analytical - numerical| = " in r.message, r.message
    assert "w.r.t. query" not in r.message and "w.r.t. value" not in r.message
    assert float(r.message.split("= ")[1].split(" ")[0]) > 1e-3


def test_right_backward_passes_gradcheck() -> None:
    class RightBmm(_HalfGradBmm):
        @staticmethod
        def backward(ctx, grad):
            a, b = ctx.saved_tensors
            return torch.bmm(grad, b.transpose(1, 2)), torch.bmm(a.transpose(1, 2), grad)

    class RightBackward(ScoreAttention):
        def score(self, query, key):
            return RightBmm.apply(query, key.transpose(1, 2))

    report = check_attention(RightBackward, spec=_spec("right-backward", multihead=False), checks=["gradcheck"])
    assert report.get("gradcheck").passed, str(report)


class IgnoresDtypes(Good):
    """A plugin forward that skips the base's checks: float16 beside float32 reaches the matmul."""

    def forward(self, query, key=None, value=None, *, mask=None, state=None, need_weights=None):
        key = query if key is None else key
        value = key if value is None else value
        from attnzoo.contract import normalize_mask

        mask = normalize_mask(mask, query.shape[0], query.shape[1], key.shape[1])
        return self.attend(query, key, value, mask, need_weights=True)


def test_unnamed_dtype_error_is_caught() -> None:
    report = check_attention(IgnoresDtypes, spec=_spec("ignores-dtypes", multihead=False), checks=["errors.dtypes"])
    r = report.get("errors.dtypes")
    assert r.failed and "expected ValueError" in r.message, str(report)
    assert check_attention(Good, spec=_spec("good-dtypes"), checks=["errors.dtypes"]).ok


class HidesNan(Good):
    """nan_to_num on the scores: a NaN query silently becomes uniform attention."""

    def score(self, query, key):
        return torch.nan_to_num(super().score(query, key), nan=0.0)


class LeaksNanAcrossBatch(Good):
    def attend(self, query, key, value, mask, *, state=None, need_weights=True):
        out = super().attend(query, key, value, mask, need_weights=need_weights)
        ctx = out.context
        if torch.isnan(query).any():
            ctx = ctx + float("nan")  # every batch item, not just the one that had the NaN
        return AttentionOutput(ctx, out.weights)


class RaisesOnNan(Good):
    def attend(self, query, key, value, mask, *, state=None, need_weights=True):
        if torch.isnan(query).any() or torch.isnan(key).any() or torch.isnan(value).any():
            raise FloatingPointError("query/key/value contain NaN")
        return super().attend(query, key, value, mask, need_weights=need_weights)


def test_nan_hiding_variant_is_caught() -> None:
    report = check_attention(HidesNan, spec=_spec("hides-nan"))
    assert {"nan.propagates", "multihead.nan.propagates"} <= _failed(report), str(report)
    msg = report.get("nan.propagates").message
    assert "NaN in query[1, 1]" in msg and "finite although they read the NaN" in msg
    # only the NaN check: hiding a NaN breaks nothing else the kit looks at
    assert _failed(report) == {"nan.propagates", "multihead.nan.propagates"}, str(report)


def test_nan_leaking_into_other_batch_items_is_caught() -> None:
    report = check_attention(LeaksNanAcrossBatch, spec=_spec("leaks-nan", multihead=False), checks=["nan.propagates"])
    assert "leaked into batch item(s) [0, 2]" in report.get("nan.propagates").message, str(report)


def test_named_nan_error_passes_and_good_variant_propagates() -> None:
    report = check_attention(RaisesOnNan, spec=_spec("raises-on-nan", multihead=False), checks=["nan.propagates"])
    assert report.get("nan.propagates").passed and "an error naming NaN" in report.get("nan.propagates").message
    good = check_attention(Good, spec=_spec("good-nan"), checks=["nan.propagates", "multihead.nan.propagates"])
    assert good.ok and len(good.results) == 2, str(good)


# --------------------------------------------------------------------------- subsets and planned names


def test_planned_checks_match_a_full_run_and_subsets_agree() -> None:
    from attnzoo.testing import planned_checks

    for spec in (_spec("plan-mh"), _spec("plan-memory", **STATEFUL)):
        factory = ToyMemory if spec.stateful else Good
        full = check_attention(factory, spec=spec)
        assert [r.name for r in full.results] == planned_checks(spec)
        for name in ("causal", "nan.propagates", "multihead.causal" if spec.multihead else "multihead"):
            assert check_attention(factory, spec=spec, checks=[name]).results == [full.get(name)]


def test_unknown_check_name_suggests_close_match() -> None:
    with pytest.raises(ValueError, match=r"checks: unknown check name\(s\) 'gradchek' \(did you mean 'gradcheck'\?\)"):
        check_attention("dot", checks=["gradchek"])
