"""Files shipped with the package and the repository: the demo model copy and the license text."""

from __future__ import annotations

from pathlib import Path

from proxlb_opt.cluster import load_model
from proxlb_opt.data import demo_model_path
from tests.packaging.conftest import REPO

GPL3 = Path("/usr/share/common-licenses/GPL-3")


def test_packaged_demo_model_is_models_demo_yaml():
    # models/demo.yaml is what `make demo` plans; the package carries a copy for installed users.
    assert demo_model_path().read_bytes() == (REPO / "models" / "demo.yaml").read_bytes(), (
        "models/demo.yaml changed: cp models/demo.yaml proxlb_opt/data/demo.yaml")


def test_packaged_demo_model_loads():
    cluster = load_model(demo_model_path())
    assert cluster.n_nodes > 0 and cluster.n_guests > 0


def test_license_is_the_gpl3_text():
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert text.lstrip().startswith("GNU GENERAL PUBLIC LICENSE")
    assert "Version 3, 29 June 2007" in text and "END OF TERMS AND CONDITIONS" in text
    if GPL3.is_file():
        assert (REPO / "LICENSE").read_bytes() == GPL3.read_bytes()
