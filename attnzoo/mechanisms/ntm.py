r"""Neural Turing Machine memory (Graves, Wayne, Danihelka 2014).

- Graves, Wayne, Danihelka (2014). *Neural Turing Machines.* arXiv:1410.5401,
  Sec. 3, Eq. (1)-(9).
- Collier, Beel (2018). *Implementing Neural Turing Machines.* ICANN.
  arXiv:1807.08518 (the constant ``1e-6`` memory initialisation used here).

The query stream is the controller's output. From each query a linear layer
emits every head's parameters, and the memory ``M`` (``N`` slots of width
``W``) is read and written once per step. The recurrence over the ``Tq``
steps is the only Python loop; addressing, reading and writing are batched
over examples, heads and slots.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnzoo.contract import Attention, AttentionOutput, _shape, check_like_parameters
from attnzoo.hookspecs import hookimpl
from attnzoo.spec import AttentionSpec

__all__ = [
    "NTMAttention",
    "NTMState",
    "NTMHeadParams",
    "content_addressing",
    "interpolate",
    "circular_shift",
    "shift_index",
    "sharpen",
    "erase_add",
]

GRAVES = "Graves, Wayne, Danihelka 2014. Neural Turing Machines. arXiv:1410.5401"
GRAVES_URL = "https://arxiv.org/abs/1410.5401"

#: Constant initial memory content (Collier & Beel 2018: small constants train fastest).
INIT_MEMORY_VALUE = 1e-6


class NTMState(NamedTuple):
    """What the NTM carries from one step (and one call) to the next.

    :ivar memory: ``[B, N, W]`` the memory matrix ``M_t``.
    :ivar read_weights: ``[B, R, N]`` each read head's last weighting ``w_t``.
    :ivar write_weights: ``[B, N]`` the write head's last weighting.
    """

    memory: Tensor
    read_weights: Tensor
    write_weights: Tensor


class NTMHeadParams(NamedTuple):
    """Every head's parameters for every step, emitted from the query.

    Heads are ordered read heads first, the write head last (``H = R + 1``);
    ``K = 2 * shift_range + 1`` shift offsets, ``-shift_range .. shift_range``.

    :ivar key: ``[B, Tq, H, W]`` key vector ``k_t``.
    :ivar beta: ``[B, Tq, H]`` key strength ``beta_t >= 0`` (softplus).
    :ivar gate: ``[B, Tq, H]`` interpolation gate ``g_t`` in (0, 1) (sigmoid).
    :ivar shift: ``[B, Tq, H, K]`` shift weighting ``s_t`` (softmax over offsets).
    :ivar gamma: ``[B, Tq, H]`` sharpening ``gamma_t >= 1`` (1 + softplus).
    :ivar erase: ``[B, Tq, W]`` write head's erase vector ``e_t`` in (0, 1) (sigmoid).
    :ivar add: ``[B, Tq, W]`` write head's add vector ``a_t`` (no squashing).
    """

    key: Tensor
    beta: Tensor
    gate: Tensor
    shift: Tensor
    gamma: Tensor
    erase: Tensor
    add: Tensor


# -- the paper's equations, batched over leading dims ---------------------------


def content_addressing(memory: Tensor, key: Tensor, beta: Tensor, eps: float = 1e-8) -> Tensor:
    r"""Eq. (5)-(6): focus by content.

    .. math:: w^c_t(i) = \frac{\exp(\beta_t K[k_t, M_t(i)])}{\sum_j \exp(\beta_t K[k_t, M_t(j)])},\qquad
              K[u, v] = \frac{u \cdot v}{\lVert u\rVert \lVert v\rVert}

    The norm product is clamped below at ``eps`` so an all-zero slot or key
    gives similarity 0, not NaN.

    :param memory: ``[B, N, W]``.
    :param key: ``[B, H, W]`` one key per head.
    :param beta: ``[B, H]`` key strengths.
    :returns: ``[B, H, N]``.
    """
    dots = torch.bmm(key, memory.transpose(1, 2))  # (B, H, N)
    norms = key.norm(dim=-1)[:, :, None] * memory.norm(dim=-1)[:, None, :]  # (B, H, N)
    similarity = dots / norms.clamp_min(eps)  # (B, H, N) cosine K[k, M(i)]
    return torch.softmax(beta[..., None] * similarity, dim=-1)


def interpolate(content: Tensor, previous: Tensor, gate: Tensor) -> Tensor:
    r"""Eq. (7): :math:`w^g_t = g_t w^c_t + (1 - g_t) w_{t-1}`.

    :param content: ``[..., N]``; previous ``[..., N]``; gate ``[...]``.
    """
    g = gate[..., None]
    return g * content + (1 - g) * previous


def shift_index(memory_slots: int, shift_range: int, device: torch.device | str | None = None) -> Tensor:
    """Long ``[K, N]`` index with ``index[o, i] = (i - offset_o) mod N``, offsets ``-S .. S``.

    Gathering ``w[..., index]`` gives ``w(i - offset)`` for every offset at once,
    which turns Eq. (8)'s circular convolution into one gather and one sum.
    """
    offsets = torch.arange(-shift_range, shift_range + 1, device=device)  # (K,)
    slots = torch.arange(memory_slots, device=device)  # (N,)
    return (slots[None, :] - offsets[:, None]) % memory_slots  # (K, N)


def circular_shift(weights: Tensor, shift: Tensor, index: Tensor | None = None) -> Tensor:
    r"""Eq. (8): rotate by the shift weighting (circular convolution, indices mod N).

    .. math:: \tilde w_t(i) = \sum_{j=0}^{N-1} w^g_t(j)\, s_t(i - j)

    ``s_t`` lives on offsets ``-S .. S``; an offset ``o`` moves weight from slot
    ``i - o`` to slot ``i``. With ``2S + 1 > N`` offsets that are equal mod N add up.

    :param weights: ``[..., N]`` the gated weighting ``w^g_t``.
    :param shift: ``[..., K]`` shift weighting over ``K = 2S + 1`` offsets.
    :param index: the :func:`shift_index` for ``(N, S)`` (computed if None).
    :returns: ``[..., N]``.
    """
    n, k = weights.shape[-1], shift.shape[-1]
    if index is None:
        index = shift_index(n, (k - 1) // 2, weights.device)
    rolled = weights[..., index]  # (..., K, N): rolled[..., o, i] = w(i - offset_o)
    return (shift[..., :, None] * rolled).sum(dim=-2)


def sharpen(weights: Tensor, gamma: Tensor) -> Tensor:
    r"""Eq. (9): :math:`w_t(i) = \tilde w_t(i)^{\gamma_t} / \sum_j \tilde w_t(j)^{\gamma_t}`.

    Computed as ``softmax(gamma * log w)``, which is the same quotient without
    underflow for large ``gamma``; ``w`` is clamped at the dtype's smallest
    normal number first so a zero entry stays (near) zero with finite gradients.

    :param weights: ``[..., N]`` non-negative; gamma ``[...]`` (>= 1).
    """
    log_w = weights.clamp_min(torch.finfo(weights.dtype).tiny).log()
    return torch.softmax(gamma[..., None] * log_w, dim=-1)


def erase_add(memory: Tensor, weights: Tensor, erase: Tensor, add: Tensor) -> Tensor:
    r"""Eq. (3)-(4): erase, then add.

    .. math:: \tilde M_t(i) = M_{t-1}(i)\,[\mathbf 1 - w_t(i) e_t],\qquad
              M_t(i) = \tilde M_t(i) + w_t(i)\, a_t

    :param memory: ``[B, N, W]``; weights ``[B, N]``; erase, add ``[B, W]``.
    :returns: ``[B, N, W]`` (a new tensor; the input is not modified).
    """
    w = weights[:, :, None]  # (B, N, 1)
    return memory * (1 - w * erase[:, None, :]) + w * add[:, None, :]


# -- the module ------------------------------------------------------------------


class NTMAttention(Attention):
    r"""Neural Turing Machine memory with ``R`` read heads and one write head
    (Graves, Wayne, Danihelka 2014, Sec. 3, Eq. (1)-(9)).

    The query ``h_t`` (the controller's output at step ``t``) goes through one
    ``nn.Linear`` that emits every head's parameters (:class:`NTMHeadParams`):
    key ``k_t`` (W), strength ``beta_t = softplus(.)``, gate
    ``g_t = sigmoid(.)``, shift ``s_t = softmax(.)`` over ``2S+1`` offsets,
    sharpening ``gamma_t = 1 + softplus(.)``; the write head also erase
    ``e_t = sigmoid(.)`` and add ``a_t`` (linear). Each head then addresses:

    1. content (Eq. 5-6): ``w^c = softmax_i(beta * cos(k, M(i)))``
    2. interpolation (Eq. 7): ``w^g = g w^c + (1 - g) w_{t-1}``
    3. shift (Eq. 8): ``w~(i) = sum_j w^g(j) s(i - j mod N)``
    4. sharpening (Eq. 9): ``w(i) = w~(i)^gamma / sum_j w~(j)^gamma``

    **Order within a step: write, then read.** The write head addresses
    ``M_{t-1}`` and produces ``M_t`` by Eq. (3)-(4); the read heads then
    address and read ``M_t`` (Eq. 2, ``r_t = sum_i w_t(i) M_t(i)``). This is
    the paper's indexing (reads come from ``M_t``, which the step-``t`` write
    makes from ``M_{t-1}``), and it lets the read at step ``t`` see what query
    ``t`` just wrote, so a backbone gets the current step's content back
    without a one-step delay. Outputs at ``t`` depend only on queries ``<= t``.

    The classic NTM controller also takes the previous read vectors as input;
    here that feedback loop, if wanted, belongs to the backbone (feed
    ``context[:, t]`` into the controller at ``t + 1``, calling with Tq=1 and
    the returned ``state``).

    **State** (:class:`NTMState`): memory ``[B, N, W]``, read weights
    ``[B, R, N]``, write weights ``[B, N]``. :meth:`initial_state` gives every
    slot the constant ``1e-6`` (``init_memory="constant"``, the scheme Collier
    & Beel 2018 found to train fastest) or a learned ``[N, W]`` parameter
    (``init_memory="learned"``, started at U(+-1/sqrt(N+W)) as the memory bias
    of common PyTorch reproductions), and one-hot weights on slot 0 for every
    head, so location-based addressing starts from a definite slot. Pass
    ``state=None`` to start fresh; pass the returned state to continue, so
    ``Tq`` steps in one call equal ``Tq`` calls of one step.

    Shapes: query ``[B, Tq, Dq]`` -> context ``[B, Tq, value_dim]`` (the R read
    vectors concatenated, ``value_dim = R * W``), weights ``[B, Tq, N]`` (read
    weights, mean over read heads), state, ``aux["write_weights"]``
    ``[B, Tq, N]``. ``key``, ``value`` and ``mask`` must be None: the memory is
    the NTM's own key/value store. Weights are always returned (no fused path).

    :param query_dim: Dq, the controller output size.
    :param key_dim: unused (the memory is the key store); accepted for the
        zoo's uniform constructor.
    :param value_dim: context size ``R * W``; must be divisible by
        ``num_read_heads`` (default: ``key_dim``, i.e. ``query_dim``).
    :param memory_slots: N, number of memory rows.
    :param num_read_heads: R.
    :param shift_range: S, shifts ``-S .. S`` (Graves et al. use S = 1).
    :param init_memory: ``"constant"`` (1e-6 everywhere) or ``"learned"``.
    :param eps: floor on the norm product in the cosine similarity.
    :param need_weights: accepted for the contract; weights are always returned.
    """

    def __init__(
        self,
        query_dim: int,
        key_dim: int | None = None,
        value_dim: int | None = None,
        *,
        memory_slots: int = 32,
        num_read_heads: int = 1,
        shift_range: int = 1,
        init_memory: str = "constant",
        eps: float = 1e-8,
        need_weights: bool = False,
    ) -> None:
        super().__init__(query_dim, key_dim, value_dim, need_weights=need_weights)
        for arg, val, low in (("memory_slots", memory_slots, 1), ("num_read_heads", num_read_heads, 1), ("shift_range", shift_range, 0)):
            if not isinstance(val, int) or isinstance(val, bool) or val < low:
                raise ValueError(f"{arg}: expected an int >= {low}, got {val!r}")
        if self.value_dim % num_read_heads:
            raise ValueError(
                f"value_dim: the context concatenates {num_read_heads} read vectors of width W, so value_dim "
                f"must be divisible by num_read_heads={num_read_heads}, got {self.value_dim}"
            )
        if init_memory not in ("constant", "learned"):
            raise ValueError(f"init_memory: expected 'constant' or 'learned', got {init_memory!r}")
        self.memory_slots = memory_slots
        self.num_read_heads = num_read_heads
        self.shift_range = shift_range
        self.memory_width = self.value_dim // num_read_heads
        self.init_memory = init_memory
        self.eps = float(eps)

        n, w, k = memory_slots, self.memory_width, 2 * shift_range + 1
        self._head_size = w + 3 + k  # key, beta, gate, shift, gamma
        self.controller = nn.Linear(query_dim, (num_read_heads + 1) * self._head_size + 2 * w)
        if init_memory == "learned":
            bound = 1.0 / math.sqrt(n + w)
            self.memory_init = nn.Parameter(torch.empty(n, w).uniform_(-bound, bound))
        else:
            self.register_buffer("memory_init", torch.full((n, w), INIT_MEMORY_VALUE), persistent=False)
        self.register_buffer("_shift_index", shift_index(n, shift_range), persistent=False)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, memory_slots={self.memory_slots}, memory_width={self.memory_width}, "
            f"num_read_heads={self.num_read_heads}, shift_range={self.shift_range}, init_memory={self.init_memory!r}"
        )

    # -- state ---------------------------------------------------------------
    def initial_state(
        self, batch_size: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> NTMState:
        """A fresh state: initial memory ``[B, N, W]`` and one-hot (slot 0) weights.

        :param device: default: the module's device. :param dtype: default: the module's dtype.
        """
        device = self.memory_init.device if device is None else device
        dtype = self.controller.weight.dtype if dtype is None else dtype
        memory = self.memory_init.to(device=device, dtype=dtype).expand(batch_size, -1, -1).clone()
        onehot = torch.zeros(self.memory_slots, device=device, dtype=dtype)
        onehot[0] = 1
        return NTMState(
            memory,
            onehot.expand(batch_size, self.num_read_heads, -1).clone(),
            onehot.expand(batch_size, -1).clone(),
        )

    def _check_state(self, state: Any, batch: int) -> NTMState:
        n, w, r = self.memory_slots, self.memory_width, self.num_read_heads
        expected = {"memory": (batch, n, w), "read_weights": (batch, r, n), "write_weights": (batch, n)}
        if not isinstance(state, tuple) or len(state) != 3:
            raise ValueError(
                f"state: expected an NTMState(memory [{batch}, {n}, {w}], read_weights [{batch}, {r}, {n}], "
                f"write_weights [{batch}, {n}]) from initial_state() or a previous call, got {type(state).__name__}"
            )
        state = NTMState(*state)
        for name, shape in expected.items():
            t = getattr(state, name)
            if not isinstance(t, Tensor) or tuple(t.shape) != shape:
                got = _shape(t) if isinstance(t, Tensor) else type(t).__name__
                raise ValueError(f"state.{name}: expected shape [{', '.join(map(str, shape))}], got {got}")
        return state

    # -- contract --------------------------------------------------------------
    def check_inputs(self, query, key, value, mask):
        """Reject key/value/mask (the memory is the key store), then check query with the base's rules
        (its dtype that of the controller's weights, outside autocast).

        :returns: ``(query, None, None, None)``.
        """
        for arg, given in (("key", key), ("value", value), ("mask", mask)):
            if given is not None:
                raise ValueError(
                    f"{arg}: NTMAttention takes no {arg}; it attends over its own memory, which is its key and "
                    f"value store (written from the query stream), so key, value and mask must be None"
                )
        check_like_parameters(self.check_query(query), self)
        return query, None, None, None

    def head_params(self, query: Tensor) -> NTMHeadParams:
        """Emit every head's parameters for every step at once: ``query [B, Tq, Dq]`` -> :class:`NTMHeadParams`."""
        b, t, _ = query.shape
        h, w, p = self.num_read_heads + 1, self.memory_width, self._head_size
        out = self.controller(query)  # (B, Tq, H*P + 2W)
        heads = out[..., : h * p].view(b, t, h, p)  # (B, Tq, H, P)
        key, beta, gate, shift, gamma = heads.split([w, 1, 1, p - w - 3, 1], dim=-1)
        erase, add = out[..., h * p :].split([w, w], dim=-1)  # (B, Tq, W) each
        return NTMHeadParams(
            key=key,
            beta=F.softplus(beta.squeeze(-1)),
            gate=torch.sigmoid(gate.squeeze(-1)),
            shift=torch.softmax(shift, dim=-1),
            gamma=1 + F.softplus(gamma.squeeze(-1)),
            erase=torch.sigmoid(erase),
            add=add,
        )

    def address(self, memory: Tensor, previous: Tensor, key: Tensor, beta: Tensor, gate: Tensor, shift: Tensor, gamma: Tensor) -> Tensor:
        """Eq. (5)-(9) for ``H`` heads at one step: memory ``[B, N, W]``, previous ``[B, H, N]`` -> ``[B, H, N]``."""
        w_c = content_addressing(memory, key, beta, self.eps)  # (B, H, N)
        w_g = interpolate(w_c, previous, gate)  # (B, H, N)
        w_s = circular_shift(w_g, shift, self._shift_index)  # (B, H, N)
        return sharpen(w_s, gamma)  # (B, H, N)

    def attend(self, query, key, value, mask, *, state=None, need_weights=True) -> AttentionOutput:
        b, tq, _ = query.shape
        r = self.num_read_heads
        state = self.initial_state(b, query.device, query.dtype) if state is None else self._check_state(state, b)
        memory, read_w, write_w = state
        p = self.head_params(query)
        reads, read_ws, write_ws = [], [], []
        for t in range(tq):  # the recurrence; everything inside is batched
            # write head (last) addresses M_{t-1}, then erases and adds: M_t (Eq. 3-4)
            write_w = self.address(
                memory, write_w[:, None], p.key[:, t, r:], p.beta[:, t, r:], p.gate[:, t, r:], p.shift[:, t, r:], p.gamma[:, t, r:]
            )[:, 0]  # (B, N)
            memory = erase_add(memory, write_w, p.erase[:, t], p.add[:, t])  # (B, N, W)
            # read heads address and read M_t (Eq. 2)
            read_w = self.address(
                memory, read_w, p.key[:, t, :r], p.beta[:, t, :r], p.gate[:, t, :r], p.shift[:, t, :r], p.gamma[:, t, :r]
            )  # (B, R, N)
            reads.append(torch.bmm(read_w, memory).reshape(b, r * self.memory_width))  # (B, R*W)
            read_ws.append(read_w.mean(dim=1))  # (B, N)
            write_ws.append(write_w)
        if tq == 0:
            context = query.new_zeros(b, 0, self.value_dim)
            weights = query.new_zeros(b, 0, self.memory_slots)
            writes = query.new_zeros(b, 0, self.memory_slots)
        else:
            context, weights, writes = (torch.stack(x, dim=1) for x in (reads, read_ws, write_ws))
        return AttentionOutput(
            context,  # (B, Tq, R*W)
            weights,  # (B, Tq, N)
            NTMState(memory, read_w, write_w),
            {"write_weights": writes},  # (B, Tq, N)
        )

    def uniform_output(self, query, key, value, mask, out: AttentionOutput) -> AttentionOutput:
        """The uniform-attention ablation (:func:`attnzoo.contract.uniform_attention`): every read head
        reads the mean memory row of ``M_t`` (weights ``1/N`` on every slot); the writes and the state
        (including the read weights that location addressing continues from) stay as trained. Exact for
        one query step, the NTM backbone's call; with ``Tq > 1`` every step reads the last step's memory."""
        b, tq, _ = query.shape
        mean_row = out.state.memory.mean(dim=1)  # (B, W)
        context = mean_row.repeat(1, self.num_read_heads)[:, None].expand(b, tq, self.value_dim)  # (B, Tq, R*W)
        weights = out.weights.new_full(out.weights.shape, 1.0 / self.memory_slots)  # (B, Tq, N)
        return AttentionOutput(context, weights, out.state, dict(out.aux))


SPECS: dict[str, tuple[AttentionSpec, Any]] = {
    "ntm": (
        AttentionSpec(
            name="ntm",
            family="memory",
            summary="Neural Turing Machine memory: content + location addressed read heads and an erase/add write head",
            paper=f"{GRAVES}, Sec. 3, Eq. (1)-(9)",
            url=GRAVES_URL,
            self_attention=False,
            cross_attention=False,
            causal_safe=True,
            stateful=True,
            multihead=False,
            complexity="O(Tq*N*W)",
            aux_keys=("write_weights",),
            notes=(
                "attends over its own N-slot memory, written from the query stream step by step; it takes no "
                "key/value sequence (key, value and mask must be None), so it is neither self- nor cross-attention "
                "over tokens; its heads are read/write heads (num_read_heads), not per-head projections"
            ),
        ),
        NTMAttention,
    ),
}


@hookimpl
def register_attention(register):
    for spec, factory in SPECS.values():
        register(spec, factory)
