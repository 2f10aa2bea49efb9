"""Importing the library stays light: no Lightning, no Ray."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
import attnzoo, attnzoo.mechanisms
attnzoo.list_attention()
attnzoo.create_attention("scaled-dot", 8)
for name in attnzoo.mechanisms.__all__:
    try:
        getattr(attnzoo.mechanisms, name)
    except ImportError:
        pass
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"lightning", "pytorch_lightning", "ray", "matplotlib"})
print(",".join(heavy))
"""


def test_import_does_not_pull_lightning_or_ray():
    proc = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"heavy modules imported: {proc.stdout.strip()}"


LAYER_CODE = """
import sys
import attnzoo.tasks, attnzoo.backbones, attnzoo.cell, attnzoo.leaderboard.grid
from attnzoo.tasks import create_task
from attnzoo.backbones import create_backbone
task = create_task("copy", length=4)
create_backbone("seq2seq", task, "additive", d_model=8)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"lightning", "pytorch_lightning", "torchmetrics"})
print(",".join(heavy))
"""


def test_tasks_and_backbones_are_plain_torch():
    """Tasks and backbones are the library proper: building them imports no Lightning."""
    proc = subprocess.run([sys.executable, "-c", LAYER_CODE], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"Lightning imported by tasks/backbones: {proc.stdout.strip()}"
