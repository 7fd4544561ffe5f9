"""Static checks of the container files: Dockerfile, .dockerignore, docker-compose.yaml.

Nothing here needs a Docker engine. The checks make sure that what the images
and the compose stack would run exists in the repository (modules, scripts,
dvc.yaml), that published ports match the settings' defaults, and that every
healthcheck probes a path the service really serves, that every image installs its own
extra of pyproject.toml and runs as a non-root user, and that no volume sits on a DVC output.
hadolint and actionlint are not run here: `make lint` runs them.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE_FILE = ROOT / "docker-compose.yaml"
DOCKERIGNORE = ROOT / ".dockerignore"
WORKFLOWS = ROOT / ".github" / "workflows"

# Targets every build must provide, and the services of the compose stack.
IMAGE_TARGETS = ("api", "app", "pipeline", "score", "mlflow")
COMPOSE_SERVICES = ("mlflow", "pipeline", "api", "app")

# Health paths served by each service: /health is declared by our FastAPI app,
# /_stcore/health is Streamlit's built-in endpoint and /health MLflow's.
HEALTH_PATHS = {"api": "/health", "app": "/_stcore/health", "mlflow": "/health"}
MLFLOW_DEFAULT_PORT = 5000

URL_RE = re.compile(r"https?://(?P<host>[A-Za-z0-9_.\-\[\]:]+?):(?P<port>\d+)(?P<path>/[^\s'\"),]*)")


# --------------------------------------------------------------------------
# Dockerfile parsing (just enough for our own file)
# --------------------------------------------------------------------------


@dataclass
class Stage:
    name: str
    base: str
    parent: Stage | None = None
    cmd: list[str] | None = None
    entrypoint: list[str] | None = None
    healthcheck: list[str] | None = None
    user: str | None = None
    workdir: str | None = None
    exposed: list[int] = field(default_factory=list)
    copies: list[list[str]] = field(default_factory=list)

    def effective(self, attr: str) -> Any:
        stage: Stage | None = self
        while stage is not None:
            value = getattr(stage, attr)
            if value:
                return value
            stage = stage.parent
        return None

    def argv(self) -> list[str]:
        return list(self.effective("entrypoint") or []) + list(self.effective("cmd") or [])


def _instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) pairs; continuations joined, comments dropped."""
    result: list[tuple[str, str]] = []
    buffer = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buffer and (not line or line.startswith("#")):
            continue
        if buffer and line.startswith("#"):
            continue  # comment lines inside a continued instruction
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        buffer += line
        if buffer.strip():
            keyword, _, args = buffer.strip().partition(" ")
            result.append((keyword.upper(), args.strip()))
        buffer = ""
    return result


def _exec_form(args: str, what: str) -> list[str]:
    value = json.loads(args)
    message = f"{what} must use the JSON (exec) form, got: {args}"
    assert isinstance(value, list), message
    assert all(isinstance(v, str) for v in value), message
    return value


def parse_dockerfile(path: Path = DOCKERFILE) -> dict[str, Stage]:
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for keyword, args in _instructions(path.read_text()):
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            base = words[0]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else f"#{len(stages)}"
            current = Stage(name=name, base=base, parent=stages.get(base))
            stages[name] = current
        elif current is None:
            continue  # ARG before the first FROM
        elif keyword == "CMD":
            current.cmd = _exec_form(args, f"CMD of stage {current.name}")
        elif keyword == "ENTRYPOINT":
            current.entrypoint = _exec_form(args, f"ENTRYPOINT of stage {current.name}")
        elif keyword == "HEALTHCHECK":
            _, _, command = args.partition("CMD ")
            current.healthcheck = _exec_form(command.strip(), f"HEALTHCHECK of stage {current.name}")
        elif keyword == "USER":
            current.user = args
        elif keyword == "WORKDIR":
            current.workdir = args
        elif keyword == "EXPOSE":
            current.exposed += [int(p.split("/")[0]) for p in args.split()]
        elif keyword == "COPY":
            words = shlex.split(args)
            if any(w.startswith("--from") for w in words):
                continue
            current.copies.append([w for w in words if not w.startswith("--")][:-1])
    return stages


# --------------------------------------------------------------------------
# Compose helpers
# --------------------------------------------------------------------------


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


def _as_argv(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def service_argv(name: str, service: dict[str, Any], stages: dict[str, Stage]) -> list[str]:
    """What the container runs: compose entrypoint/command over the image's."""
    build = service.get("build") or {}
    stage = stages.get(build.get("target", "")) if isinstance(build, dict) else None
    entrypoint = (
        _as_argv(service["entrypoint"])
        if "entrypoint" in service
        else list((stage.effective("entrypoint") if stage else None) or [])
    )
    command = (
        _as_argv(service["command"])
        if "command" in service
        else list((stage.effective("cmd") if stage else None) or [])
    )
    argv = entrypoint + command
    assert argv, f"service {name!r} has no command and its image has no CMD/ENTRYPOINT"
    return argv


def published_ports(service: dict[str, Any]) -> list[tuple[int, int]]:
    """(published, target) pairs from short ("[ip:]host:container") or long syntax."""
    pairs: list[tuple[int, int]] = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            pairs.append((int(entry["published"]), int(entry["target"])))
            continue
        spec = str(entry).split("/")[0]
        parts = spec.rsplit(":", 2)
        assert len(parts) >= 2, f"port {entry!r} publishes no explicit host port"
        pairs.append((int(parts[-2]), int(parts[-1])))
    return pairs


def healthcheck_url(test: list[str] | str) -> re.Match[str]:
    text = test if isinstance(test, str) else " ".join(test)
    match = URL_RE.search(text)
    assert match, f"no http URL in healthcheck {test!r}"
    return match


# --------------------------------------------------------------------------
# What a command names must exist
# --------------------------------------------------------------------------


def _module_file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def assert_runs_something_real(argv: list[str], where: str) -> None:
    prog = Path(argv[0]).name
    if prog.startswith("python"):
        assert len(argv) >= 3, f"{where}: expected `python -m MODULE`, got {argv}"
        assert argv[1] == "-m", f"{where}: expected `python -m MODULE`, got {argv}"
        module = argv[2]
        if module.split(".")[0] in {"pipeline", "api", "app"}:
            assert _module_file(module), f"{where}: module {module} has no file in the repo"
        else:
            assert importlib.util.find_spec(module), f"{where}: module {module} is not importable"
    elif prog == "uvicorn":
        target = next(a for a in argv[1:] if not a.startswith("-"))
        module, _, attr = target.partition(":")
        path = _module_file(module)
        assert path, f"{where}: uvicorn target {target}: no file for module {module}"
        assert attr, f"{where}: uvicorn target {target} names no application object"
        assert re.search(rf"^\s*{re.escape(attr)}\b[^=\n]*=", path.read_text(), re.MULTILINE), (
            f"{where}: {path.relative_to(ROOT)} does not define {attr!r}"
        )
    elif prog == "streamlit":
        assert argv[1] == "run", f"{where}: expected `streamlit run PATH`, got {argv}"
        assert (ROOT / argv[2]).is_file(), f"{where}: streamlit script {argv[2]} does not exist"
    elif prog == "pipeline-workspace":
        # The pipeline image's entry point (docker/pipeline-workspace.sh) runs the rest in its workspace.
        assert (ROOT / "docker" / "pipeline-workspace.sh").is_file(), f"{where}: no docker/pipeline-workspace.sh"
        assert_runs_something_real(argv[1:], where)
    elif prog == "dvc":
        assert argv[1] == "repro", f"{where}: unexpected dvc command {argv}"
        assert (ROOT / "dvc.yaml").is_file(), f"{where}: `dvc repro` needs dvc.yaml"
        assert (ROOT / "params.yaml").is_file(), f"{where}: the image copies params.yaml"
    elif prog == "mlflow":
        assert argv[1] == "server", f"{where}: unexpected mlflow command {argv}"
        assert importlib.util.find_spec("mlflow"), f"{where}: mlflow is not installed"
    else:
        pytest.fail(f"{where}: unknown program {argv[0]!r}; teach this test about it")


def listen_port(name: str, service: dict[str, Any], argv: list[str]) -> str | None:
    """The port a service listens on: a flag, or for ``python -m api`` its API_PORT setting."""
    if argv[-3:] == ["python", "-m", "api"] or argv == ["python", "-m", "api"]:
        return str((service.get("environment") or {}).get("API_PORT"))
    return flag_value(argv, "--server.port" if name == "app" else "--port")


def flag_value(argv: list[str], flag: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    return parse_dockerfile()


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


def expected_port(service: str) -> int:
    if service == "mlflow":
        return MLFLOW_DEFAULT_PORT
    settings_module = pytest.importorskip(f"{service}.settings")
    fields = settings_module.Settings.model_fields
    assert "port" in fields, f"{service}.settings.Settings has no `port` field"
    return int(fields["port"].default)


# --------------------------------------------------------------------------
# Dockerfile
# --------------------------------------------------------------------------


def test_dockerfile_has_all_targets(stages: dict[str, Stage]) -> None:
    assert "runtime" in stages
    for target in IMAGE_TARGETS:
        assert target in stages, f"Dockerfile has no `{target}` target"
        assert stages[target].base == "runtime", f"{target} must be built FROM runtime"


@pytest.mark.parametrize("target", IMAGE_TARGETS)
def test_image_runs_as_non_root(stages: dict[str, Stage], target: str) -> None:
    assert stages[target].effective("user") == "10001:10001", f"{target} must run as the app user (uid 10001)"


@pytest.mark.parametrize("target", IMAGE_TARGETS)
def test_image_installs_only_its_extra_from_the_lock(target: str) -> None:
    text = DOCKERFILE.read_text()
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    body = text.split(f" AS {target}\n", 1)[1].split("\nFROM ", 1)[0]
    copied = re.findall(r"^COPY --from=deps-(\S+) /opt/venv /opt/venv$", body, re.MULTILINE)
    assert len(copied) == 1, f"{target} must copy exactly one deps-* virtualenv"
    extra = copied[0]
    assert extra in extras, f"{target} installs extra {extra!r}, which pyproject.toml does not define"
    assert re.search(
        rf"AS deps-{extra}\nRUN (--mount=\S+ \\\n\s+)?uv sync --locked --no-install-project --extra {extra}\n", text
    ), f"deps-{extra} must install the extra {extra!r} from uv.lock (uv sync --locked)"


def test_runtime_sets_env() -> None:
    text = DOCKERFILE.read_text()
    runtime = text.split(" AS runtime", 1)[1]
    assert "--uid 10001" in runtime
    for var in (
        "PYTHONDONTWRITEBYTECODE=1",
        "PYTHONUNBUFFERED=1",
        "DVC_NO_ANALYTICS=1",
        "OMP_WAIT_POLICY=PASSIVE",
    ):
        assert var in runtime, f"runtime stage does not set {var}"


@pytest.mark.parametrize("target", IMAGE_TARGETS)
def test_image_command_names_something_real(stages: dict[str, Stage], target: str) -> None:
    assert_runs_something_real(stages[target].argv(), f"Dockerfile target {target}")


@pytest.mark.parametrize("target", ["api", "app", "mlflow"])
def test_image_healthcheck_probes_a_served_path(stages: dict[str, Stage], target: str) -> None:
    stage = stages[target]
    assert stage.healthcheck, f"target {target} has no HEALTHCHECK"
    url = healthcheck_url(stage.healthcheck)
    assert url["path"] == HEALTH_PATHS[target]
    assert int(url["port"]) in stage.exposed, f"{target} probes port {url['port']} it does not EXPOSE"


def _ignored(path: str, patterns: list[str]) -> bool:
    """Approximation of .dockerignore matching (last matching rule wins)."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").strip("/")
        candidates = [pat, pat[3:]] if pat.startswith("**/") else [pat]
        if any(fnmatch.fnmatchcase(p, c) for p in prefixes for c in candidates):
            ignored = not negate
    return ignored


def _dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def test_copied_files_exist_and_are_not_ignored(stages: dict[str, Stage]) -> None:
    patterns = _dockerignore_patterns()
    problems = []
    for stage in stages.values():
        for sources in stage.copies:
            for source in sources:
                if not (ROOT / source).exists():
                    problems.append(f"{stage.name}: COPY {source} does not exist")
                elif _ignored(source, patterns):
                    problems.append(f"{stage.name}: COPY {source} is excluded by .dockerignore")
    assert not problems, "\n".join(problems)


def test_dockerignore_keeps_local_state_out() -> None:
    patterns = _dockerignore_patterns()
    must_ignore = [
        ".git",
        ".venv",
        "pipeline/__pycache__",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        "mlruns",
        "mlartifacts",
        "mlflow.db",
        ".dvc/cache",
        ".dvc/tmp",
        "data/interim",
        "data/processed",
        "data/predictions",
        "reports",
        "tests/artifacts",
        ".env",
        ".coverage",
        "coverage.xml",
        ".tools",
        "tests",
    ]
    leaking = [p for p in must_ignore if not _ignored(p, patterns)]
    assert not leaking, f".dockerignore lets these into the build context: {leaking}"
    for needed in (
        "pyproject.toml",
        "uv.lock",
        "dvc.yaml",
        "params.yaml",
        ".dvc/config",
        "data/bundled",
        "api/main.py",
    ):
        assert not _ignored(needed, patterns), f".dockerignore excludes {needed}, which the images need"


# --------------------------------------------------------------------------
# docker-compose.yaml
# --------------------------------------------------------------------------


def test_compose_structure(compose: dict[str, Any], stages: dict[str, Stage]) -> None:
    assert "version" not in compose, "the compose spec has no `version:` key"
    services = compose["services"]
    assert set(COMPOSE_SERVICES) <= set(services)
    assert {"pipeline", "mlflow"} <= set(compose.get("volumes") or {})
    assert services["pipeline"].get("profiles") == ["pipeline"]
    for name, service in services.items():
        target = (service.get("build") or {}).get("target")
        assert target in stages, f"service {name}: build target {target!r} is not a Dockerfile stage"
        assert service.get("image") == f"accident-severity-{target}", f"service {name}: tag the image by its target"
        assert {"path": ".env", "required": False} in service.get("env_file", []), (
            f"service {name} must take an optional .env"
        )
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            assert source in compose["volumes"], f"service {name}: volume {source!r} is not declared"


def test_compose_dependencies_wait_for_health(compose: dict[str, Any], stages: dict[str, Stage]) -> None:
    services = compose["services"]
    expected = {"pipeline": "mlflow", "api": "mlflow", "app": "api"}
    for name, dependency in expected.items():
        depends_on = services[name].get("depends_on") or {}
        assert depends_on.get(dependency, {}).get("condition") == "service_healthy", (
            f"{name} must wait for {dependency} to be healthy"
        )
    for name, service in services.items():
        for dependency, spec in (service.get("depends_on") or {}).items():
            if spec.get("condition") != "service_healthy":
                continue
            dep = services[dependency]
            target = dep["build"]["target"]
            assert "healthcheck" in dep or stages[target].effective("healthcheck"), (
                f"{name} waits for {dependency} to be healthy but it has no healthcheck"
            )


@pytest.mark.parametrize("name", COMPOSE_SERVICES)
def test_service_command_names_something_real(compose: dict[str, Any], stages: dict[str, Stage], name: str) -> None:
    service = compose["services"][name]
    argv = service_argv(name, service, stages)
    assert_runs_something_real(argv, f"compose service {name}")
    # A command repeated in compose must not drift from the image's own.
    target_cmd = stages[service["build"]["target"]].effective("cmd")
    if "command" in service and target_cmd:
        assert _as_argv(service["command"]) == target_cmd, (
            f"compose command of {name} differs from the CMD of its Dockerfile target"
        )


@pytest.mark.parametrize("name", ["mlflow", "api", "app"])
def test_published_ports_match_default_settings(compose: dict[str, Any], stages: dict[str, Stage], name: str) -> None:
    service = compose["services"][name]
    port = expected_port(name)
    assert published_ports(service) == [(port, port)], f"{name} must publish {port}:{port}"
    argv = service_argv(name, service, stages)
    listen = listen_port(name, service, argv)
    assert listen == str(port), f"{name} listens on {listen}, not {port}"
    assert port in stages[service["build"]["target"]].exposed


@pytest.mark.parametrize("name", ["mlflow", "api", "app"])
def test_compose_healthcheck_probes_a_served_path(compose: dict[str, Any], stages: dict[str, Stage], name: str) -> None:
    service = compose["services"][name]
    assert "healthcheck" in service, f"{name} has no healthcheck"
    test = service["healthcheck"]["test"]
    assert test[0] in ("CMD", "CMD-SHELL")
    url = healthcheck_url(test)
    assert url["path"] == HEALTH_PATHS[name]
    assert url["host"] in ("localhost", "127.0.0.1"), "a healthcheck runs inside its own container"
    argv = service_argv(name, service, stages)
    assert url["port"] == listen_port(name, service, argv)


def test_api_declares_its_health_route() -> None:
    sources = [p.read_text() for p in (ROOT / "api").rglob("*.py")]
    assert any(re.search(r"""["']/health["']""", s) for s in sources), (
        "no '/health' route is declared in the api package"
    )


def test_streamlit_and_mlflow_are_installed() -> None:
    # /_stcore/health and MLflow's /health come with these libraries.
    assert importlib.util.find_spec("streamlit")
    assert importlib.util.find_spec("mlflow")


def test_services_reach_each_other_by_service_name(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("pipeline", "api"):
        assert services[name]["environment"]["MLFLOW_TRACKING_URI"] == f"http://mlflow:{MLFLOW_DEFAULT_PORT}"
    # MLflow answers 403 to unknown Host headers: `mlflow` must be allowed.
    allowed = flag_value(service_argv("mlflow", services["mlflow"], {}), "--allowed-hosts") or ""
    assert "mlflow:*" in allowed.split(",")
    assert services["app"]["environment"]["API_URL"] == f"http://api:{expected_port('api')}"


def _dvc_outputs() -> list[str]:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    outs: list[str] = []
    for stage in stages.values():
        for key in ("outs", "metrics", "plots"):
            for entry in stage.get(key, []):
                outs.append(next(iter(entry)) if isinstance(entry, dict) else str(entry))
    return outs


def test_no_volume_on_a_dvc_output(compose: dict[str, Any], stages: dict[str, Stage]) -> None:
    # DVC deletes a stage's outputs before it runs: a mount point cannot be deleted ("Device or
    # resource busy"), so a volume may hold outputs (a parent folder) but never be one.
    workdir = Path(stages["pipeline"].effective("workdir"))
    outputs = [workdir / out for out in _dvc_outputs()]
    for volume in compose["services"]["pipeline"].get("volumes", []):
        target = Path(str(volume).split(":")[1])
        for out in outputs:
            assert not (target == out or out in target.parents), f"volume on {target} sits on the DVC output {out}"


def test_pipeline_workspace_is_a_volume(compose: dict[str, Any], stages: dict[str, Stage]) -> None:
    # dvc.lock and the outputs DVC does not cache (validation.json, metrics.json...) must outlive
    # the container, or a second `dvc repro` reruns validate, evaluate and register.
    workdir = stages["pipeline"].effective("workdir")
    targets = [str(volume).split(":")[1] for volume in compose["services"]["pipeline"].get("volumes", [])]
    assert workdir in targets, f"the pipeline's workspace {workdir} is not a volume: {targets}"
    assert stages["pipeline"].effective("entrypoint") == ["pipeline-workspace"]


def test_api_follows_the_champion_alias(compose: dict[str, Any]) -> None:
    # Without it a model registered by the pipeline container needs a manual reload.
    poll = compose["services"]["api"]["environment"].get("API_MODEL_POLL_SECONDS")
    assert poll is not None and float(poll) > 0
