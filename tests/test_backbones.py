"""Backbones: every backbone x every fitting registered variant on tiny tasks."""

from __future__ import annotations

import types

import pytest
import torch

import attnzoo
from attnzoo import plugins
from attnzoo.contract import Attention, AttentionOutput
from attnzoo.backbones import (
    BackboneOutput,
    BackboneSpec,
    backbone_registry,
    create_backbone,
    get_backbone,
    list_backbones,
)
from attnzoo.tasks.base import PAD, Task, TaskSpec
from attnzoo.spec import AttentionSpec

# --------------------------------------------------------------------------- tiny tasks


class TinyCopy(Task):
    """Copy a random token string (ids 1..V-1); short trailing padding in some rows."""

    spec = TaskSpec(name="tiny-copy", summary="copy", length_generalization=True)

    def __init__(self, src_len: int = 6) -> None:
        super().__init__()
        self.vocab_size = 8
        self.num_classes = 8
        self.src_len = self.tgt_len = src_len
        self.long_src_len = self.long_tgt_len = src_len + 3

    def generate(self, n, generator, *, long=False):
        s = self.long_src_len if long else self.src_len
        src = torch.randint(1, self.vocab_size, (n, s), generator=generator)
        src[0, -1] = PAD  # one padded position: pad keys are masked
        return {"src": src, "tgt": src.clone()}

    def solve(self, src):
        return list(src)

    def chance(self):
        return 0.0


class TinySort(Task):
    """Pointer task: positions of src in ascending order (Vinyals et al. 2015's sorting)."""

    spec = TaskSpec(name="tiny-sort", summary="argsort", output="pointers")

    def __init__(self, src_len: int = 5) -> None:
        super().__init__()
        self.vocab_size = 16
        self.num_classes = src_len + 2  # more classes than positions: padded with finfo.min
        self.src_len = self.tgt_len = src_len

    def generate(self, n, generator, *, long=False):
        src = torch.randperm(self.vocab_size - 1, generator=generator)[: self.src_len].repeat(n, 1) + 1
        perm = torch.stack([torch.randperm(self.src_len, generator=generator) for _ in range(n)])
        src = src.gather(1, perm)
        return {"src": src, "tgt": src.argsort(dim=1)}

    def solve(self, src):
        return sorted(range(len(src)), key=lambda i: src[i])

    def chance(self):
        return 0.0


TASKS = {"tokens": TinyCopy(), "pointers": TinySort()}


def _batch(task, n=3, long=False, seed=0):
    return task.generate(n, torch.Generator().manual_seed(seed), long=long)


def _variants():
    return [None, *attnzoo.list_attention()]


def _cases():
    out = []
    for bname in list_backbones():
        spec, _ = get_backbone(bname)
        for kind, task in TASKS.items():
            for variant in _variants():
                aspec = None if variant is None else attnzoo.get_spec(variant)
                if spec.fits(task.spec, aspec) is None:
                    out.append(pytest.param(bname, kind, variant, id=f"{bname}-{kind}-{variant}"))
    return out


def _build(bname, task, variant, **kw):
    torch.manual_seed(0)
    kw.setdefault("d_model", 16)
    kw.setdefault("num_heads", 2)
    return create_backbone(bname, task, variant, **kw)


# --------------------------------------------------------------------------- registry


def test_registry_lists_builtins():
    names = list_backbones()
    for name in ("transformer", "seq2seq", "pointer", "ntm", "mlp"):
        assert name in names
    assert list_backbones("trans*") == ["transformer"]
    spec, factory = get_backbone("mlp")
    assert isinstance(spec, BackboneSpec) and callable(factory)
    assert spec.fixed_length and spec.attention == "none"


def test_unknown_backbone_suggests():
    with pytest.raises(attnzoo.UnknownNameError, match="transformer"):
        get_backbone("transformr")


def test_create_backbone_rejects_unknown_kwargs():
    with pytest.raises(TypeError, match="accepted: .*d_model"):
        create_backbone("transformer", TASKS["tokens"], "dot", widht=3)


def test_fake_plugin_registers_backbone():
    fake_spec = BackboneSpec(name="fake-bb", summary="a fake backbone", attention="none")

    def build_fake(task, attention=None, **kwargs):
        return torch.nn.Linear(1, 1)

    plugin = types.ModuleType("fake_backbone_plugin")

    @attnzoo.hookimpl
    def register_backbones(register):
        register(fake_spec, build_fake)

    plugin.register_backbones = register_backbones
    pm = plugins.get_host().pm
    pm.register(plugin, name="fake_backbone_plugin")
    backbone_registry.invalidate()
    try:
        assert "fake-bb" in list_backbones()
        spec, factory = get_backbone("fake-bb")
        assert spec is fake_spec and factory is build_fake
        assert "transformer" in list_backbones()  # built-ins still there
    finally:
        pm.unregister(plugin)
        backbone_registry.invalidate()
    assert "fake-bb" not in list_backbones()


def test_spec_validation():
    with pytest.raises(attnzoo.SpecError):
        BackboneSpec(name="x", summary="s", attention="sometimes")
    with pytest.raises(attnzoo.SpecError):
        BackboneSpec(name="x", summary="s", required_capabilities=("telepathy",))
    with pytest.raises(attnzoo.SpecError):
        BackboneSpec(name="x", summary="s", outputs=("images",))


# --------------------------------------------------------------------------- every backbone x variant


@pytest.mark.parametrize("bname,kind,variant", _cases())
def test_forward_backward(bname, kind, variant):
    task = TASKS[kind]
    model = _build(bname, task, variant)
    model.train()
    batch = _batch(task)
    out = model(batch["src"], batch["tgt"])
    assert isinstance(out, BackboneOutput)
    n, t = batch["tgt"].shape
    assert out.logits.shape == (n, t, task.num_classes)
    assert torch.isfinite(out.logits).all()
    assert out.attention is None
    for key, val in out.aux.items():
        assert val.shape == (n,), key
        assert torch.isfinite(val).all(), key
    loss = torch.nn.functional.cross_entropy(out.logits.reshape(n * t, -1), batch["tgt"].reshape(-1))
    if "log_prob" in out.aux:  # what the harness adds for hard attention (REINFORCE)
        loss = loss + out.aux["log_prob"].mean()
    loss.backward()
    differentiable = variant is None or attnzoo.get_spec(variant).differentiable
    attn_prefixes = tuple(f"{name}." for name, m in model.named_modules() if isinstance(m, Attention) and name)
    no_grad = {
        name
        for name, p in model.named_parameters()
        if p.grad is None or not torch.isfinite(p.grad).all() or not p.grad.abs().sum() > 0
    }
    outside = sorted(n for n in no_grad if not n.startswith(attn_prefixes))
    assert not outside, f"no (finite, nonzero) gradient for {outside}"
    inside = [n for n, _ in model.named_parameters() if n.startswith(attn_prefixes)]
    if differentiable and inside:
        # a variant may ignore some inputs (location scores ignore the keys), but
        # gradient must reach the attention module
        assert set(inside) - no_grad, f"no gradient reaches the attention parameters {inside}"


@pytest.mark.parametrize("bname,kind,variant", _cases())
def test_record_attention(bname, kind, variant):
    task = TASKS[kind]
    model = _build(bname, task, variant)
    model.eval()
    batch = _batch(task)
    model.record_attention = True
    with torch.no_grad():
        out = model(batch["src"], batch["tgt"])
    n, t = batch["tgt"].shape
    if variant is None or get_backbone(bname)[0].attention == "none":
        assert out.attention is None
        return
    att = out.attention
    assert att is not None and att.dim() == 3 and att.shape[:2] == (n, t)
    assert (att >= 0).all()
    sums = att.sum(-1)
    if model.attention_key_layout == "src":
        assert att.shape[2] == batch["src"].shape[1]
    if bname == "transformer":  # source keys only: the rest of the mass is on earlier target inputs
        assert (sums <= 1 + 1e-4).all(), sums
    else:
        assert torch.allclose(sums, torch.ones_like(sums), atol=1e-4), sums
    model.record_attention = False
    with torch.no_grad():
        again = model(batch["src"], batch["tgt"])
    assert again.attention is None
    assert torch.allclose(again.logits, out.logits, atol=1e-5)


@pytest.mark.parametrize(
    "bname,kind,variant",
    [c for c in _cases() if not get_backbone(c.values[0])[0].fixed_length and TASKS[c.values[1]].spec.length_generalization],
)
def test_any_length(bname, kind, variant):
    task = TASKS[kind]
    model = _build(bname, task, variant).eval()
    batch = _batch(task, long=True)
    with torch.no_grad():
        out = model(batch["src"], batch["tgt"])
    assert out.logits.shape == (*batch["tgt"].shape, task.num_classes)
    assert torch.isfinite(out.logits).all()


# --------------------------------------------------------------------------- transformer


def _causal_cases():
    """Every variant on the transformer (the variant sits in the causal path); one per kind elsewhere
    (the RNN backbones are causal by construction, whatever the variant)."""
    out, seen = [], set()
    for case in _cases():
        bname, kind, variant = case.values
        key = (bname, kind, variant is None)
        if bname == "transformer" or key not in seen:
            out.append(case)
            seen.add(key)
    return out


@pytest.mark.parametrize("bname,kind,variant", _causal_cases())
def test_teacher_forcing_is_causal(bname, kind, variant):
    """Changing target input t + 1 (= tgt[t]) leaves the logits at positions <= t unchanged."""
    task = TASKS[kind]
    model = _build(bname, task, variant).eval()
    batch = _batch(task, n=2)
    src, tgt = batch["src"], batch["tgt"]
    s = src.shape[1]
    reads_targets = bname not in ("mlp", "bottleneck")  # these see only src (no teacher forcing)
    with torch.no_grad():
        base = model(src, tgt).logits
        for t in range(tgt.shape[1] - 1):
            changed = tgt.clone()
            if kind == "pointers":
                changed[:, t] = (changed[:, t] + 1) % s
            else:
                changed[:, t] = changed[:, t] % (task.num_classes - 1) + 1
            logits = model(src, changed).logits
            assert torch.allclose(logits[:, : t + 1], base[:, : t + 1], atol=1e-5), f"position <= {t} saw tgt[{t}]"
            if reads_targets:
                assert not torch.allclose(logits[:, t + 1 :], base[:, t + 1 :], atol=1e-6)


@pytest.mark.parametrize("readout", ["last_src", "bos"])
def test_transformer_attention_map_is_over_source_keys(readout):
    task = TASKS["tokens"]
    model = _build("transformer", task, "scaled-dot", readout=readout).eval()
    model.record_attention = True
    batch = _batch(task)
    out = model(batch["src"], batch["tgt"])
    s, t = batch["src"].shape[1], batch["tgt"].shape[1]
    assert out.attention.shape == (3, t, s)
    assert model.attention_key_layout == "src"
    assert (out.attention >= 0).all() and (out.attention.sum(-1) <= 1 + 1e-5).all()
    assert (out.attention[0, :, s - 1] == 0).all()  # src[0, -1] is PAD: masked as a key


def test_transformer_readout_positions():
    """last_src: the last source token predicts tgt_1 (no BOS); bos: an appended BOS does."""
    task = TASKS["tokens"]
    batch = _batch(task)
    for readout, uses_bos in (("last_src", False), ("bos", True)):
        torch.manual_seed(0)
        model = _build("transformer", task, "scaled-dot", readout=readout)
        model(batch["src"], batch["tgt"]).logits.sum().backward()
        bos_grad = model.tgt_embed.weight.grad[model.bos]
        assert bool(bos_grad.abs().sum() > 0) == uses_bos, readout
    with pytest.raises(ValueError, match="readout"):
        _build("transformer", task, "scaled-dot", readout="middle")


# --------------------------------------------------------------------------- fits() reasons


def _fake_spec(**caps):
    return AttentionSpec(name="fake", family="fake", summary="fake", **caps)


def test_fits_reasons():
    tokens, pointers = TASKS["tokens"].spec, TASKS["pointers"].spec
    transformer = get_backbone("transformer")[0]
    mlp = get_backbone("mlp")[0]
    assert transformer.fits(tokens, attnzoo.get_spec("scaled-dot")) is None
    assert transformer.fits(tokens, None) == "needs an attention variant"
    ntm_like = _fake_spec(self_attention=False, cross_attention=False, stateful=True, multihead=False)
    assert transformer.fits(tokens, ntm_like) == "needs a self-attention variant"
    assert transformer.fits(tokens, _fake_spec(causal_safe=False)) == "needs a causal_safe variant"
    assert transformer.fits(tokens, _fake_spec(multihead=False)).startswith("needs a variant that runs per head")
    assert mlp.fits(tokens, None) is None
    assert mlp.fits(pointers, None) is None
    assert mlp.fits(tokens, attnzoo.get_spec("dot")) == "no attention: baseline"
    assert mlp.fits_split("test_long") == "fixed-length input: cannot run test_long"
    assert mlp.fits_split("test") is None
    assert transformer.fits_split("test_long") is None


def test_fits_reasons_rnn_backbones():
    tokens, pointers = TASKS["tokens"].spec, TASKS["pointers"].spec
    seq2seq, pointer, ntm = (get_backbone(n)[0] for n in ("seq2seq", "pointer", "ntm"))
    ntm_like = _fake_spec(self_attention=False, cross_attention=False, stateful=True, multihead=False)
    assert seq2seq.fits(tokens, None) is None  # Sutskever baseline
    assert seq2seq.fits(pointers, attnzoo.get_spec("dot")) is None
    assert seq2seq.fits(tokens, ntm_like) == "needs a cross-attention variant"
    assert seq2seq.fits(tokens, _fake_spec(stateful=True)) == "needs a stateless variant"
    assert pointer.fits(tokens, attnzoo.get_spec("dot")) == "pointer tasks only"
    assert pointer.fits(pointers, attnzoo.get_spec("dot")) == "needs a variant with pointer logits"
    assert pointer.fits(pointers, _fake_spec(pointer_logits=True, aux_keys=("logits",))) is None
    assert pointer.fits(pointers, None) == "needs an attention variant"
    assert ntm.fits(tokens, attnzoo.get_spec("scaled-dot")) == "needs a stateful memory variant"
    assert ntm.fits(tokens, ntm_like) is None
    if "ntm" in attnzoo.list_attention():
        assert get_backbone("transformer")[0].fits(tokens, attnzoo.get_spec("ntm")) == "needs a self-attention variant"
        assert ntm.fits(tokens, attnzoo.get_spec("ntm")) is None


def test_factory_raises_reason():
    with pytest.raises(ValueError, match="no attention: baseline"):
        create_backbone("mlp", TASKS["tokens"], "dot")


def test_mlp_rejects_other_lengths():
    task = TASKS["tokens"]
    model = _build("mlp", task, None)
    batch = _batch(task, long=True)
    with pytest.raises(ValueError, match="fixed-length"):
        model(batch["src"], batch["tgt"])


# --------------------------------------------------------------------------- seq2seq, pointer, ntm


def test_seq2seq_baseline_has_no_attention():
    task = TASKS["tokens"]
    model = _build("seq2seq", task, None)
    assert model.attention is None and model.W_c is None
    assert not any(isinstance(m, Attention) for m in model.modules())
    with_att = _build("seq2seq", task, "dot")
    assert isinstance(with_att.attention, Attention)


def test_seq2seq_bidirectional_and_layers():
    task = TASKS["tokens"]
    model = _build("seq2seq", task, "general", bidirectional=True, num_layers=2)
    batch = _batch(task)
    out = model(batch["src"], batch["tgt"])
    assert out.logits.shape == (3, task.tgt_len, task.num_classes)
    out.logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.skipif("local-m" not in attnzoo.list_attention(), reason="local-m not registered")
def test_seq2seq_local_m_window_follows_the_step():
    """Decoding one step at a time, local-m must get the target step t as its state (p_t = t)."""
    task = TASKS["tokens"]
    d = 1
    model = _build("seq2seq", task, "local-m", attention_kwargs={"window": d}).eval()
    model.record_attention = True
    batch = _batch(task)
    with torch.no_grad():
        att = model(batch["src"], batch["tgt"]).attention  # (N, T, S)
    t_idx = torch.arange(att.shape[1])[:, None]
    s_idx = torch.arange(att.shape[2])[None, :]
    outside = (s_idx - t_idx).abs() > d
    assert (att[:, outside] == 0).all()


def test_seq2seq_location_gets_max_len():
    if "location" not in attnzoo.list_attention():
        pytest.skip("location not registered")
    task = TinyCopy(src_len=300)  # longer than the variant's default max_len
    model = _build("seq2seq", task, "location")
    assert model.attention.max_len >= task.long_src_len


def test_pointer_pads_classes_with_finfo_min():
    task = TASKS["pointers"]
    model = _build("pointer", task, "pointer")
    batch = _batch(task)
    logits = model(batch["src"], batch["tgt"]).logits
    s = batch["src"].shape[1]
    assert logits.shape[-1] == task.num_classes > s
    assert (logits[..., s:] == torch.finfo(logits.dtype).min).all()
    assert torch.isfinite(torch.log_softmax(logits, -1)).all()


def test_pointer_exclude_pointed():
    task = TASKS["pointers"]
    model = _build("pointer", task, "pointer", exclude_pointed=True).eval()
    batch = _batch(task)
    with torch.no_grad():
        logits = model(batch["src"], batch["tgt"]).logits
    tgt = batch["tgt"]
    low = torch.finfo(logits.dtype).min
    for i in range(1, tgt.shape[1]):
        for j in range(i):
            assert (logits[torch.arange(3), i, tgt[:, j]] == low).all()


def test_pointer_decoder_input_is_pointed_element():
    """Step i's decoder input is the embedding of src[tgt[i-1]] (a learned start vector at i = 0)."""
    task = TASKS["pointers"]
    model = _build("pointer", task, "pointer").eval()
    batch = _batch(task)
    seen = {}

    def grab(module, args, output):
        seen["x"] = args[0]

    handle = model.decoder.register_forward_hook(grab)
    try:
        with torch.no_grad():
            model(batch["src"], batch["tgt"])
    finally:
        handle.remove()
    src, tgt = batch["src"], batch["tgt"]
    expected = model.src_embed(src.gather(1, tgt[:, :-1]))  # (N, T-1, D)
    assert torch.allclose(seen["x"][:, 1:], expected)
    assert torch.allclose(seen["x"][:, 0], model.start.expand(3, -1))


class _FakeMemory(Attention):
    """A minimal stateful variant: a running sum of projected queries, read through a softmax over slots."""

    def __init__(self, query_dim, key_dim=None, value_dim=None, *, memory_slots=4, need_weights=False):
        super().__init__(query_dim, key_dim, value_dim, need_weights=need_weights)
        self.memory_slots = memory_slots
        self.addr = torch.nn.Linear(query_dim, memory_slots)
        self.write = torch.nn.Linear(query_dim, self.value_dim)

    def initial_state(self, batch_size, device=None, dtype=None):
        return torch.zeros(batch_size, self.memory_slots, self.value_dim, device=device, dtype=dtype)

    def check_inputs(self, query, key, value, mask):
        return query, None, None, None

    def attend(self, query, key, value, mask, *, state=None, need_weights=True):
        b, tq, _ = query.shape
        memory = self.initial_state(b, query.device, query.dtype) if state is None else state
        ctx, ws = [], []
        for t in range(tq):
            w = torch.softmax(self.addr(query[:, t]), -1)  # (B, N)
            memory = memory + w[..., None] * self.write(query[:, t])[:, None]  # (B, N, V)
            ctx.append(torch.bmm(w[:, None], memory)[:, 0])
            ws.append(w)
        return AttentionOutput(torch.stack(ctx, 1), torch.stack(ws, 1), memory)


def test_ntm_backbone_with_a_fake_stateful_variant():
    spec = AttentionSpec(
        name="fake-memory", family="memory", summary="fake", self_attention=False, cross_attention=False,
        stateful=True, multihead=False,
    )
    attnzoo.add_attention(spec, _FakeMemory)
    try:
        task = TASKS["tokens"]
        assert get_backbone("ntm")[0].fits(task.spec, spec) is None
        model = _build("ntm", task, "fake-memory")
        assert model.memory.memory_slots >= task.long_src_len + task.long_tgt_len
        model.record_attention = True
        batch = _batch(task)
        out = model(batch["src"], batch["tgt"])
        assert out.logits.shape == (3, task.tgt_len, task.num_classes)
        assert out.attention.shape == (3, task.tgt_len, model.memory.memory_slots)
        out.logits.sum().backward()
        assert all(p.grad is not None for p in model.parameters())
    finally:
        attnzoo.remove_attention("fake-memory")


def test_transformer_aligned_readout_answers_in_place_and_causally():
    """MQAR is read at each query token: logits [N, S, C], and position t never sees src after t."""
    from attnzoo.tasks import create_task

    task = create_task("mqar", vocab_size=32, input_seq_len=16, num_kv_pairs=4)
    model = create_backbone("transformer", task, "scaled-dot", d_model=16, num_layers=2, num_heads=2)
    assert model.readout == "aligned"
    b = task.generate(3, torch.Generator().manual_seed(0))
    model.eval()
    with torch.no_grad():
        out = model(b["src"], b["tgt"]).logits
        assert out.shape == (3, 16, task.num_classes)
        t = 9
        changed = b["src"].clone()
        changed[:, t + 1 :] = (changed[:, t + 1 :] % 15) + 1
        again = model(changed, b["tgt"]).logits
    assert torch.allclose(out[:, : t + 1], again[:, : t + 1], atol=1e-6)
    assert not torch.allclose(out[:, t + 1 :], again[:, t + 1 :])
    with pytest.raises(ValueError, match="T == S"):
        create_backbone("transformer", task, "scaled-dot", d_model=16, readout="aligned")(b["src"], b["tgt"][:, :4])
