"""Additive (concat / MLP) attention: Bahdanau, Cho, Bengio's alignment model.

- Bahdanau, Cho, Bengio (2015). *Neural Machine Translation by Jointly Learning
  to Align and Translate.* ICLR. arXiv:1409.0473, Eq. (6) and Appendix A.1.2.

The score of query ``s_i`` against key ``h_j`` is a one-hidden-layer MLP,
``e_ij = v_a^T tanh(W_a s_i + U_a h_j)``. Unlike a dot product it does not
factor into a matrix product, so computed naively it materialises a
``[B, Tq, Tk, hidden]`` tensor. Here ``U_a h_j`` is computed once, and the
queries are processed in chunks whose ``[B, chunk, Tk, hidden]`` tensor stays
under a fixed element budget; with gradients enabled each chunk runs under
``torch.utils.checkpoint`` so backward holds only one chunk's activations at a
time. Softmax is per query row, so chunking over queries is exact.

``impl="triton"`` runs the fused Triton kernel instead (:mod:`attnzoo.mechanisms.additive_triton`:
keys tiled with an online softmax, so no ``[B, Tq, Tk, hidden]`` tensor exists, forward or
backward). ``impl="auto"`` (default) takes it only on CUDA, with Triton installed
(``pip install attnzoo[triton]``), without weights asked for, and where
:data:`attnzoo.autotable.AUTO_MIN_KEYS` says it measured faster than this chunked path for the
dtype and key count; no GPU measurement exists yet, so today ``auto`` is the chunked path
everywhere. ``impl="reference"`` is always the chunked path.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from attnzoo.autotable import auto_takes
from attnzoo.contract import AttentionOutput, ScoreAttention, compute_dtype, masked_softmax
from attnzoo.hookspecs import hookimpl
from attnzoo.spec import AttentionSpec

__all__ = ["AdditiveAttention", "IMPLS", "triton_available"]

BAHDANAU = (
    "Bahdanau, Cho, Bengio 2015. Neural Machine Translation by Jointly Learning to Align and Translate. "
    "ICLR (arXiv:1409.0473)"
)
BAHDANAU_URL = "https://arxiv.org/abs/1409.0473"

#: Default cap on the elements of one chunk's ``[B, chunk, Tk, hidden]`` tensor
#: (2**25 elements = 128 MiB in float32).
DEFAULT_CHUNK_ELEMENTS = 2**25

_INITS = ("default", "paper")
#: what ``impl`` may name (see the module docstring)
IMPLS = ("auto", "reference", "triton")


def triton_available() -> bool:
    """Whether Triton can be imported (the ``attnzoo[triton]`` extra)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


class AdditiveAttention(ScoreAttention):
    r"""Bahdanau additive attention (Bahdanau, Cho, Bengio 2015, ICLR, arXiv:1409.0473, Eq. (6), App. A.1.2):

    .. math::
        e_{ij} = v_a^\top \tanh(W_a s_{i-1} + U_a h_j),\qquad
        \alpha_{ij} = \frac{\exp e_{ij}}{\sum_k \exp e_{ik}},\qquad
        c_i = \sum_j \alpha_{ij} h_j

    Here the query row ``query[:, i]`` plays ``s_{i-1}`` (the decoder state the
    score is conditioned on), ``key[:, j]`` plays the annotation ``h_j`` and the
    context sums ``value[:, j]`` (``value = key`` by default, as in the paper).

    Parameters (named as in the paper): ``W_a`` (``nn.Linear(Dq, hidden)``, no
    bias), ``U_a`` (``nn.Linear(Dk, hidden)``, no bias), ``v_a`` (``[hidden]``)
    and, only with ``bias=True``, ``b_a`` (``[hidden]``) inside the tanh.

    Shapes: query ``[B, Tq, Dq]``, key ``[B, Tk, Dk]``, value ``[B, Tk, Dv]``,
    mask bool ``[B, Tk]`` or ``[B, Tq, Tk]`` -> context ``[B, Tq, Dv]``,
    weights ``[B, Tq, Tk]`` (when requested).

    Memory: ``U_a h`` is computed once; queries are processed ``chunk_size`` at
    a time so no tensor larger than ``[B, chunk_size, Tk, hidden]`` exists, and
    with grad enabled (and more than one chunk) each chunk is checkpointed so
    backward recomputes it instead of storing every chunk's activations.

    :param hidden_dim: n', the alignment MLP's hidden size (default ``key_dim``).
    :param bias: add a learned bias ``b_a`` inside the tanh. The paper's
        alignment model (Eq. 6, App. A.1.2) has none, so the default is False;
        one bias suffices (biases on ``W_a`` and ``U_a`` would just add up).
    :param chunk_size: queries per chunk; None (default) picks the largest
        chunk whose ``[B, chunk, Tk, hidden]`` tensor has at most
        ``chunk_elements`` elements.
    :param chunk_elements: the element budget used when ``chunk_size`` is None
        (default 2**25, 128 MiB in float32).
    :param init: ``"default"`` (PyTorch's ``nn.Linear`` init for ``W_a``,
        ``U_a``; ``v_a`` uniform in ``+-1/sqrt(hidden)``) or ``"paper"``
        (App. A.2.2: ``W_a``, ``U_a`` ~ N(0, 0.001^2), ``v_a`` and biases zero;
        all scores start at 0, i.e. uniform attention).
    :param need_weights: return weights by default.
    :param impl: ``"auto"`` (default), ``"reference"`` (the chunked path) or ``"triton"`` (the fused
        kernel; on the CPU only under ``TRITON_INTERPRET=1``); see the module docstring.
    """

    def __init__(
        self,
        query_dim: int,
        key_dim: int | None = None,
        value_dim: int | None = None,
        *,
        hidden_dim: int | None = None,
        bias: bool = False,
        chunk_size: int | None = None,
        chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
        init: str = "default",
        need_weights: bool = False,
        impl: str = "auto",
    ) -> None:
        super().__init__(query_dim, key_dim, value_dim, need_weights=need_weights)
        if impl not in IMPLS:
            raise ValueError(f"impl: expected one of {', '.join(map(repr, IMPLS))}, got {impl!r}")
        self.impl = impl
        hidden_dim = self.key_dim if hidden_dim is None else hidden_dim
        for arg, val, allow_none in (
            ("hidden_dim", hidden_dim, False),
            ("chunk_size", chunk_size, True),
            ("chunk_elements", chunk_elements, False),
        ):
            if val is None and allow_none:
                continue
            if not isinstance(val, int) or isinstance(val, bool) or val <= 0:
                raise ValueError(f"{arg}: expected a positive int{' or None' if allow_none else ''}, got {val!r}")
        if not isinstance(bias, bool):
            raise ValueError(f"bias: expected a bool, got {bias!r}")
        if init not in _INITS:
            raise ValueError(f"init: expected one of {', '.join(map(repr, _INITS))}, got {init!r}")
        self.hidden_dim = hidden_dim
        self.chunk_size = chunk_size
        self.chunk_elements = chunk_elements
        self.W_a = nn.Linear(self.query_dim, hidden_dim, bias=False)
        self.U_a = nn.Linear(self.key_dim, hidden_dim, bias=False)
        self.v_a = nn.Parameter(torch.empty(hidden_dim))
        self.b_a = nn.Parameter(torch.zeros(hidden_dim)) if bias else None
        self.init = init
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.init == "paper":
            # Bahdanau et al. 2015, App. A.2.2.
            nn.init.normal_(self.W_a.weight, 0.0, 0.001)
            nn.init.normal_(self.U_a.weight, 0.0, 0.001)
            nn.init.zeros_(self.v_a)
        else:
            self.W_a.reset_parameters()
            self.U_a.reset_parameters()
            bound = 1.0 / math.sqrt(self.hidden_dim)
            nn.init.uniform_(self.v_a, -bound, bound)
        if self.b_a is not None:
            nn.init.zeros_(self.b_a)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, hidden_dim={self.hidden_dim}, bias={self.b_a is not None}, "
            f"chunk_size={self.chunk_size}, chunk_elements={self.chunk_elements}"
            + ("" if self.impl == "auto" else f", impl={self.impl!r}")
        )

    def use_fused(self, query: Tensor, key: Tensor) -> bool:
        """Whether this call takes the Triton kernel (``impl``'s rule, see the module docstring)."""
        if self.impl != "auto":
            return self.impl == "triton"
        if query.device.type != "cuda" or not auto_takes("triton-additive", compute_dtype(query), "any", key.shape[1]):
            return False
        if not triton_available():
            return False
        from attnzoo.mechanisms.additive_triton import supported

        return supported(self.hidden_dim, self.value_dim)

    # -- pieces ------------------------------------------------------------
    def _project(self, query: Tensor, key: Tensor) -> tuple[Tensor, Tensor]:
        ws = self.W_a(query)  # (B, Tq, H)  W_a s_i
        uh = self.U_a(key)  # (B, Tk, H)  U_a h_j, once for all queries
        if self.b_a is not None:
            uh = uh + self.b_a
        return ws, uh

    def _chunk_scores(self, ws: Tensor, uh: Tensor) -> Tensor:
        """``v_a^T tanh(ws_i + uh_j)`` for a chunk of queries: ``[B, c, H], [B, Tk, H] -> [B, c, Tk]``."""
        hidden = ws[:, :, None, :] + uh[:, None, :, :]  # (B, c, Tk, H)
        # In place: add's backward needs neither input, so only tanh's output is kept.
        hidden = hidden.tanh_()
        return torch.matmul(hidden, self.v_a)  # (B, c, Tk)

    def _chunk(self, ws: Tensor, uh: Tensor, value: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        weights = masked_softmax(self._chunk_scores(ws, uh), mask)  # (B, c, Tk)
        return torch.bmm(weights, value), weights  # (B, c, Dv), (B, c, Tk)

    def chunk_len(self, batch: int, tq: int, tk: int) -> int:
        """Queries per chunk for these sizes (``chunk_size`` or from the element budget)."""
        if self.chunk_size is not None:
            return max(1, min(self.chunk_size, tq))
        per_query = batch * tk * self.hidden_dim
        return max(1, min(tq, self.chunk_elements // max(per_query, 1)))

    # -- contract ----------------------------------------------------------
    def _use_checkpoint(self, chunk: int, tq: int, *tensors: Tensor) -> bool:
        # One chunk is already bounded by the budget; plain autograd is cheaper then.
        return chunk < tq and torch.is_grad_enabled() and any(t.requires_grad for t in (*tensors, self.v_a))

    def score(self, query: Tensor, key: Tensor) -> Tensor:
        """Unnormalised scores ``e_ij`` ``[B, Tq, Tk]``, computed chunk by chunk over queries (or fused)."""
        ws, uh = self._project(query, key)  # (B, Tq, H), (B, Tk, H)
        if self.use_fused(query, key):
            from attnzoo.mechanisms.additive_triton import fused_additive_scores

            return fused_additive_scores(ws, uh, self.v_a)  # (B, Tq, Tk); no (B, Tq, Tk, H) tensor
        tq = ws.shape[1]
        c = self.chunk_len(query.shape[0], tq, key.shape[1])
        if c >= tq:
            return self._chunk_scores(ws, uh)
        use_ckpt = self._use_checkpoint(c, tq, ws, uh)
        parts = [
            checkpoint(self._chunk_scores, ws[:, i : i + c], uh, use_reentrant=False)
            if use_ckpt
            else self._chunk_scores(ws[:, i : i + c], uh)
            for i in range(0, tq, c)
        ]
        return torch.cat(parts, dim=1)  # (B, Tq, Tk)

    def attend(self, query, key, value, mask, *, state=None, need_weights=True) -> AttentionOutput:
        b, tq, _ = query.shape
        tk = key.shape[1]
        ws, uh = self._project(query, key)  # (B, Tq, H), (B, Tk, H)
        if not need_weights and self.use_fused(query, key):
            from attnzoo.mechanisms.additive_triton import fused_additive_attention

            return AttentionOutput(fused_additive_attention(ws, uh, self.v_a, value, mask))  # (B, Tq, Dv)
        c = self.chunk_len(b, tq, tk)
        use_ckpt = self._use_checkpoint(c, tq, ws, uh, value)
        contexts: list[Tensor] = []
        weights: list[Tensor] = []
        for i in range(0, tq, c):
            m = None if mask is None else mask[:, i : i + c]
            if use_ckpt:
                ctx, w = checkpoint(self._chunk, ws[:, i : i + c], uh, value, m, use_reentrant=False)
            else:
                ctx, w = self._chunk(ws[:, i : i + c], uh, value, m)
            contexts.append(ctx)
            if need_weights:
                weights.append(w)
            else:
                del w
        context = contexts[0] if len(contexts) == 1 else torch.cat(contexts, dim=1)  # (B, Tq, Dv)
        if not need_weights:
            return AttentionOutput(context)
        return AttentionOutput(context, weights[0] if len(weights) == 1 else torch.cat(weights, dim=1))


SPECS: dict[str, tuple[AttentionSpec, Any]] = {
    "additive": (
        AttentionSpec(
            name="additive",
            family="additive",
            summary="Bahdanau additive score v_a^T tanh(W_a q + U_a k), softmax over keys",
            paper=f"{BAHDANAU}, Eq. (6) and Appendix A.1.2",
            url=BAHDANAU_URL,
            fused=False,
            complexity="O(Tq*Tk*hidden) time; memory O(Tq*Tk) with weights, else bounded per query chunk",
        ),
        AdditiveAttention,
    ),
}


@hookimpl
def register_attention(register):
    for spec, factory in SPECS.values():
        register(spec, factory)
