"""The benchmark harness: tasks, backbones and the shared LightningModule.

Only the modules that train (``module``, ``data``, ``fit``, ``run``) import
Lightning; tasks and backbones are plain torch so they can be listed cheaply.
"""
