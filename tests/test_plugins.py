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
