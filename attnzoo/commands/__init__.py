"""Every ``attnzoo`` subcommand, one module each: parse the flags, call the library, print.

- :mod:`~attnzoo.commands.catalog`: ``list``, ``show``, ``plugins`` (the registries);
- :mod:`~attnzoo.commands.fit`: ``fit`` (one cell through :func:`attnzoo.harness.run.run_cell`);
- :mod:`~attnzoo.commands.bench`: ``bench`` and its ``report``, ``merge``, ``verify``, ``export`` and
  ``export-attention`` sub-commands (the leaderboard);
- :mod:`~attnzoo.commands.check`: ``check`` (the conformance kit, :mod:`attnzoo.testing`);
- :mod:`~attnzoo.commands.speed`: ``speed`` (:mod:`attnzoo.speed`);
- :mod:`~attnzoo.commands.new_plugin`: ``new-plugin`` (:mod:`attnzoo.newplugin`).

Each module but ``catalog`` offers ``configure_parser(parser)`` and ``main(args) -> int`` (the exit
status); :mod:`attnzoo.cli` builds the top-level parser from them and adds the commands plugins
register through ``register_commands``. The libraries they call take typed arguments and return
values; nothing below this package parses a flag or prints for a command.
"""
