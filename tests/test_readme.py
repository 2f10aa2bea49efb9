"""The README's examples run, and its test command is what CI runs."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import torch

import attnzoo
from attnzoo import plugins
from tests.test_wheel import make_venv, wheel  # noqa: F401  (wheel: a session fixture, built once)

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


def _marked(marker: str, lang: str) -> str:
    found = re.search(rf"<!-- {marker}:start -->\n```{lang}\n(.*?)```\n<!-- {marker}:end -->", README, flags=re.S)
    assert found is not None, f"README: no ```{lang} block between <!-- {marker}:start/end --> markers"
    return found.group(1)


def _sh(argv: list[str], cwd: Path, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{shlex.join(argv)} -> {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_plugin_path_runs_end_to_end_from_a_wheel_install(wheel, tmp_path):  # noqa: F811
    """The README's plugin lines, one by one, in a fresh venv holding only attnzoo's wheel (and its deps).

    What the test adds to them: the edit itself (a negative-L1 score), `python -m pip` for `pip` (the
    venv's own), and a fake run-cell for the bench line (test_leaderboard's, milliseconds a cell), so
    the line runs exactly as written otherwise: default --out, default jobs, the shipped reference.
    """
    env = make_venv(wheel, tmp_path / "venv")
    python = str(Path(env["VIRTUAL_ENV"]) / "bin" / "python")
    work = tmp_path / "work"
    work.mkdir()
    lines = [ln for ln in _marked("plugin-path", "bash").splitlines() if shlex.split(ln, comments=True)]
    assert [shlex.split(ln, comments=True)[:2] for ln in lines] == [
        ["attnzoo", "new-plugin"], ["$EDITOR", "attnzoo-my-score/attnzoo_my_score/__init__.py"],
        ["pip", "install"], ["attnzoo", "check"], ["attnzoo", "bench"]]
    bench_env = {**env, "PYTHONPATH": str(ROOT / "tests")}  # only so the workers can import the fake run-cell
    for line in lines:
        argv = shlex.split(line, comments=True)
        if argv[0] == "$EDITOR":
            module = work / argv[1]
            text = module.read_text()
            assert "class MyScoreAttention(attnzoo.ScoreAttention)" in text  # the class the README names
            edited = re.sub(r"return torch\.bmm\(q, key\.transpose\(1, 2\)\) \* self\.scale",
                            "return -torch.cdist(q, key, p=1) * self.scale", text)
            assert edited != text, "the template's score line changed: update this edit"
            module.write_text(edited)
        elif argv[0] == "pip":
            _sh([python, "-m", *argv], work, env)
        elif argv[:2] == ["attnzoo", "bench"]:
            proc = _sh(argv + ["--run-cell", "test_leaderboard:fake_run_cell"], work, bench_env, timeout=600)
        else:
            _sh(argv, work, env)

    out = work / "bench-out" / "my-score-vs-default"
    reference = [json.loads(ln) for ln in (ROOT / "benchmarks/results/default/results.jsonl").read_text().splitlines()]
    rows = [json.loads(ln) for ln in (out / "results.jsonl").read_text().splitlines()]
    known = {r["cell_id"] for r in reference}
    new = [r for r in rows if r["cell_id"] not in known]
    assert known <= {r["cell_id"] for r in rows} and new
    assert {r["variant"] for r in new} == {"my-score"}  # nothing of the reference trained again
    assert all(r["status"] in ("ok", "n/a") for r in new), [r.get("error") for r in new]
    ranking = (out / "ranking.md").read_text()
    assert re.search(r"- copy: my-score ranks \d+(st|nd|rd|th) of \d+ \(median", ranking), ranking
    assert "my-score" in (out / "leaderboard.md").read_text()
    assert "where it ranks against default" in proc.stdout

    # the pytest plugin, with the README's snippet dropped into the package written above
    pkg = work / "attnzoo-my-score"
    snippet = next(b for b in _python_blocks() if "conformance_tests(" in b)
    (pkg / "tests" / "test_conformance.py").write_text(snippet.replace('"my-variant"', '"my-score"'))
    proc = _sh([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "-rA"], pkg, env)
    assert "PASSED tests/test_conformance.py::test_my_variant[gradcheck]" in proc.stdout
    assert "::test_the_class_conforms[gradcheck]" in proc.stdout
    assert " failed" not in proc.stdout and " error" not in proc.stdout
    # `attnzoo check NAME --json --check C`, as the README says
    proc = _sh(["attnzoo", "check", "my-score", "--json", "--check", "gradcheck"], work, env)
    (record,) = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.strip()]
    assert {"variant", "name", "status", "passed", "message"} <= set(record)
    assert (record["variant"], record["name"], record["passed"]) == ("my-score", "gradcheck", True)


def test_hand_written_plugin_installs_with_the_readme_pyproject(wheel, tmp_path):  # noqa: F811
    """The README's minimal module plus its pyproject.toml are a package pip installs (issue 13: the entry-points
    table alone was not)."""
    env = make_venv(wheel, tmp_path / "venv")
    python = str(Path(env["VIRTUAL_ENV"]) / "bin" / "python")
    pkg = tmp_path / "my-attn"
    pkg.mkdir()
    (pkg / "my_attn.py").write_text(_marked("plugin-example", "python"))
    (pkg / "pyproject.toml").write_text(_marked("plugin-pyproject", "toml"))
    # --no-build-isolation: the venv already has setuptools; the isolated build is exercised above
    _sh([python, "-m", "pip", "install", "-q", "--no-build-isolation", "-e", str(pkg)], tmp_path, env)
    proc = _sh(["attnzoo", "list", "manhattan"], tmp_path, env)
    assert re.search(r"^manhattan\s+distance\s+my-attn 0\.1\.0", proc.stdout, flags=re.M), proc.stdout
