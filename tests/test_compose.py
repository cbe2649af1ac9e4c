"""docker-compose.yml, the Dockerfile and their companions, checked by structure.

No Docker engine runs here, so nothing is built or started: the files are parsed and held to
what the stack needs (services, one network, health checks probed with tools the images
have, start-up order, published ports, secrets only from .env, every referenced file
present in the image's build context) and to each other (the Dockerfile against
bentofile.yaml's docker options and the compose volumes).
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pytest
import yaml

from store.settings import StoreSettings
from tabular.errors import StoreError

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]

#: The application image, built from the Dockerfile.
APP_IMAGE = "tabular-mlops"
#: The ports the README and the Makefile document: the API (`make serve`), the Prefect UI
#: (`make prefect-server`), the Evidently UI (`make monitor-ui`).
PUBLISHED = {"api": 3000, "prefect-server": 4200, "evidently-ui": 8000, "dask-scheduler": 8787}
#: What each health check must request (path and port inside the container).
PROBES = {
    "api": ("/readyz", 3000),
    "prefect-server": ("/api/health", 4200),
    "evidently-ui": ("/api/version", 8000),
    "worker": ("/health", 8080),
    "dask-scheduler": ("/health", 8787),
    "dask-worker": ("/health", 8788),
}
#: The services of the ``dask`` profile (``docker compose --profile dask up``); the others
#: start without a profile.
DASK_PROFILE = {"dask-scheduler", "dask-worker"}
#: Environment names whose values are secrets.
SECRET_NAME = re.compile(r"PASSWORD|SECRET|API_KEY|TOKEN", re.IGNORECASE)
#: A compose interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}.
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def env_example() -> dict[str, str]:
    """The variables .env.example defines, by name."""
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def interpolate(text: str, env: dict[str, str]) -> str:
    """Resolve compose's ${...} forms against ``env``; a required one that is unset raises."""

    def resolve(match: re.Match) -> str:
        name, operator, argument = match.groups()
        value = env.get(name)
        if operator in (":?", "?") and not value:
            raise KeyError(f"{name}: {argument}")
        if operator in (":-", "-") and not value:
            return argument
        return value or ""

    return INTERPOLATION.sub(resolve, text)


def is_app(service: dict) -> bool:
    return service.get("image", "").split(":")[0] == APP_IMAGE


def one_shot(name: str) -> bool:
    return SERVICES[name].get("restart") == "no"


def environment(name: str) -> dict[str, str]:
    env = SERVICES[name].get("environment") or {}
    assert isinstance(env, dict), f"{name}: write environment as a mapping"
    return {key: str(value) for key, value in env.items()}


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def dockerfile_env() -> dict[str, str]:
    env = {}
    for keyword, arguments in dockerfile():
        if keyword == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(arguments))
    return env


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps ``path`` (relative, POSIX) out of the build context."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert not any(p.startswith("!") for p in patterns), "exceptions are not checked here"
    parts = PurePosixPath(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatchcase(part, pattern[3:]) for part in parts):
                return True
        elif any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            return True
    return False


def probe(service: dict) -> list[str]:
    test = service["healthcheck"]["test"]
    assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL"), test
    return test


# -- compose: services, network, health, order ------------------------------------------------


def test_the_stack_has_its_services():
    default = {"mongo", "prefect-server", "train", "api", "worker", "evidently-ui"}
    assert set(SERVICES) == default | DASK_PROFILE
    for name in default:
        assert "profiles" not in SERVICES[name], f"{name} starts with the stack, in no profile"
    assert SERVICES["mongo"]["image"].split(":")[0] == "mongo"  # the official image
    assert SERVICES["prefect-server"]["image"].startswith("prefecthq/prefect:3")
    for name in ("train", "api", "worker", "evidently-ui"):
        assert is_app(SERVICES[name]), f"{name} runs the application image"
    # The worker serves the deployments against the stack's Prefect server (`make deploy`).
    worker = SERVICES["worker"]["command"]
    assert worker[:3] == ["python", "-m", "flows.deploy"] and "--service-url" in worker
    assert worker[worker.index("--service-url") + 1] == "http://api:3000"
    assert environment("worker")["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert "ui" in SERVICES["evidently-ui"]["command"]


def test_every_service_joins_the_one_named_network():
    assert len(COMPOSE["networks"]) == 1
    (network,) = COMPOSE["networks"]
    for name, service in SERVICES.items():
        assert service.get("networks") == [network], name


def test_every_server_has_a_health_check_with_a_tool_its_image_has():
    for name, service in SERVICES.items():
        if one_shot(name):
            # A job exits; its dependents wait for it to succeed instead (next test).
            assert service["healthcheck"] == {"disable": True}, name
            continue
        test = probe(service)
        command = " ".join(test[1:])
        assert not re.search(r"\b(curl|wget)\b", command), f"{name}: slim images have neither"
        if service["image"].split(":")[0] == "mongo":
            assert command.startswith("mongosh") and "ping" in command
        else:  # the application image and prefecthq/prefect are Python images
            assert test[1] == "python", name
            path, port = PROBES[name]
            assert f"http://127.0.0.1:{port}{path}'" in command, name
        for setting in ("interval", "timeout", "retries"):
            assert setting in service["healthcheck"], f"{name}: {setting}"


def test_the_worker_probe_is_the_prefect_runner_s_own_server():
    env = environment("worker")
    assert env["PREFECT_RUNNER_SERVER_ENABLE"] == "true"
    assert env["PREFECT_RUNNER_SERVER_PORT"] == str(PROBES["worker"][1])


def test_services_start_after_what_they_need_is_healthy():
    needs = {
        "train": {"mongo", "prefect-server"},
        "api": {"mongo", "train"},
        "worker": {"mongo", "prefect-server", "api"},
    }
    for name, service in SERVICES.items():
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        assert set(depends) >= needs.get(name, set()), name
        for other, rule in depends.items():
            expected = "service_completed_successfully" if one_shot(other) else "service_healthy"
            assert rule == {"condition": expected}, f"{name} -> {other}"
    # No cycle: a topological order exists.
    order, pending = [], dict.fromkeys(SERVICES)
    while pending:
        ready = [n for n in pending if set(SERVICES[n].get("depends_on") or {}) <= set(order)]
        assert ready, f"dependency cycle among {sorted(pending)}"
        order += ready
        for n in ready:
            pending.pop(n)


def test_only_the_api_and_the_uis_are_published_on_localhost():
    published = {name: s["ports"] for name, s in SERVICES.items() if s.get("ports")}
    assert set(published) == set(PUBLISHED)
    for name, ports in published.items():
        assert ports == [f"127.0.0.1:{PUBLISHED[name]}:{PUBLISHED[name]}"], name
        assert not SERVICES[name].get("network_mode"), name
    # The same ports as `make serve`, `make prefect-server` and `make monitor-ui` (the Dask
    # dashboard has no make target).
    makefile = (ROOT / "Makefile").read_text()
    for variable, service in (("PORT", "api"), ("PREFECT_PORT", "prefect-server"),
                              ("UI_PORT", "evidently-ui")):  # fmt: skip
        default = re.search(rf"^{variable}\s*\?=\s*(\d+)$", makefile, re.M)
        assert default and int(default.group(1)) == PUBLISHED[service], variable


def test_the_dask_profile_is_a_scheduler_and_workers_on_the_application_image():
    for name in DASK_PROFILE:
        service = SERVICES[name]
        assert service["profiles"] == ["dask"], name
        assert is_app(service), f"{name}: the workers run the project's code: the application image"
    scheduler = SERVICES["dask-scheduler"]["command"]
    assert scheduler[:2] == ["dask", "scheduler"]
    port = scheduler[scheduler.index("--port") + 1]
    dashboard = scheduler[scheduler.index("--dashboard-address") + 1]
    assert dashboard == f":{PROBES['dask-scheduler'][1]}"
    worker = SERVICES["dask-worker"]["command"]
    assert worker[:2] == ["dask", "worker"]
    assert worker[2] == f"tcp://dask-scheduler:{port}", "the workers join the profile's scheduler"
    assert worker[worker.index("--nthreads") + 1] == "1"
    assert worker[worker.index("--dashboard-address") + 1] == f":{PROBES['dask-worker'][1]}"
    assert SERVICES["dask-worker"]["depends_on"]["dask-scheduler"] == {
        "condition": "service_healthy"
    }
    # The workers' task runs report to the stack's Prefect server, as the training job's do.
    assert environment("dask-worker")["PREFECT_API_URL"] == environment("train")["PREFECT_API_URL"]
    replicas = SERVICES["dask-worker"]["deploy"]["replicas"]
    assert int(interpolate(str(replicas), env_example())) >= 2
    assert int(interpolate(str(replicas), {})) >= 2, (
        "two workers unless DASK_WORKERS says otherwise"
    )
    # The pipeline's --dask option accepts the address the guide gives the training job.
    from flows.cli_args import scheduler_address

    address = f"tcp://dask-scheduler:{port}"
    assert scheduler_address(address) == address
    for text in ((ROOT / "docs" / "deploy.md").read_text(), (ROOT / "README.md").read_text()):
        assert f"--dask {address}" in text and "--profile dask" in text


# -- compose: secrets and the store ----------------------------------------------------------


def test_no_secret_value_is_written_in_the_file():
    for name in SERVICES:
        for key, value in environment(name).items():
            if SECRET_NAME.search(key):
                assert INTERPOLATION.fullmatch(value), f"{name}.{key} must come from .env"
            # Credentials in a URI: each part one ${VAR} (messages and defaults dropped first).
            masked = INTERPOLATION.sub(lambda m: "${" + m.group(1) + "}", value)
            for url in re.findall(r"\w+://\S+", masked):
                credentials = urlsplit(url).netloc.rpartition("@")[0]
                assert not credentials or re.fullmatch(r"\$\{\w+\}(:\$\{\w+\})?", credentials), url
    # Nor anywhere else (commands, health checks): no placeholder or literal from .env.example.
    text = (ROOT / "docker-compose.yml").read_text()
    for key, value in env_example().items():
        if SECRET_NAME.search(key):
            assert value not in text, key
    assert not (ROOT / "docker-compose.yml").read_text().count("env_file")  # no blanket .env


def test_env_example_documents_every_variable_with_placeholders_only():
    example = env_example()
    referenced = set(INTERPOLATION.findall((ROOT / "docker-compose.yml").read_text()))
    for name, _, _ in referenced:
        assert name in example, f"{name} is used by docker-compose.yml but not in .env.example"
    required = {name for name, operator, _ in referenced if operator in (":?", "?")}
    assert {"MONGO_ROOT_PASSWORD", "MONGO_APP_PASSWORD", "MLOPS_API_KEY"} <= required
    for name, value in example.items():
        if SECRET_NAME.search(name):
            assert value.startswith("change-me"), f"{name}: a placeholder, never a real secret"
    for ignore in (".gitignore", ".dockerignore"):
        lines = (ROOT / ignore).read_text().splitlines()
        assert ".env" in lines, f"{ignore} must keep .env out"
    # Resolving the file with a variable missing fails, as compose does.
    with pytest.raises(KeyError, match="MLOPS_API_KEY"):
        interpolate(environment("api")["MLOPS_API_KEY"], {})


@pytest.mark.parametrize("name", ["train", "api", "worker"])
def test_the_application_requires_the_stack_s_mongodb(name, tmp_path):
    env = {k: interpolate(v, env_example()) for k, v in environment(name).items()}
    assert env["MLOPS_REQUIRE_MONGODB"] == "1"
    uri = urlsplit(env["MONGODB_URI"])
    assert (uri.scheme, uri.hostname, uri.port) == ("mongodb", "mongo", 27017)
    assert uri.username == env_example()["MONGO_APP_USER"]  # the app's account, not root
    # The project's own settings accept it, and refuse to fall back without it.
    env["MLOPS_STORE_DIR"] = str(tmp_path)
    settings = StoreSettings.from_env(env)
    assert not settings.embedded and settings.database == env_example()["MONGO_APP_DB"]
    with pytest.raises(StoreError, match="MONGODB_URI is not set"):
        StoreSettings.from_env({k: v for k, v in env.items() if k != "MONGODB_URI"})


def test_mongo_creates_the_application_account_from_the_same_variables():
    mongo = environment("mongo")
    script = (ROOT / "docker" / "mongo-init.js").read_text()
    for name in set(re.findall(r"process\.env\.(\w+)", script)):
        assert name in mongo, f"docker/mongo-init.js reads {name}, which mongo does not get"
    assert "readWrite" in script and "root" not in re.findall(r'role: "(\w+)"', script)
    uri = urlsplit(interpolate(environment("api")["MONGODB_URI"], env_example()))
    assert uri.username == interpolate(mongo["MONGO_APP_USER"], env_example())
    assert uri.password == interpolate(mongo["MONGO_APP_PASSWORD"], env_example())
    assert uri.path == "/" + interpolate(mongo["MONGO_APP_DB"], env_example())


# -- compose: every referenced file exists ---------------------------------------------------


def test_every_referenced_file_and_volume_exists():
    declared_volumes = set(COMPOSE["volumes"])
    for name, service in SERVICES.items():
        build = service.get("build")
        if build:
            context = ROOT / build["context"]
            assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name
        for mount in service.get("volumes", []):
            source, target = mount.split(":")[:2]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in declared_volumes, f"{name}: volume {source} is not declared"
            assert target.startswith("/"), mount
    assert set(declared_volumes) == {
        m.split(":")[0] for s in SERVICES.values() for m in s.get("volumes", []) if m[0] not in "./"
    }, "every declared volume is used"


def test_app_commands_exist_in_the_image():
    bin_dir = Path(sys.executable).parent
    for name, service in SERVICES.items():
        if not is_app(service) or "command" not in service:
            continue
        command = service["command"]
        if command[0] == "sh":
            script = command[1]
            assert (ROOT / script).is_file() and not dockerignored(script), script
            subprocess.run(["sh", "-n", str(ROOT / script)], check=True)  # syntax only
        elif command[:2] == ["python", "-m"]:
            module = command[2].replace(".", "/")
            found = [p for p in (f"{module}.py", f"{module}/__main__.py") if (ROOT / p).is_file()]
            assert found and not dockerignored(found[0]), f"{name}: no module {command[2]}"
        else:  # a console script installed by the project's dependencies
            assert (bin_dir / command[0]).is_file(), f"{name}: {command[0]} is not installed"


def test_the_evidently_ui_reads_the_workspace_the_worker_writes():
    command = SERVICES["evidently-ui"]["command"]
    workspace = command[command.index("--workspace") + 1]
    artifacts = dockerfile_env()["MLOPS_ARTIFACTS"]
    # The drift monitor's default workspace is <artifacts>/monitoring/workspace.
    assert workspace == f"{artifacts}/monitoring/workspace"
    mounts = {service: set(SERVICES[service]["volumes"]) for service in ("worker", "evidently-ui")}
    assert f"artifacts:{artifacts}" in mounts["worker"] & mounts["evidently-ui"]


# -- the image -------------------------------------------------------------------------------


def test_the_image_is_slim_python_3_11_run_by_a_non_root_user():
    instructions = dockerfile()
    froms = [args for keyword, args in instructions if keyword == "FROM"]
    assert froms == ["python:3.11-slim"]
    users = [args for keyword, args in instructions if keyword == "USER"]
    user = users[-1].split(":")[0] if users else "root"
    assert user not in ("root", "0")
    last_user = max(i for i, (k, _) in enumerate(instructions) if k == "USER")
    assert all(k != "RUN" for k, _ in instructions[last_user:]), "nothing runs as root after USER"
    creates = " ".join(a for k, a in instructions if k == "RUN")
    assert re.search(rf"useradd\b[^&]*--uid {user}\b", creates), "the user is created"


def test_the_image_serves_the_api_by_default_and_probes_readyz():
    instructions = dockerfile()
    command = yaml.safe_load([a for k, a in instructions if k == "CMD"][-1])  # exec form: JSON
    bento = yaml.safe_load((ROOT / "bentofile.yaml").read_text())["name"]
    assert command[:3] == ["bentoml", "serve", f"{bento}:latest"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert command[command.index("--port") + 1] == "3000"
    healthcheck = [a for k, a in instructions if k == "HEALTHCHECK"][-1]
    assert "http://127.0.0.1:3000/readyz" in healthcheck and "python" in healthcheck
    assert [a for k, a in instructions if k == "EXPOSE"] == ["3000"]
    # The compose API service runs that default command.
    assert "command" not in SERVICES["api"]


def test_the_image_s_data_folders_are_the_compose_volumes():
    env = dockerfile_env()
    assert env["MLOPS_REQUIRE_MONGODB"] == "1"
    run = " ".join(a for k, a in dockerfile() if k == "RUN")
    targets = {"BENTOML_HOME": "bentoml", "MLOPS_ARTIFACTS": "artifacts", "MLOPS_STORE_DIR": None}
    for variable, volume in targets.items():
        folder = env[variable]
        assert folder.startswith("/data/") and folder in run, f"{variable}: created in the image"
        if volume:
            for name in ("train", "worker"):
                assert f"{volume}:{folder}" in SERVICES[name]["volumes"], (name, variable)
    assert f"bentoml:{env['BENTOML_HOME']}" in SERVICES["api"]["volumes"]
    assert f"api-journal:{env['MLOPS_STORE_DIR']}" in SERVICES["api"]["volumes"]
    assert "chown -R mlops:mlops /data" in run


def test_the_build_context_holds_what_the_project_installs():
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = packages["packages"]["find"]["include"]
    folders = [p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").is_file()]
    installed = [f for f in folders if any(fnmatch.fnmatchcase(f, p) for p in patterns)]
    assert {"tabular", "flows", "bentos", "validation"} <= set(installed)
    for path in [*installed, "data/flights.yaml", "docker/train.sh", "pyproject.toml",
                 "README.md", "bentofile.yaml"]:  # fmt: skip
        assert not dockerignored(path), f"{path} is needed in the image"
    for path in (".env", ".venv", "artifacts", ".store", ".bentoml", ".prefect", ".git", "tests",
                 "tabular/__pycache__/x.pyc"):  # fmt: skip
        assert dockerignored(path), f"{path} must stay out of the image"


def test_bentofile_docker_options_match_the_dockerfile():
    docker = yaml.safe_load((ROOT / "bentofile.yaml").read_text())["docker"]
    # BentoML's debian distro builds on python:<version>-slim, like the Dockerfile.
    assert docker.get("distro", "debian") == "debian"
    assert [a for k, a in dockerfile() if k == "FROM"] == [
        f"python:{docker['python_version']}-slim"
    ]
    run = " ".join(a for k, a in dockerfile() if k == "RUN")
    apt = re.findall(r"apt-get install[^&;]*", run)
    packages = {w for line in apt for w in line.split()[2:] if not w.startswith("-")}
    assert packages == set(docker.get("system_packages") or [])
    # BentoML 1.4 ignores docker.env for a new-style service; the top-level envs reach the image.
    assert "env" not in docker, "use the top-level envs: BentoML 1.4 ignores docker.env"
    env = dockerfile_env()
    envs = yaml.safe_load((ROOT / "bentofile.yaml").read_text())["envs"]
    assert {"MLOPS_REQUIRE_MONGODB"} <= {item["name"] for item in envs}
    for item in envs:
        assert env.get(item["name"]) == item["value"], f"bentofile envs {item['name']} differs"


# -- the deployment guide --------------------------------------------------------------------

#: How the code reads a variable: os.environ.get("X"), env["X"], or a constant X_ENV = "X".
READS = re.compile(
    r"(?:environ|env)(?:\.get\(|\[)\s*[\"']([A-Z][A-Z0-9_]+)[\"']|_ENV\s*=\s*[\"']([A-Z][A-Z0-9_]+)[\"']"
)


def test_the_deployment_guide_lists_every_variable():
    code = set()
    for package in ("tabular", "flows", "bentos", "validation", "monitoring"):
        for path in (ROOT / package).rglob("*.py"):
            code.update(filter(None, (n for pair in READS.findall(path.read_text()) for n in pair)))
    assert {"MONGODB_URI", "MLOPS_API_KEY", "MLOPS_ARTIFACTS", "PREFECT_API_URL"} <= code
    compose = {key for name in SERVICES for key in environment(name)}
    compose |= {
        name for name, _, _ in INTERPOLATION.findall((ROOT / "docker-compose.yml").read_text())
    }
    script = set(re.findall(r"\$\{(\w+):-", (ROOT / "docker" / "train.sh").read_text()))
    guide = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", (ROOT / "docs" / "deploy.md").read_text()))
    missing = (code | compose | script | set(env_example()) | set(dockerfile_env())) - guide
    assert not missing, f"docs/deploy.md does not describe {sorted(missing)}"
