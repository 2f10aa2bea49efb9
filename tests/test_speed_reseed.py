"""attnzoo speed reseeds each step's generators without torch.manual_seed's cost, with the same draws."""

from __future__ import annotations

import pytest
import torch

from attnzoo.speed import _reseed


def _draws() -> list[float]:
    return torch.rand(4).tolist() + torch.randn(2).tolist()


def test_reseed_draws_as_manual_seed_on_the_cpu():
    torch.manual_seed(7)
    want = _draws()
    torch.manual_seed(0)
    _reseed(7, torch.device("cpu"))
    assert _draws() == want


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_reseed_draws_as_manual_seed_on_cuda():
    dev = torch.device("cuda")
    torch.manual_seed(7)
    want = torch.rand(4, device=dev).tolist() + _draws()
    torch.manual_seed(0)
    _reseed(7, dev)
    assert torch.rand(4, device=dev).tolist() + _draws() == want
