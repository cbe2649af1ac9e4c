"""Build the Bento of the prediction service from ``bentofile.yaml``, without a package index.

``bentoml build`` runs in a subprocess: it imports the service module, which reads the
served models of one dataset when imported, so a second build in the same process (another
dataset, newer models) would otherwise see the first one's module.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

#: The repository root: ``bentofile.yaml`` and the build context.
PROJECT_DIR = Path(__file__).resolve().parent.parent


class BentoBuildError(RuntimeError):
    """``bentoml build`` failed; the message holds the end of its output."""


def build_bento(
    dataset: str,
    primary: str,
    secondary: str,
    *,
    project_dir: Path = PROJECT_DIR,
    timeout: float = 600,
) -> str:
    """Build the Bento serving one dataset's two models, and return its tag.

    Args:
        dataset: The dataset name.
        primary: Exact model-store tag of the primary model (recorded in the Bento).
        secondary: Exact tag of the secondary model.
        project_dir: Folder holding ``bentofile.yaml`` (the build context).
        timeout: Longest build time, in seconds.

    Returns:
        The Bento tag, ``<name>:<version>``.

    Raises:
        BentoBuildError: If the build fails.
    """
    command = [
        sys.executable,
        "-m",
        "bentoml",
        "build",
        str(project_dir),
        "--bentofile",
        str(project_dir / "bentofile.yaml"),
        "--arg",
        f"dataset={dataset}",
        "--arg",
        f"primary={primary}",
        "--arg",
        f"secondary={secondary}",
        "--label",
        f"dataset={dataset}",
        "--output",
        "tag",
    ]
    # The packages are installed when the image is built (python.lock_packages: false); make
    # sure nothing here reaches an index.
    env = {**os.environ, "PIP_NO_INDEX": "1", "BENTOML_DO_NOT_TRACK": "true"}
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=env, cwd=project_dir
    )
    tags = [line.split("__tag__:", 1)[1].strip() for line in completed.stdout.splitlines()
            if line.startswith("__tag__:")]  # fmt: skip
    if completed.returncode != 0 or not tags:
        tail = "\n".join((completed.stdout + completed.stderr).strip().splitlines()[-15:])
        raise BentoBuildError(f"bentoml build failed (exit {completed.returncode}):\n{tail}")
    return tags[-1]
