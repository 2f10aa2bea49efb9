"""Write a complete, installable plugin package for a new variant (``attnzoo new-plugin NAME``).

What it writes (into ``./attnzoo-NAME`` unless ``--dir`` says otherwise)::

    attnzoo-NAME/
      pyproject.toml            build system, name, version, attnzoo dependency, the `attnzoo` entry point
      README.md                 the two-minute path: edit the score, pip install -e ., attnzoo check,
                                bench --against default
      attnzoo_NAME/__init__.py  a ScoreAttention subclass, its AttentionSpec, the register_attention hook
      tests/test_attnzoo_NAME.py  the conformance kit on the variant, one pytest item per check
      .gitignore

The files come from ``attnzoo/templates/plugin/*.tmpl`` (package data), filled
with :class:`string.Template`: a folder of plain files is all this needs, so
no template engine is a dependency.

The command (:mod:`attnzoo.commands.new_plugin`) exits 2 on an invalid name, a name already
registered by someone else, or a target that exists and is not empty (nothing is written then).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

__all__ = ["NewPluginError", "PluginNames", "plugin_names", "render_plugin", "write_plugin"]

#: template file -> path in the package written, as a Template over the names
_FILES: dict[str, str] = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "module.py.tmpl": "${module}/__init__.py",
    "test_plugin.py.tmpl": "tests/test_${module}.py",
    "gitignore.tmpl": ".gitignore",
}


@dataclass(frozen=True)
class PluginNames:
    """Every name the package uses, derived from the variant name once.

    Example: ``plugin_names("cosine-t")`` -> name ``cosine-t``, dist
    ``attnzoo-cosine-t``, module ``attnzoo_cosine_t``, cls ``CosineTAttention``.
    """

    name: str
    dist: str
    module: str
    cls: str
    attnzoo_version: str

    def mapping(self) -> dict[str, str]:
        return {"name": self.name, "dist": self.dist, "module": self.module, "cls": self.cls,
                "attnzoo_version": self.attnzoo_version}


def _version() -> str:
    from attnzoo import __version__

    # A source checkout without metadata reports "0.0.0+unknown": no lower bound then.
    return __version__.split("+")[0] if "unknown" not in __version__ else "0"


def plugin_names(name: str) -> PluginNames:
    """Validate ``name`` (:func:`attnzoo.spec.validate_name`) and derive the package's names.

    :raises attnzoo.errors.SpecError: ``name`` is not a lowercase registry name like ``my-score``.
    """
    from attnzoo.spec import validate_name

    validate_name(name, "NAME")
    parts = name.replace(".", "-").replace("_", "-").split("-")
    return PluginNames(
        name=name,
        dist=f"attnzoo-{name}",
        module="attnzoo_" + "_".join(parts),
        cls="".join(p[:1].upper() + p[1:] for p in parts) + "Attention",
        attnzoo_version=_version(),
    )


def render_plugin(names: PluginNames) -> dict[str, str]:
    """``{relative path: file text}`` of the whole package (nothing is written)."""
    folder = resources.files("attnzoo") / "templates" / "plugin"
    values = names.mapping()
    return {
        Template(target).substitute(values): Template((folder / template).read_text("utf-8")).substitute(values)
        for template, target in _FILES.items()
    }


class NewPluginError(Exception):
    """A reason not to write the package; the CLI prints it and exits 2."""


def _check_target(directory: Path) -> None:
    if directory.exists() and not directory.is_dir():
        raise NewPluginError(f"{directory}: exists and is a file, not a directory (pick another --dir)")
    if directory.is_dir() and any(directory.iterdir()):
        raise NewPluginError(
            f"{directory}: exists and is not empty; nothing was written "
            f"(pick another --dir, or remove it first)"
        )


def _check_free(names: PluginNames) -> None:
    # A plugin whose name clashes with a registered one is skipped at load
    # time; say so now rather than after the author's first install.
    from attnzoo.registry import attention_registry

    if names.name not in attention_registry:
        return
    _, source = attention_registry.get_with_source(names.name)
    if source.split(" ")[0] == names.dist:  # their own plugin, already installed
        return
    raise NewPluginError(
        f"NAME: {names.name!r} is already registered by {source}; a plugin with that name would be "
        f"skipped as a clash. Pick another name (`attnzoo list` shows the taken ones)"
    )


def write_plugin(name: str, directory: str | Path | None = None) -> list[Path]:
    """Write the plugin package for variant ``name`` and return the files written.

    :param name: the variant's registry name (also the entry-point name).
    :param directory: where to write (default ``./attnzoo-NAME``); must not
        exist or be empty.
    :raises attnzoo.errors.SpecError: invalid name.
    :raises NewPluginError: the name is taken, or the directory is not empty.
    """
    names = plugin_names(name)
    target = Path(directory) if directory is not None else Path.cwd() / names.dist
    _check_target(target)
    _check_free(names)
    files = render_plugin(names)
    written = []
    for rel, text in files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
