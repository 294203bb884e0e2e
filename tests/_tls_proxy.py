"""nginx as a TLS + basic-auth / API-key proxy in front of the test Elasticsearch.

The integ-test-zip has no security module, so credentials and certificates
are checked by nginx (``scripts/es-tls-proxy/``): a throw-away CA and server
certificate, an htpasswd file, and two HTTPS listeners, one for basic auth
and one for an API key. nginx comes from Debian (``scripts/install-system-deps.sh``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROXY_DIR = ROOT / "scripts" / "es-tls-proxy"


@dataclass
class TlsProxy:
    """A running nginx; ``stop`` ends the process this helper started."""

    process: subprocess.Popen[bytes]
    directory: Path
    basic_url: str
    api_key_url: str
    ca_certs: Path
    username: str
    password: str
    api_key: str

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _nginx() -> str:
    subprocess.run(["bash", str(ROOT / "scripts" / "install-system-deps.sh"), "nginx"], check=True)
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(found).exists():
        raise RuntimeError("nginx is not installed; run scripts/install-system-deps.sh")
    return found


def start_tls_proxy(
    upstream: str, directory: Path, username: str, password: str, api_key: str
) -> TlsProxy:
    """Start nginx in ``directory`` proxying to ``upstream`` (``host:port``)."""
    nginx = _nginx()
    subprocess.run(["bash", str(PROXY_DIR / "make-certs.sh"), str(directory)], check=True)
    hashed = (
        subprocess.run(
            ["openssl", "passwd", "-apr1", "-stdin"],
            input=password.encode(),
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )
    (directory / "htpasswd").write_text(f"{username}:{hashed}\n")
    basic_port, api_key_port = _free_port(), _free_port()
    config = (PROXY_DIR / "nginx.conf.template").read_text()
    values = {
        "dir": str(directory),
        "upstream": upstream,
        "basic_port": str(basic_port),
        "api_key_port": str(api_key_port),
        "api_key": api_key,
        # nginx started as root runs its workers as nobody, who cannot read
        # a pytest temporary directory: keep them as the user who started it.
        "user_directive": "user root;" if os.geteuid() == 0 else "",
    }
    for name, value in values.items():
        config = config.replace("{{" + name + "}}", value)
    if "{{" in config:
        raise RuntimeError("nginx.conf.template has a placeholder the tests do not fill")
    (directory / "nginx.conf").write_text(config)
    with (directory / "stderr.log").open("wb") as stderr:  # the child keeps its own copy
        process = subprocess.Popen(
            [nginx, "-p", str(directory), "-c", str(directory / "nginx.conf"), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    proxy = TlsProxy(
        process,
        directory,
        f"https://127.0.0.1:{basic_port}",
        f"https://127.0.0.1:{api_key_port}",
        directory / "ca.crt",
        username,
        password,
        api_key,
    )
    deadline = time.monotonic() + 20
    for port in (basic_port, api_key_port):
        while True:
            if process.poll() is not None:
                err = (directory / "stderr.log").read_text(errors="replace")
                raise RuntimeError(f"nginx exited with {process.returncode}: {err}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    proxy.stop()
                    raise RuntimeError("nginx did not listen in time") from None
                time.sleep(0.05)
    return proxy
