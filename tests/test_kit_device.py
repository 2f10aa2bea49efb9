"""The conformance kit on the device it is given (issue 25, item 1).

On the CPU: ``device="cpu"`` passed explicitly checks every kind of variant (plain, stateful
query-only, non-differentiable) with the report naming the device; ``auto`` resolves to the CPU
without CUDA; bad devices are a ValueError naming ``device``; the CLI's ``--device``. On CUDA
(skipped here): every registered variant passes on ``device="cuda"``, and with CUDA as torch's
default device (where the kit used to fail with "Expected a 'cuda' device type for generator").
"""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from attnzoo.registry import list_attention
from attnzoo.testing import check_attention
from attnzoo.commands import check as check_cli
from attnzoo.testing.conformance import resolve_device

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    check_cli.configure_parser(p)
    return p.parse_args(list(argv))


@pytest.mark.parametrize("name", ["scaled-dot", "ntm", "hard"])
def test_explicit_cpu_device_passes_and_is_named(name: str) -> None:
    report = check_attention(name, device="cpu")
    report.raise_for_failures()
    assert report.device == "cpu" and report.to_dict()["device"] == "cpu"
    assert str(report).splitlines()[0].startswith(f"attnzoo check {name} on cpu: OK")
    # The explicit device is the default one's behaviour on the CPU: the same results, check by check.
    assert [(r.name, r.status) for r in check_attention(name).results] == [(r.name, r.status) for r in report.results]


def test_device_resolution_and_errors() -> None:
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None) == torch.empty(()).device
    with pytest.raises(ValueError, match="device"):
        check_attention("dot", device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device: 'cuda'.*no CUDA"):
            check_attention("dot", device="cuda")


def test_cli_device_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_cli.main(_args("dot", "--device", "cpu", "--check", "gradients")) == 0
    assert "attnzoo check dot on cpu: OK" in capsys.readouterr().out
    assert check_cli.main(_args("dot", "--device", "auto", "--json", "--check", "causal")) == 0
    [line] = [json.loads(s) for s in capsys.readouterr().out.splitlines()]
    assert line["device"] == str(resolve_device("auto")) and line["passed"] is True
    assert check_cli.main(_args("dot", "--device", "tpu-ish")) == 2
    assert "device" in capsys.readouterr().err


@cuda
@pytest.mark.parametrize("name", list_attention())
def test_every_variant_passes_on_cuda(name: str) -> None:
    report = check_attention(name, device="cuda")
    assert report.device.startswith("cuda")
    report.raise_for_failures()


@cuda
def test_kit_follows_cuda_as_the_default_device() -> None:
    torch.set_default_device("cuda")
    try:
        report = check_attention("additive")
    finally:
        torch.set_default_device("cpu")
    assert report.device.startswith("cuda")
    report.raise_for_failures()
