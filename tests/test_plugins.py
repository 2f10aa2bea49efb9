"""Plugin loading with fake entry points (nothing installed), as pytest tests its own loader."""

from __future__ import annotations

import json

import pytest
import torch

import attnzoo
from attnzoo import plugins
from attnzoo.cli import main as cli_main
from attnzoo.plugins import PluginHost, collect
from attnzoo.registry import _accept_attention
from tests.fakes import FakeEntryPoint, plugin_module


def _collect(host):
    return collect("register_attention", "attention variant", _accept_attention, host=host)


def test_good_plugin_loads_with_its_distribution():
    host = PluginHost(builtins=[], entry_points=[FakeEntryPoint("good", plugin_module("alpha", "beta"), dist="good-dist", version="2.1")])
    found = _collect(host)
    assert set(found) == {"alpha", "beta"}
    assert found["alpha"][1] == "good-dist 2.1"
    (info,) = host.plugins()
    assert info.loaded and not info.errors and info.hooks == ["register_attention"]


def test_plugin_that_fails_to_import_is_reported_and_skipped():
    eps = [
        FakeEntryPoint("broken", ImportError("No module named 'torch_nonexistent'"), dist="broken-dist"),
        FakeEntryPoint("good", plugin_module("alpha"), dist="good-dist"),
    ]
    host = PluginHost(builtins=[], entry_points=eps)
    assert set(_collect(host)) == {"alpha"}
    broken = {i.name: i for i in host.plugins()}["broken"]
    assert not broken.loaded
    assert broken.source == "broken-dist"
    assert "torch_nonexistent" in broken.errors[0]


def test_hook_that_raises_skips_only_that_plugin():
    eps = [
        FakeEntryPoint("raiser", plugin_module("gamma", raises=RuntimeError("boom")), dist="raiser-dist"),
        FakeEntryPoint("good", plugin_module("alpha"), dist="good-dist"),
    ]
    host = PluginHost(builtins=[], entry_points=eps)
    assert set(_collect(host)) == {"alpha"}
    raiser = {i.name: i for i in host.plugins()}["raiser"]
    assert "register_attention raised RuntimeError: boom" in raiser.errors[0]


def test_bad_spec_is_reported_not_fatal():
    host = PluginHost(builtins=[], entry_points=[FakeEntryPoint("bad", plugin_module("delta", bad_spec=True), dist="bad-dist")])
    assert _collect(host) == {}
    assert "must be an attnzoo.AttentionSpec" in host.plugins()[0].errors[0]


def test_duplicate_names_across_plugins_name_both():
    eps = [
        FakeEntryPoint("first", plugin_module("same"), dist="first-dist", version="1.0"),
        FakeEntryPoint("second", plugin_module("same"), dist="second-dist", version="3.0"),
    ]
    host = PluginHost(builtins=[], entry_points=eps)
    found = _collect(host)
    assert found["same"][1] == "first-dist 1.0"
    err = {i.name: i for i in host.plugins()}["second"].errors[0]
    assert "first-dist 1.0" in err and "second-dist 3.0" in err


def test_builtin_clash_with_plugin_keeps_builtin():
    host = PluginHost(builtins=["attnzoo.mechanisms.dot"], entry_points=[FakeEntryPoint("evil", plugin_module("dot"), dist="evil-dist")])
    assert _collect(host)["dot"][1] == "builtin"
    assert "builtin" in {i.name: i for i in host.plugins()}["evil"].errors[0]


def _install_fakes(monkeypatch, *eps):
    monkeypatch.setattr(plugins.importlib_metadata, "entry_points", lambda group: list(eps))
    plugins.reset()


def test_global_registry_sees_plugins_with_source(fresh_plugins):
    _install_fakes(fresh_plugins, FakeEntryPoint("good", plugin_module("alpha"), dist="good-dist", version="2.1"))
    assert "alpha" in attnzoo.list_attention()
    from attnzoo.registry import get_entry

    assert get_entry("alpha").source == "good-dist 2.1"
    x = torch.randn(1, 3, 4)
    assert attnzoo.create_attention("alpha", 4)(x).context.shape == x.shape


def test_disable_autoload_env(fresh_plugins):
    _install_fakes(fresh_plugins, FakeEntryPoint("good", plugin_module("alpha"), dist="good-dist"))
    fresh_plugins.setenv("ATTNZOO_DISABLE_PLUGIN_AUTOLOAD", "1")
    plugins.reset()
    names = attnzoo.list_attention()
    assert "alpha" not in names and "dot" in names  # built-ins still load


def test_load_only_listed_plugins(fresh_plugins):
    _install_fakes(
        fresh_plugins,
        FakeEntryPoint("good", plugin_module("alpha"), dist="good-dist"),
        FakeEntryPoint("other", plugin_module("omega"), dist="other-dist"),
    )
    fresh_plugins.setenv("ATTNZOO_PLUGINS", "other-dist")
    plugins.reset()
    names = attnzoo.list_attention()
    assert "omega" in names and "alpha" not in names


def test_disable_env_skips_builtins_too(fresh_plugins):
    fresh_plugins.setenv("ATTNZOO_DISABLE_PLUGINS", "attnzoo.mechanisms.dot")
    plugins.reset()
    assert "dot" not in attnzoo.list_attention()


def test_cli_disable_plugin_flag(fresh_plugins, capsys):
    _install_fakes(
        fresh_plugins,
        FakeEntryPoint("good", plugin_module("alpha"), dist="good-dist"),
        FakeEntryPoint("other", plugin_module("omega"), dist="other-dist"),
    )
    assert cli_main(["--disable-plugin", "good", "list", "--json"]) == 0
    names = {row["name"] for row in json.loads(capsys.readouterr().out)}
    assert "omega" in names and "alpha" not in names


def test_cli_plugins_shows_load_errors(fresh_plugins, capsys):
    _install_fakes(fresh_plugins, FakeEntryPoint("broken", ImportError("nope"), dist="broken-dist", version="0.3"))
    assert cli_main(["plugins", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["broken"]["version"] == "0.3"
    assert "nope" in rows["broken"]["error"]
    assert rows["attnzoo.mechanisms.dot"]["error"] is None
    assert cli_main(["plugins"]) == 0
    captured = capsys.readouterr()
    assert "broken-dist" in captured.out and "nope" in captured.err


def test_plugin_commands_hook(fresh_plugins, capsys):
    import types

    mod = types.ModuleType("fake_cmd_plugin")

    @attnzoo.hookimpl
    def register_commands(cli):
        p = cli.add_parser("hello", help="say hello")
        p.set_defaults(func=lambda args: print("hello from a plugin") or 0)

    mod.register_commands = register_commands
    _install_fakes(fresh_plugins, FakeEntryPoint("cmd", mod, dist="cmd-dist"))
    assert cli_main(["hello"]) == 0
    assert "hello from a plugin" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["1", "true", "YES"])
def test_autoload_env_values(fresh_plugins, value):
    _install_fakes(fresh_plugins, FakeEntryPoint("good", plugin_module("alpha"), dist="good-dist"))
    fresh_plugins.setenv("ATTNZOO_DISABLE_PLUGIN_AUTOLOAD", value)
    plugins.reset()
    assert "alpha" not in attnzoo.list_attention()


# -- registration failures are reported like import failures (issue 12) ------
def _plugins_json(capsys) -> dict:
    assert cli_main(["plugins", "--json"]) == 0
    return {r["name"]: r for r in json.loads(capsys.readouterr().out)}


def test_cli_plugins_reports_a_name_clash_with_a_builtin(fresh_plugins, capsys):
    _install_fakes(fresh_plugins, FakeEntryPoint("evil", plugin_module("dot", "fresh"), dist="evil-dist", version="0.1"))
    row = _plugins_json(capsys)["evil"]
    assert row["error"] and "'dot' is registered twice" in row["error"]
    assert "builtin" in row["error"] and "evil-dist 0.1" in row["error"]
    assert cli_main(["plugins"]) == 0
    captured = capsys.readouterr()
    evil_line = next(ln for ln in captured.out.splitlines() if ln.startswith("evil "))
    assert " error " in evil_line and " ok " not in evil_line
    assert "registered twice" in captured.err
    # the clash skips only the clashing name: its other variant is there
    assert "fresh" in attnzoo.list_attention()


def _task_plugin(raises: Exception):
    import types

    mod = types.ModuleType("fake_task_plugin")

    @attnzoo.hookimpl
    def register_tasks(register):
        raise raises

    mod.register_tasks = register_tasks
    return mod


def test_cli_plugins_reports_a_task_hook_that_raises_without_any_task_lookup(fresh_plugins, capsys):
    # Nothing asked for a task yet: only `attnzoo plugins` running the hooks finds this.
    _install_fakes(fresh_plugins, FakeEntryPoint("tasky", _task_plugin(RuntimeError("no tasks today")), dist="tasky-dist"))
    row = _plugins_json(capsys)["tasky"]
    assert "register_tasks raised RuntimeError: no tasks today" in row["error"]


def test_cli_plugins_reports_a_bad_spec(fresh_plugins, capsys):
    _install_fakes(fresh_plugins, FakeEntryPoint("bad", plugin_module("delta", bad_spec=True), dist="bad-dist"))
    assert "must be an attnzoo.AttentionSpec" in _plugins_json(capsys)["bad"]["error"]


def test_registry_reload_does_not_double_errors(fresh_plugins, capsys):
    _install_fakes(fresh_plugins, FakeEntryPoint("evil", plugin_module("dot"), dist="evil-dist"))
    plugins.load_all()
    from attnzoo.registry import attention_registry

    attention_registry.invalidate()  # the same host, loaded again
    plugins.load_all()
    (info,) = [i for i in plugins.get_host().plugins() if i.name == "evil"]
    assert len(info.errors) == 1


def test_failure_summary_is_empty_when_every_plugin_loads(fresh_plugins):
    _install_fakes(fresh_plugins, FakeEntryPoint("good", plugin_module("alpha"), dist="good-dist"))
    assert plugins.failure_summary() == []


def test_failure_summary_names_import_and_registration_failures(fresh_plugins):
    _install_fakes(
        fresh_plugins,
        FakeEntryPoint("broken", ImportError("No module named 'foo'"), dist="attnzoo-foo", version="0.1"),
        FakeEntryPoint("evil", plugin_module("dot"), dist="evil-dist", version="2.0"),
        FakeEntryPoint("good", plugin_module("alpha"), dist="good-dist"),
    )
    lines = plugins.failure_summary()
    assert len(lines) == 2
    assert lines[0] == "plugin 'attnzoo-foo 0.1' failed to load (ImportError: No module named 'foo')"
    assert lines[1].startswith("plugin 'evil-dist 2.0' failed to register (attention variant 'dot' is registered twice")


def test_unknown_name_notes_the_plugin_that_failed(fresh_plugins, capsys):
    _install_fakes(fresh_plugins, FakeEntryPoint("broken", ImportError("nope"), dist="attnzoo-foo", version="0.1"))
    with pytest.raises(attnzoo.UnknownAttentionError) as excinfo:
        attnzoo.create_attention("foo", 4)
    msg = str(excinfo.value)
    assert msg.splitlines()[0].startswith("unknown attention variant 'foo'")
    assert ("note: plugin 'attnzoo-foo 0.1' failed to load (ImportError: nope); the name may come from it "
            "(see `attnzoo plugins`)") in msg.splitlines()
    assert cli_main(["check", "foo"]) == 2
    assert "note: plugin 'attnzoo-foo 0.1' failed to load" in capsys.readouterr().err
    assert cli_main(["show", "foo"]) == 2
    assert "note: plugin 'attnzoo-foo 0.1' failed to load" in capsys.readouterr().err
    from attnzoo.tasks import task_registry

    with pytest.raises(attnzoo.UnknownNameError, match="attnzoo-foo 0.1"):
        task_registry.get("foo")


def test_unknown_name_has_no_note_when_all_plugins_load(fresh_plugins):
    _install_fakes(fresh_plugins, FakeEntryPoint("good", plugin_module("alpha"), dist="good-dist"))
    with pytest.raises(attnzoo.UnknownAttentionError) as excinfo:
        attnzoo.create_attention("foo", 4)
    assert "note:" not in str(excinfo.value) and len(str(excinfo.value).splitlines()) == 1


def test_warn_failures_prints_each_failure_once(fresh_plugins, monkeypatch):
    import io

    monkeypatch.setattr(plugins, "_warned", set())
    _install_fakes(fresh_plugins, FakeEntryPoint("broken", ImportError("nope"), dist="attnzoo-foo", version="0.1"))
    first, second = io.StringIO(), io.StringIO()
    assert plugins.warn_failures(first) == ["plugin 'attnzoo-foo 0.1' failed to load (ImportError: nope)"]
    assert "attnzoo-foo 0.1" in first.getvalue() and "attnzoo plugins" in first.getvalue()
    assert plugins.warn_failures(second) == [] and second.getvalue() == ""


def test_warn_failures_is_silent_when_all_load(fresh_plugins, monkeypatch):
    import io

    monkeypatch.setattr(plugins, "_warned", set())
    _install_fakes(fresh_plugins)
    out = io.StringIO()
    assert plugins.warn_failures(out) == [] and out.getvalue() == ""


def test_list_names_every_failed_plugin(fresh_plugins, capsys):
    _install_fakes(fresh_plugins, FakeEntryPoint("tasky", _task_plugin(RuntimeError("boom")), dist="tasky-dist"))
    assert cli_main(["list"]) == 0
    err = capsys.readouterr().err
    assert "1 plugin(s) failed" in err and "register_tasks raised RuntimeError: boom" in err


from hypothesis import given, strategies as st  # noqa: E402

_line = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40)


@given(failures=st.lists(_line, max_size=4), name=st.from_regex(r"[a-z]{1,8}", fullmatch=True))
def test_unknown_name_error_has_one_note_per_failure(failures, name):
    err = attnzoo.UnknownNameError("task", name, ["copy", "sort"], plugin_failures=failures)
    lines = str(err).split("\n")
    assert lines[0].startswith(f"unknown task {name!r}")
    assert lines[1:] == [f"note: {f}; the name may come from it (see `attnzoo plugins`)" for f in failures]
    assert err.plugin_failures == failures


def test_errors_survive_pickling_across_processes():
    import pickle

    from attnzoo.errors import DuplicateRegistrationError, PluginError, SpecError, UnknownAttentionError

    errors = [
        attnzoo.UnknownNameError("task", "cpy", ["copy"], plugin_failures=["plugin 'x 1' failed to load (E: e)"]),
        UnknownAttentionError("dott", ["dot"]),
        DuplicateRegistrationError("task", "copy", "builtin", "x 1.0"),
        PluginError("x", "boom"),
        SpecError("bad"),
    ]
    for err in errors:
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and str(back) == str(err)
        assert {k: v for k, v in vars(back).items()} == vars(err)
    assert pickle.loads(pickle.dumps(errors[0])).suggestions == ["copy"]
