"""What ``pip install .`` installs: every subpackage, ``models/`` and ``diagnostics/`` under ``psample``."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_for_the_wheel():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {
        ".".join(("psample", *init.parent.relative_to(ROOT / "psample").parts))
        for init in (ROOT / "psample").rglob("__init__.py")
    }
    found |= {"psample.models", "psample.diagnostics", "psample.models.data"}  # data: the zoo's data sets
    assert found == listed, f"pyproject.toml [tool.setuptools] packages: missing {found - listed}, extra {listed - found}"
    assert config["package-dir"] == {"psample": "psample", "psample.models": "models", "psample.diagnostics": "diagnostics"}
    assert all((ROOT / folder / "__init__.py").exists() for folder in ("models", "diagnostics"))
