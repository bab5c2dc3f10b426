"""docs/examples: the HAProxy and nginx configurations are valid for the real programs, and the
Kubernetes Deployment's grace period covers the drain it configures."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from tests.harness import WAIT

from conftest import require_program

EXAMPLES = Path(__file__).resolve().parents[3] / "docs" / "examples"


@pytest.mark.external("haproxy")
def test_the_haproxy_example_is_valid_and_checks_readyz() -> None:
    haproxy = require_program("haproxy", "/usr/sbin/haproxy")
    path = EXAMPLES / "haproxy.cfg"
    result = subprocess.run(
        [haproxy, "-c", "-f", str(path)], capture_output=True, text=True, timeout=WAIT
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = path.read_text()
    assert "option httpchk GET /readyz" in text and "check port 9100" in text


@pytest.mark.external("nginx")
def test_the_nginx_example_is_valid(tmp_path: Path) -> None:
    nginx = require_program("nginx", "/usr/sbin/nginx")
    wrapper = tmp_path / "nginx.conf"
    wrapper.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log stderr;\nevents {{}}\n"
        f"http {{ include {EXAMPLES / 'nginx.conf'}; }}\n"
    )
    result = subprocess.run(
        [nginx, "-t", "-c", str(wrapper), "-p", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert result.returncode == 0, result.stderr


def test_the_kubernetes_grace_period_covers_the_drain() -> None:
    documents = list(yaml.safe_load_all((EXAMPLES / "kubernetes.yaml").read_text()))
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = " ".join(container["args"])
    drain = float(re.search(r"drain_delay=(\d+)", args).group(1))  # type: ignore[union-attr]
    grace = float(re.search(r"shutdown_grace=(\d+)", args).group(1))  # type: ignore[union-attr]
    assert pod["terminationGracePeriodSeconds"] >= drain + grace
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "--admin" in container["args"]
    assert "lifecycle" not in container  # no preStop: the drain does its work
