"""The training harness: the one place attnzoo imports Lightning.

``module`` (the shared LightningModule), ``data`` (DataModules over the
tasks), ``run`` (:func:`~attnzoo.harness.run.run_cell`: a :class:`~attnzoo.cell.Cell`
in, a :class:`~attnzoo.cell.Row` out) and ``fit`` (``attnzoo fit``). Tasks and
backbones are plain torch and live in :mod:`attnzoo.tasks` and
:mod:`attnzoo.backbones`.
"""
