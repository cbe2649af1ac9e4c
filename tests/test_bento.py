"""bentofile.yaml: its files hold what the service imports, its packages every one it imports.

That its packages are the lock's is tests/test_lock.py's.
"""

import ast
import fnmatch
import sys
from importlib import metadata
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def _bentofile() -> dict:
    return yaml.safe_load((ROOT / "bentofile.yaml").read_text())


#: The project's own top-level packages: an import of any of them must be in the Bento.
PROJECT_PACKAGES = ("tabular", "store", "reports", "bentos", "monitoring", "validation", "flows")


def _local_imports(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        modules.update(n for n in names if n.split(".")[0] in PROJECT_PACKAGES)
    return modules


def test_the_bento_holds_every_module_the_service_imports():
    include = _bentofile()["include"]
    todo, seen = ["bentos.service"], set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = ROOT / (module.replace(".", "/") + ".py")
        if not path.is_file():
            path = ROOT / module.replace(".", "/") / "__init__.py"
        relative = str(path.relative_to(ROOT))
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in include), relative
        todo.extend(_local_imports(path))
    assert {"tabular.contract", "bentos.compiled", "store.crud", "tabular.loaders"} <= seen


def _third_party_imports(path: Path) -> set[str]:
    """Top-level modules imported by ``path`` that are neither the project's nor the stdlib's."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.add(node.module.split(".")[0])
    return {m for m in modules if m not in PROJECT_PACKAGES and m not in sys.stdlib_module_names}


def test_the_bento_installs_every_package_its_files_import():
    bentofile = _bentofile()
    files = {path for pattern in bentofile["include"] for path in ROOT.glob(pattern)}
    files = [path for path in files if path.suffix == ".py"]
    assert len(files) > 10
    requirements = (ROOT / bentofile["python"]["requirements_txt"]).read_text().splitlines()
    packages = {
        canonicalize_name(Requirement(line.rstrip(" \\")).name)
        for line in requirements
        if line and not line[0].isspace() and not line.startswith("#")
    }
    providers = metadata.packages_distributions()
    for path in files:
        for module in _third_party_imports(path):
            names = {canonicalize_name(n) for n in providers.get(module, [])}
            assert names, f"{path.relative_to(ROOT)} imports {module}, which nothing installs"
            assert names & packages, (
                f"{path.relative_to(ROOT)} imports {module} ({', '.join(sorted(names))}), which "
                "requirements/serving.txt lacks: add it to the serving group, then run make lock"
            )
