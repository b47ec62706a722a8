"""Adapter training on accelerate: one loop (``loop.py``), trainers as plug-ins (``task.py``).

``dreambooth.py`` is the DreamBooth plug-in and the ``train_dreambooth.py`` CLI, ``semantic.py`` the
semantic-map → image plug-in and the ``train_semantic.py`` CLI; flags and YAML configs
are in ``args.py``; checkpoints and exact resume in ``checkpoint.py`` and ``determinism.py``.
"""
