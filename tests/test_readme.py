"""The README's examples run, and its test command is what CI runs."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import torch

import attnzoo
from attnzoo import plugins

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_usage_example_runs():
    ns: dict = {}
    exec(compile(_python_blocks()[0], "README usage", "exec"), ns)  # noqa: S102
    assert ns["out"].context.shape == (4, 10, 48)
    assert ns["out"].weights.shape == (4, 10, 20)
    assert (ns["out"].weights[..., 15:] == 0).all()
    assert isinstance(ns["mha"], torch.nn.Module)


def test_plugin_example_loads_through_a_real_entry_point(tmp_path, fresh_plugins):
    block = re.search(r"<!-- plugin-example:start -->\n```python\n(.*?)```", README, flags=re.S).group(1)
    assert len(block.strip().splitlines()) <= 14
    (tmp_path / "my_attn.py").write_text(block)
    # A minimal installed distribution: importlib.metadata finds it on sys.path.
    dist = tmp_path / "my_attn-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-attn\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[attnzoo]\nmanhattan = my_attn\n")
    fresh_plugins.syspath_prepend(str(tmp_path))
    plugins.reset()
    try:
        assert "manhattan" in attnzoo.list_attention()
        from attnzoo.registry import get_entry

        assert get_entry("manhattan").source == "my-attn 0.1"
        m = attnzoo.create_attention("manhattan", 5)
        q, k = torch.randn(2, 3, 5), torch.randn(2, 4, 5)
        w = m(q, k, need_weights=True).weights
        torch.testing.assert_close(w, torch.softmax(-torch.cdist(q, k, p=1), -1))
        from attnzoo.testing import check_attention

        report = check_attention("manhattan")
        assert report.ok, str(report)
    finally:
        sys.modules.pop("my_attn", None)


def test_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    cmd = re.search(r"Run the tests:\n\n```bash\n(.*?)\n```", README, flags=re.S).group(1)
    for step in cmd.split(" && "):
        assert step in ci, f"README step not in .ci/run: {step}"
