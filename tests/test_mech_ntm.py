"""NTMAttention against the paper's equations (Graves et al. 2014, Eq. (2)-(9)), written here as plain loops."""

from __future__ import annotations

import math

import pytest
import torch

from attnzoo.mechanisms.ntm import (
    NTMAttention,
    NTMState,
    circular_shift,
    content_addressing,
    erase_add,
    interpolate,
    sharpen,
)
from attnzoo.registry import create_attention, get_spec, list_attention

DT = torch.float64


@pytest.fixture(autouse=True)
def one_thread():
    """These tensors are tiny: intra-op threads only add synchronisation (slow on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rand(*shape, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=gen(seed), dtype=DT)


def simplex(*shape, seed: int = 0) -> torch.Tensor:
    return torch.softmax(rand(*shape, seed=seed), dim=-1)


# -- the paper's formulas, one number at a time -----------------------------------


def ref_content(memory, key, beta, eps=1e-8):
    """Eq. (5)-(6) for one head: memory [N, W], key [W], beta float -> [N]."""
    n, w = memory.shape
    key_norm = math.sqrt(sum(float(key[j]) ** 2 for j in range(w)))
    sims = []
    for i in range(n):
        dot = sum(float(key[j]) * float(memory[i, j]) for j in range(w))
        mem_norm = math.sqrt(sum(float(memory[i, j]) ** 2 for j in range(w)))
        sims.append(dot / max(key_norm * mem_norm, eps))
    e = [math.exp(float(beta) * s) for s in sims]
    return torch.tensor([x / sum(e) for x in e], dtype=DT)


def ref_interpolate(content, previous, gate):
    """Eq. (7) for one head."""
    return torch.tensor([float(gate) * float(c) + (1 - float(gate)) * float(p) for c, p in zip(content, previous)], dtype=DT)


def ref_shift(weights, shift):
    """Eq. (8) for one head: s over offsets -S..S, folded onto Z_N, then w~(i) = sum_j w(j) s(i - j mod N)."""
    n, k = len(weights), len(shift)
    s_mod = [0.0] * n
    for idx in range(k):
        s_mod[(idx - (k - 1) // 2) % n] += float(shift[idx])
    return torch.tensor([sum(float(weights[j]) * s_mod[(i - j) % n] for j in range(n)) for i in range(n)], dtype=DT)


def ref_sharpen(weights, gamma):
    """Eq. (9) for one head."""
    p = [float(x) ** float(gamma) for x in weights]
    return torch.tensor([x / sum(p) for x in p], dtype=DT)


def ref_address(memory, previous, key, beta, gate, shift, gamma, eps=1e-8):
    return ref_sharpen(ref_shift(ref_interpolate(ref_content(memory, key, beta, eps), previous, gate), shift), gamma)


def ref_write(memory, weights, erase, add):
    """Eq. (3)-(4): erase then add, slot by slot."""
    n, w = memory.shape
    out = memory.clone()
    for i in range(n):
        for j in range(w):
            erased = float(memory[i, j]) * (1 - float(weights[i]) * float(erase[j]))
            out[i, j] = erased + float(weights[i]) * float(add[j])
    return out


def ref_read(memory, weights):
    """Eq. (2): r = sum_i w(i) M(i)."""
    n, w = memory.shape
    return torch.tensor([sum(float(weights[i]) * float(memory[i, j]) for i in range(n)) for j in range(w)], dtype=DT)


def ref_ntm(module: NTMAttention, query, state):
    """The whole recurrence, per example and per head, from the controller's raw output.

    The raw output is split as the module documents: for each head (read heads, then the
    write head) [key W | beta | gate | shift 2S+1 | gamma], then erase W, add W.
    """
    b, tq, _ = query.shape
    r, w, n = module.num_read_heads, module.memory_width, module.memory_slots
    k = 2 * module.shift_range + 1
    size = w + 3 + k
    raw = module.controller(query).detach()
    softplus = torch.nn.functional.softplus
    contexts, weights, writes = [], [], []
    memories, read_ws, write_ws = [], [], []
    for bi in range(b):
        memory = state.memory[bi].detach().clone()
        read_w = [state.read_weights[bi, h].clone() for h in range(r)]
        write_w = state.write_weights[bi].clone()
        ctx_b, wts_b, wr_b = [], [], []
        for t in range(tq):
            out = raw[bi, t]

            def head(h):
                o = out[h * size : (h + 1) * size]
                return (
                    o[:w],
                    softplus(o[w]),
                    torch.sigmoid(o[w + 1]),
                    torch.softmax(o[w + 2 : w + 2 + k], dim=0),
                    1 + softplus(o[w + 2 + k]),
                )

            erase = torch.sigmoid(out[(r + 1) * size : (r + 1) * size + w])
            add = out[(r + 1) * size + w :]
            write_w = ref_address(memory, write_w, *head(r), eps=module.eps)
            memory = ref_write(memory, write_w, erase, add)
            read_w = [ref_address(memory, read_w[h], *head(h), eps=module.eps) for h in range(r)]
            ctx_b.append(torch.cat([ref_read(memory, read_w[h]) for h in range(r)]))
            wts_b.append(sum(read_w) / r)
            wr_b.append(write_w)
        contexts.append(torch.stack(ctx_b))
        weights.append(torch.stack(wts_b))
        writes.append(torch.stack(wr_b))
        memories.append(memory)
        read_ws.append(torch.stack(read_w))
        write_ws.append(write_w)
    return (
        torch.stack(contexts),
        torch.stack(weights),
        torch.stack(writes),
        NTMState(torch.stack(memories), torch.stack(read_ws), torch.stack(write_ws)),
    )


def make(seed: int = 0, **kw) -> NTMAttention:
    opts = dict(query_dim=6, value_dim=6, memory_slots=5, num_read_heads=2, shift_range=1)
    opts.update(kw)
    torch.manual_seed(seed)
    return NTMAttention(opts.pop("query_dim"), value_dim=opts.pop("value_dim"), **opts).to(DT)


def random_state(module: NTMAttention, b: int, seed: int = 1) -> NTMState:
    n, w, r = module.memory_slots, module.memory_width, module.num_read_heads
    return NTMState(rand(b, n, w, seed=seed), simplex(b, r, n, seed=seed + 1), simplex(b, n, seed=seed + 2))


def close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


# -- each addressing stage against its equation ---------------------------------------


def test_content_addressing_eq5_6():
    memory, key, beta = rand(2, 7, 4, seed=1), rand(2, 3, 4, seed=2), rand(2, 3, seed=3).abs() * 3
    memory[0, 2] = 0  # an all-zero slot: similarity 0, not NaN
    got = content_addressing(memory, key, beta)
    for b in range(2):
        for h in range(3):
            close(got[b, h], ref_content(memory[b], key[b, h], beta[b, h]))
    assert torch.isfinite(got).all()


def test_interpolation_eq7():
    wc, prev, g = simplex(2, 3, 6, seed=1), simplex(2, 3, 6, seed=2), torch.rand(2, 3, generator=gen(3), dtype=DT)
    got = interpolate(wc, prev, g)
    for b in range(2):
        for h in range(3):
            close(got[b, h], ref_interpolate(wc[b, h], prev[b, h], g[b, h]))


@pytest.mark.parametrize("n,s", [(6, 1), (7, 2), (5, 0), (3, 2)])  # (3, 2): 5 offsets fold onto 3 slots
def test_circular_shift_eq8(n, s):
    w, shift = simplex(2, 3, n, seed=1), simplex(2, 3, 2 * s + 1, seed=2)
    got = circular_shift(w, shift)
    for b in range(2):
        for h in range(3):
            close(got[b, h], ref_shift(w[b, h], shift[b, h]))


def test_circular_shift_moves_a_one_hot_by_the_offset():
    w = torch.zeros(1, 5, dtype=DT)
    w[0, 4] = 1
    plus_one = torch.tensor([[0.0, 0.0, 1.0]], dtype=DT)  # all mass on offset +1
    assert circular_shift(w, plus_one)[0].argmax() == 0  # slot 4 -> slot 0, wrapping around


def test_sharpening_eq9():
    w, gamma = simplex(2, 3, 6, seed=1), 1 + rand(2, 3, seed=2).abs() * 4
    got = sharpen(w, gamma)
    for b in range(2):
        for h in range(3):
            close(got[b, h], ref_sharpen(w[b, h], gamma[b, h]))


def test_sharpening_keeps_zero_entries_finite():
    w = torch.tensor([[0.0, 0.25, 0.75]], dtype=DT, requires_grad=True)
    gamma = torch.tensor([2.0], dtype=DT, requires_grad=True)
    out = sharpen(w, gamma)
    close(out.detach(), torch.tensor([[0.0, 0.1, 0.9]], dtype=DT))
    out[0, 2].backward()
    assert torch.isfinite(w.grad).all() and torch.isfinite(gamma.grad).all()


def test_erase_add_eq3_4():
    memory, w = rand(2, 5, 4, seed=1), simplex(2, 5, seed=2)
    erase, add = torch.rand(2, 4, generator=gen(3), dtype=DT), rand(2, 4, seed=4)
    before = memory.clone()
    got = erase_add(memory, w, erase, add)
    close(memory, before)  # not in place
    for b in range(2):
        close(got[b], ref_write(memory[b], w[b], erase[b], add[b]))


# -- the module against the whole recurrence ------------------------------------------


@pytest.mark.parametrize("kw", [{}, {"num_read_heads": 1, "value_dim": 3, "shift_range": 2}, {"init_memory": "learned"}])
def test_module_matches_reference_recurrence(kw):
    m = make(**kw)
    query = rand(2, 4, 6, seed=5)
    for state in (None, random_state(m, 2)):
        start = m.initial_state(2, dtype=DT) if state is None else state
        ctx, wts, writes, final = ref_ntm(m, query, start)
        with torch.no_grad():
            out = m(query, state=state)
        close(out.context, ctx)
        close(out.weights, wts)
        close(out.aux["write_weights"], writes)
        for got, want in zip(out.state, final):
            close(got, want)


def test_head_params_ranges():
    m = make(shift_range=2)
    p = m.head_params(rand(3, 4, 6, seed=1) * 5)
    h, w = m.num_read_heads + 1, m.memory_width
    assert p.key.shape == (3, 4, h, w) and p.shift.shape == (3, 4, h, 5) and p.erase.shape == p.add.shape == (3, 4, w)
    assert (p.beta >= 0).all() and ((p.gate > 0) & (p.gate < 1)).all() and (p.gamma >= 1).all()
    assert ((p.erase > 0) & (p.erase < 1)).all()
    close(p.shift.sum(-1), torch.ones(3, 4, h, dtype=DT))


def test_shapes_and_initial_state():
    m = NTMAttention(8, value_dim=12, memory_slots=7, num_read_heads=3)
    assert m.memory_width == 4
    s = m.initial_state(2)
    assert s.memory.shape == (2, 7, 4) and s.read_weights.shape == (2, 3, 7) and s.write_weights.shape == (2, 7)
    assert s.memory.dtype == torch.float32
    assert torch.all(s.memory == 1e-6)
    assert torch.all(s.read_weights[..., 0] == 1) and torch.all(s.write_weights[:, 0] == 1)
    assert m.initial_state(1, dtype=DT).memory.dtype == DT
    out = m(torch.randn(2, 5, 8))
    assert out.context.shape == (2, 5, 12)
    assert out.weights.shape == out.aux["write_weights"].shape == (2, 5, 7)
    assert isinstance(out.state, NTMState)


def test_chunked_calls_equal_one_call():
    m = make()
    query = rand(2, 5, 6, seed=3)
    with torch.no_grad():
        whole = m(query)
        state, parts = None, []
        for t in range(5):
            step = m(query[:, t : t + 1], state=state)
            state = step.state
            parts.append(step)
    close(torch.cat([p.context for p in parts], 1), whole.context)
    close(torch.cat([p.weights for p in parts], 1), whole.weights)
    close(torch.cat([p.aux["write_weights"] for p in parts], 1), whole.aux["write_weights"])
    for got, want in zip(state, whole.state):
        close(got, want)


def test_weights_are_distributions():
    m = make(num_read_heads=3, value_dim=9, memory_slots=8)
    out = m(rand(3, 6, 6, seed=2) * 4)
    for w in (out.weights, out.aux["write_weights"], out.state.read_weights):
        assert (w >= 0).all()
        close(w.sum(-1), torch.ones(w.shape[:-1], dtype=DT))


def test_causal_no_gradient_from_later_queries():
    m = make()
    query = rand(2, 5, 6, seed=4).requires_grad_()
    out = m(query)
    for t in range(5):
        for name, y in (("context", out.context), ("weights", out.weights), ("write", out.aux["write_weights"])):
            probe = rand(*y[:, t].shape, seed=t)  # not a plain sum: weights always sum to 1
            (grad,) = torch.autograd.grad((y[:, t] * probe).sum(), query, retain_graph=True)
            assert torch.all(grad[:, t + 1 :] == 0), (name, t)
            assert grad[:, t].abs().sum() > 0, (name, t)


def test_gradcheck_float64():
    m = make(memory_slots=4, num_read_heads=2, value_dim=4, query_dim=3, init_memory="learned")
    query = rand(2, 3, 3, seed=6).requires_grad_()
    memory = rand(2, 4, 2, seed=7).requires_grad_()
    read_w, write_w = simplex(2, 2, 4, seed=8), simplex(2, 4, seed=9)

    def f(q, mem):
        out = m(q, state=NTMState(mem, read_w, write_w))
        return out.context, out.weights, out.aux["write_weights"], out.state.memory

    assert torch.autograd.gradcheck(f, (query, memory))
    assert torch.autograd.gradcheck(lambda q: m(q).context, (query,))  # from initial_state's learned memory


def test_learned_initial_memory_gets_gradient():
    m = make(init_memory="learned")
    assert isinstance(m.memory_init, torch.nn.Parameter)
    m(rand(2, 3, 6)).context.sum().backward()
    assert m.memory_init.grad is not None and m.memory_init.grad.abs().sum() > 0
    assert "memory_init" not in dict(make().named_parameters())


def test_batch_independence():
    m = make()
    query = rand(3, 4, 6, seed=2)
    state = random_state(m, 3)
    with torch.no_grad():
        full = m(query, state=state)
        for b in range(3):
            one = m(query[b : b + 1], state=NTMState(*(s[b : b + 1] for s in state)))
            close(one.context, full.context[b : b + 1])
            close(one.weights, full.weights[b : b + 1])
            close(one.state.memory, full.state.memory[b : b + 1])
        changed = query.clone()
        changed[0] += 1
        other = m(changed, state=state)
    assert torch.equal(other.context[1:], full.context[1:])


def test_zero_steps_keeps_state():
    m = make()
    state = random_state(m, 2)
    out = m(rand(2, 0, 6), state=state)
    assert out.context.shape == (2, 0, 6) and out.weights.shape == (2, 0, 5)
    assert all(torch.equal(a, b) for a, b in zip(out.state, state))


@pytest.mark.parametrize("arg", ["key", "value", "mask"])
def test_key_value_mask_rejected(arg):
    m = make()
    q = rand(2, 3, 6)
    extra = {"key": rand(2, 3, 6), "value": rand(2, 3, 6), "mask": torch.ones(2, 3, dtype=torch.bool)}[arg]
    with pytest.raises(ValueError, match=f"{arg}: .*own memory"):
        if arg == "mask":
            m(q, mask=extra)
        else:
            m(q, **{arg: extra})


def test_bad_inputs_raise():
    m = make()
    with pytest.raises(ValueError, match="query: expected a 3-D"):
        m(rand(2, 6))
    with pytest.raises(ValueError, match="query: expected last dim 6"):
        m(rand(2, 3, 5))
    with pytest.raises(ValueError, match=r"state.memory: expected shape \[2, 5, 3\]"):
        m(rand(2, 3, 6), state=random_state(m, 3))
    with pytest.raises(ValueError, match="state: expected an NTMState"):
        m(rand(2, 3, 6), state=rand(2, 5, 3))
    with pytest.raises(ValueError, match="divisible by num_read_heads=4"):
        NTMAttention(6, value_dim=6, num_read_heads=4)
    with pytest.raises(ValueError, match="memory_slots"):
        NTMAttention(6, memory_slots=0)
    with pytest.raises(ValueError, match="init_memory"):
        NTMAttention(6, init_memory="zeros")


def test_registered_spec():
    assert "ntm" in list_attention(family="memory")
    spec = get_spec("ntm")
    assert (spec.self_attention, spec.cross_attention, spec.multihead) == (False, False, False)
    assert spec.stateful and spec.causal_safe and spec.differentiable
    assert spec.complexity == "O(Tq*N*W)" and spec.aux_keys == ("write_weights",) and spec.notes
    m = create_attention("ntm", 8, memory_slots=4, num_read_heads=2)
    assert isinstance(m, NTMAttention) and m.value_dim == 8 and m.memory_width == 4
    with pytest.raises(ValueError, match="num_heads"):
        create_attention("ntm", 8, num_heads=2)


@pytest.mark.slow
def test_learns_to_recall_the_previous_step():
    """A linear read-out of the context learns to reproduce the query seen one step earlier.

    x_{t-1} is independent of x_t, so without memory the best MSE is 1.0 (predict 0).
    """
    torch.manual_seed(0)
    d, steps = 4, 8
    m = NTMAttention(d, value_dim=8, memory_slots=12, num_read_heads=1)
    readout = torch.nn.Linear(8, d)
    opt = torch.optim.Adam([*m.parameters(), *readout.parameters()], lr=1e-2)
    g = gen(0)
    losses = []
    for _ in range(1000):
        x = torch.randint(0, 2, (32, steps, d), generator=g).float() * 2 - 1
        pred = readout(m(x).context)[:, 1:]
        loss = torch.nn.functional.mse_loss(pred, x[:, :-1])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-100:]) / 100 < 0.4
