"""The training harness: the one place attnzoo imports Lightning.

``module`` (the shared LightningModule), ``throughput`` (its training-step
machinery: several optimizer steps per call, Lightning's dispatch skipped where
it would do nothing), ``data`` (DataModules over the tasks), ``run``
(:func:`~attnzoo.harness.run.run_cell`: a :class:`~attnzoo.cell.Cell` in, a
:class:`~attnzoo.cell.Row` out) and ``grouped`` (cells that differ only in
seed, lr or weight decay, trained as one vectorized model). No argparse here:
``attnzoo fit`` is :mod:`attnzoo.commands.fit`. Tasks and backbones are plain
torch and live in :mod:`attnzoo.tasks` and :mod:`attnzoo.backbones`.
"""
