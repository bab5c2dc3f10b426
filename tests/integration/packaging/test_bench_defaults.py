"""bench/run.py with every server's defaults (issue 14): real `corral serve`, gunicorn and granian
started as the harness starts them, wrk driving the new scenarios, and `--check` judging Corral's
figures as ratios to the references measured in the same run. No performance assertion: which
targets hold is for bench/README.md, not for tests."""

from __future__ import annotations

import http.server
import json
import socketserver
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import require_program

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "bench"))
import wrkrun  # noqa: E402  (bench/'s own module, as bench/run.py imports it)


@pytest.mark.external("wrk")
def test_defaults_run_judges_corral_against_the_references_in_the_same_run(
    tmp_path: Path,
) -> None:
    require_program("wrk")
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--servers", "corral,gunicorn,granian",
         "--scenarios", "cpu5,mixed", "--duration", "2", "--warmup", "0", "--check",
         "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )  # fmt: skip
    # The scenarios left out of this short run are targets "not measured": --check fails (3).
    assert proc.returncode == 3, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert report["failed_servers"] == []
    assert report["meta"]["workers"] is None
    argv = {name: info["argv"] for name, info in report["meta"]["servers"].items()}
    assert argv["corral"][1:] == ["serve", str(ROOT / "bench" / "site"), "--listen",
                                  argv["corral"][4], "--no-access-log"]  # fmt: skip
    assert "--workers" not in argv["gunicorn"] and "--workers" not in argv["granian"]
    rows = {(r["server"], r["scenario"]): r for r in report["results"]}
    assert set(rows) == {
        (s, n) for s in ("corral", "gunicorn", "granian") for n in ("cpu5", "mixed")
    }
    for (server, _), r in rows.items():
        assert r["requests"] > 0, r
        assert r["cpu_us_per_request"] > 0, r
        if server == "corral":
            assert r["error_count"] == 0, r
    checks = {c["check"]: c for c in report["acceptance"]}
    # Every ratio of the scenarios run was judged on the figures of this run...
    for label in ("cpu5: req/s >= 1.00x gunicorn's", "cpu5: p99 <= 1.20x gunicorn's",
                  "mixed: req/s > 1.00x gunicorn's", "mixed: req/s > 1.00x granian's",
                  "mixed: p99 <= 1.00x granian's"):  # fmt: skip
        judged = checks[label]
        corral = rows[("corral", label.split(":")[0])]
        ref = rows[(label.split()[-1].removesuffix("'s"), label.split(":")[0])]
        figure = "req_per_s" if "req/s" in label else "latency_us"
        if figure == "req_per_s":
            expected = corral["req_per_s"] / ref["req_per_s"]
        else:
            expected = corral["latency_us"]["p99"] / ref["latency_us"]["p99"]
        assert judged["ratio"] == pytest.approx(expected, abs=5e-4)  # (rounded to 3 places), judged
    # ... and those of the scenarios left out are missed, not skipped.
    assert checks["sleep50: zero errors"]["value"] == "not measured"
    assert checks["hello: CPU/request <= 0.40x gunicorn's"]["value"] == (
        "not measured (corral and gunicorn not in the run)"
    )
    assert "Corral's targets:" in proc.stdout and "[MISSED] sleep50: zero errors" in proc.stdout


class _Counting(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    paths: Counter[str] = Counter()
    lock = threading.Lock()

    def do_GET(self) -> None:
        with self.lock:
            self.paths[self.path] += 1
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def counting_server() -> Iterator[int]:
    _Counting.paths = Counter()
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Counting)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.external("wrk")
def test_the_mixed_scenario_sends_half_its_requests_to_each_route(counting_server: int) -> None:
    wrk = require_program("wrk")
    result = wrkrun.run(
        wrk,
        f"http://127.0.0.1:{counting_server}/",
        "mixed.lua",
        connections=4,
        duration=1,
        threads=1,
        timeout=5,
    )
    paths = _Counting.paths
    assert set(paths) == {"/sleep50", "/cpu5"}, paths
    assert result.requests > 20
    assert abs(paths["/sleep50"] - paths["/cpu5"]) <= 4 + 1, paths  # the 4 still outstanding


@pytest.mark.external("wrk")
@pytest.mark.external("nginx")
def test_gunicorn_behind_nginx_is_measured_as_one_server_of_two_programs(tmp_path: Path) -> None:
    """The reference for the relaying scenarios: wrk reaches gunicorn through nginx, and the CPU
    of nginx's and gunicorn's processes is counted for it (its launcher spends none)."""
    require_program("wrk")
    require_program("nginx")
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--servers", "gunicorn-nginx",
         "--scenarios", "1mib", "--duration", "1", "--warmup", "0", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert report["failed_servers"] == []
    argv = report["meta"]["servers"]["gunicorn-nginx"]["argv"]
    assert argv[1].endswith("behind_nginx.py") and "--workers" not in argv
    (row,) = report["results"]
    assert row["requests"] > 0 and row["error_count"] == 0, row
    # The launcher (the tree's root) only waits: the CPU is nginx's and gunicorn's.
    assert row["cpu_us_per_request"] > 10 * row["cpu_us_per_request_root"], row
