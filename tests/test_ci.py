"""The CI workflow (.github/workflows/ci.yml) and its scripts (.ci/), as far as they run here.

`make lint` runs actionlint on the workflow, shellcheck on the scripts and the published
schema on .github/dependabot.yml. These tests hold the jobs to what the project needs: each
job runs its script, the mongodb job covers every test module that reaches the store, the
compose stack's settings are complete. What needs Docker (the compose and fuzz jobs, the
MongoDB service) runs on GitHub only; README, Development, says so.
"""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path

import yaml

from tests.test_compose import COMPOSE, INTERPOLATION, env_example, interpolate

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
JOBS: dict[str, dict] = WORKFLOW["jobs"]


def commands(job: str) -> list[str]:
    return [step["run"] for step in JOBS[job]["steps"] if "run" in step]


def test_each_job_runs_its_script_and_the_scripts_exist():
    assert set(JOBS) == {"test", "mongodb", "compose", "fuzz"}
    assert commands("test") == ["bash .ci/run"]
    assert commands("mongodb") == ["make install", "bash .ci/mongodb.sh"]
    assert commands("compose") == ["bash .ci/compose-smoke.sh"]
    assert commands("fuzz") == ["bash .ci/fuzz.sh"]
    for job in JOBS.values():
        assert job["runs-on"].startswith("ubuntu-") and job["timeout-minutes"] <= 60
        for step in job["steps"]:
            if step.get("uses", "").startswith("actions/setup-python"):
                assert step["with"]["python-version"] == "3.11"
    scripts = {m for job in JOBS for c in commands(job) for m in re.findall(r"\.ci/[\w.-]+", c)}
    for script in scripts | {".ci/stack.sh", "docker/smoke.sh"}:
        path = ROOT / script
        assert path.is_file() and os.access(path, os.X_OK), script
    # The make-test job is the same entry point as every CI of the project.
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("make test")


def test_the_mongodb_job_is_mongo_7_with_the_application_s_own_account():
    job = JOBS["mongodb"]
    service = job["services"]["mongo"]
    assert service["image"] == "mongo:7" == COMPOSE["services"]["mongo"]["image"]
    assert service["ports"] == ["27017:27017"]
    (run,) = [step for step in job["steps"] if step.get("run") == "bash .ci/mongodb.sh"]
    assert run["env"]["MONGO_ROOT_USER"] == service["env"]["MONGO_INITDB_ROOT_USERNAME"]
    assert run["env"]["MONGO_ROOT_PASSWORD"] == service["env"]["MONGO_INITDB_ROOT_PASSWORD"]
    assert run["env"]["MONGO_CONTAINER"] == "${{ job.services.mongo.id }}"
    script = (ROOT / ".ci" / "mongodb.sh").read_text()
    # The account is made by compose's own script, from the variables it reads.
    assert "docker/mongo-init.js" in script
    init = (ROOT / "docker" / "mongo-init.js").read_text()
    for name in set(re.findall(r"process\.env\.(\w+)", init)):
        assert f"-e {name}" in script, f"mongo-init.js reads {name}, which mongodb.sh does not pass"
    assert re.search(r"MONGODB_URI=\"mongodb://\$MONGO_APP_USER:\$MONGO_APP_PASSWORD@", script)
    assert 'MLOPS_TEST_DATABASE="$MONGO_APP_DB"' in script


def test_the_mongodb_job_runs_every_test_module_that_reaches_the_store():
    script = (ROOT / ".ci" / "mongodb.sh").read_text()
    listed = set(re.findall(r"tests/(test_\w+\.py)", script))
    reaching = {
        path.name
        for path in (ROOT / "tests").glob("test_*.py")
        if re.search(r"\bfresh_store\b|\bfresh_database\(", path.read_text())
    }
    assert "test_mongodb.py" in listed and "test_store.py" in reaching
    assert reaching <= listed, f"the mongodb job misses {sorted(reaching - listed)}"
    assert all((ROOT / "tests" / name).is_file() for name in listed)
    markers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    assert any(m.startswith("mongodb:") for m in markers["ini_options"]["markers"])


def test_the_ci_stack_settings_replace_every_placeholder(tmp_path):
    env_file = tmp_path / "compose.env"
    subprocess.run(
        [str(ROOT / ".ci" / "stack.sh"), "write-env"],
        env={**os.environ, "CI_ENV_FILE": str(env_file), "CI_TRAIN_ARGS": "--sample 9000"},
        check=True,
    )
    written = {}
    for line in env_file.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            written[name] = value
    assert set(written) == set(env_example())
    for name, value in env_example().items():
        if value.startswith("change-me"):
            assert re.fullmatch(r"[0-9a-f]{48}", written[name]), name  # safe in a MongoDB URI
    assert written["TRAIN_ARGS"] == "--sample 9000"
    # Every variable the compose file requires resolves from it.
    text = (ROOT / "docker-compose.yml").read_text()
    assert INTERPOLATION.search(text) and interpolate(text, written)


def test_the_fuzz_job_follows_the_fuzz_test_s_convention():
    script = (ROOT / ".ci" / "fuzz.sh").read_text()
    assert "tests/test_fuzz.py -m fuzz" in script and "MLOPS_API_URL=" in script
    fuzz = ROOT / "tests" / "test_fuzz.py"
    if fuzz.is_file():  # written by another change (issue 21): it reads the same variables
        assert "MLOPS_API_URL" in fuzz.read_text()
        markers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
        assert any(m.startswith("fuzz:") for m in markers["ini_options"]["markers"])
