"""Files shipped inside the package: the demo cluster model, so an installed proxlb-opt (pipx, the .deb)
can plan something without a checkout of the repository.

`demo.yaml` is a copy of the repository's models/demo.yaml (a test keeps the two identical).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

DEMO_MODEL = "demo.yaml"


def demo_model_path() -> Path:
    """Path of the packaged demo cluster model (the same file as models/demo.yaml in the repository).

    Installed packages (pip, pipx, the .deb's virtualenv, an editable checkout) live on disk, so the
    resource is a real file. Only an import from a zip archive has none; that raises FileNotFoundError.
    """
    resource = files(__name__).joinpath(DEMO_MODEL)
    if not isinstance(resource, Path):
        raise FileNotFoundError(f"{DEMO_MODEL} is inside an archive ({resource}); install proxlb-opt unpacked")
    return resource
