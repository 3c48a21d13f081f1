"""pyproject.toml and environment.yml pin the same dependencies; the installed versions are those pins."""
from __future__ import annotations

import tomllib
from importlib.metadata import version

import yaml
from packaging.requirements import Requirement

from corelib.config import repo_root


def _pyproject_pins() -> dict[str, str]:
    meta = tomllib.loads((repo_root() / "pyproject.toml").read_text())["project"]
    reqs = meta["dependencies"] + [r for group in meta["optional-dependencies"].values() for r in group]
    return {Requirement(r).name.lower(): str(Requirement(r).specifier) for r in reqs}


def _conda_pins() -> dict[str, str]:
    env = yaml.safe_load((repo_root() / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    reqs = [Requirement(r) for r in pip if not r.startswith("-e")]
    return {r.name.lower(): str(r.specifier) for r in reqs}


def test_pyproject_and_environment_yml_pin_the_same_versions():
    py, conda = _pyproject_pins(), _conda_pins()
    assert py == conda
    assert all(spec.startswith("==") for spec in py.values())


def test_installed_packages_are_the_pinned_versions():
    for name, spec in _pyproject_pins().items():
        assert version(name).split("+")[0] == spec.removeprefix("=="), name
