"""Write (or check) the requirement files that every install reads, exported from ``uv.lock``.

``uv.lock`` is the lock: exact versions and hashes of every package, resolved by ``uv lock``
from ``pyproject.toml``. pip, the Dockerfile and BentoML read requirement files, so
``make lock`` exports these from it (``uv export --frozen`` reads the lock only, offline):

* ``dev.txt``: the project's dependencies and its ``dev`` and ``dask`` extras, with hashes
  (``make install``);
* ``image.txt``: the project's dependencies and its ``dask`` extra, with hashes (the
  ``Dockerfile``: the compose profile ``dask`` runs its scheduler and workers on that image);
* ``serving.txt``: the ``serving`` group, exact versions without hashes (``bentofile.yaml``:
  BentoML appends its own unhashed ``bentoml==<version>`` line, which pip's hash-checking
  mode would refuse);
* ``bootstrap.txt``: the ``bootstrap`` group (uv), with hashes (``make install``'s first step).

It also sets the tag of the compose stack's Prefect server image (``docker-compose.yml``) to
the locked ``prefect``, so that the server and the clients in the application image run the
same version.

Usage: ``python requirements/export.py`` writes them; ``--check`` only compares and exits 1
naming each file that differs (``tests/test_lock.py``). ``UV`` names the uv binary (default:
the one next to this Python).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "requirements"

#: Each exported file and the ``uv export`` options that select its packages.
EXPORTS: dict[str, list[str]] = {
    "dev.txt": ["--extra", "dev", "--extra", "dask"],
    "image.txt": ["--extra", "dask"],
    "serving.txt": ["--only-group", "serving", "--no-hashes"],
    "bootstrap.txt": ["--only-group", "bootstrap"],
}

HEADER = (
    "# Exported from uv.lock by `make lock` (requirements/export.py): do not edit.\n"
    "# Exact versions{hashes} for Python 3.11 on Linux and macOS arm64; the markers say where.\n"
)


def uv_binary() -> str:
    """Return the uv to run: ``$UV``, else the one installed next to this Python."""
    return os.environ.get("UV") or str(Path(sys.executable).parent / "uv")


def exported(name: str) -> str:
    """Return the text of one requirement file, as exported from ``uv.lock`` now.

    Args:
        name: A key of :data:`EXPORTS`.

    Returns:
        The file's text: a header, then ``uv export``'s output.

    Raises:
        subprocess.CalledProcessError: If ``uv export`` fails (for example, ``uv.lock`` does
            not satisfy ``pyproject.toml`` any more: run ``make lock``).
    """
    options = EXPORTS[name]
    command = [uv_binary(), "export", "--frozen", "--quiet", "--no-progress", "--no-header",
               "--no-emit-project", "--format", "requirements-txt", *options]  # fmt: skip
    text = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    hashes = "" if "--no-hashes" in options else " and hashes"
    return HEADER.format(hashes=hashes) + text


#: The compose file's Prefect server image; its tag is ``<locked prefect>-python3.11``.
PREFECT_IMAGE = re.compile(r"(image: prefecthq/prefect:)[^\s]+(-python3\.11)")


def locked_version(package: str) -> str:
    """Return the version of one package in ``uv.lock``."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))
    (version,) = [p["version"] for p in lock["package"] if p["name"] == package]
    return version


def compose_with_locked_prefect() -> str:
    """Return ``docker-compose.yml`` with the Prefect server image tagged as the locked prefect.

    Raises:
        ValueError: If the file names no ``prefecthq/prefect:<tag>-python3.11`` image.
    """
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    updated, count = PREFECT_IMAGE.subn(rf"\g<1>{locked_version('prefect')}\g<2>", text)
    if count != 1:
        raise ValueError("docker-compose.yml: no prefecthq/prefect:<version>-python3.11 image")
    return updated


def main(argv: list[str] | None = None) -> int:
    """Write the exported files, or with ``--check`` report those that differ.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        0 when written or all up to date; 1 when ``--check`` found a difference.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare only; write nothing")
    args = parser.parse_args(argv)
    stale = []
    for name in EXPORTS:
        path = FOLDER / name
        text = exported(name)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(f"requirements/{name}")
        else:
            path.write_text(text, encoding="utf-8")
    compose = ROOT / "docker-compose.yml"
    text = compose_with_locked_prefect()
    if args.check:
        if compose.read_text(encoding="utf-8") != text:
            stale.append("docker-compose.yml (the prefect-server image)")
    else:
        compose.write_text(text, encoding="utf-8")
    if stale:
        print(f"not what uv.lock exports now: {', '.join(stale)}: run make lock", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
