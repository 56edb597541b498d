"""The folder of model.yaml is importable: a builder or data callable named ``mymodels:cnn`` is found in
``mymodels.py`` next to the config, as a user keeping their code beside it expects. The folder goes at the end of
``sys.path``, so an installed package of the same name still wins."""

from __future__ import annotations

import sys
from pathlib import Path

#: folders added to ``sys.path`` this way (worker processes get them in PYTHONPATH)
ADDED: list[str] = []


def importable_from(folder: str | Path) -> None:
    """Let ``import`` find modules in ``folder`` (once; after every other entry of ``sys.path``)."""
    path = str(Path(folder).resolve())
    if path not in sys.path:
        sys.path.append(path)
        ADDED.append(path)
