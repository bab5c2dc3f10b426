"""The admin listener through a real `corral serve`: /healthz, /readyz (503 while draining),
/metrics (valid for `promtool check metrics`, live figures, the metrics token), the admin token
(from the environment, or made in the runtime folder with mode 0600), and the dashboard in
headless Chromium: the application listed, a figure changing under load without a reload, the
restart button restarting the workers, and screenshots at desktop and phone widths."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path

from tests.conftest import require_program
from tests.harness import WAIT, Conn, CorralServer, make_site, request, run_corral, serving

TOKEN = "dashboard-token-0123456789abcdef"
_ADMIN = re.compile(r"admin listener on http://127\.0\.0\.1:(\d+)")


def admin_port(server: CorralServer) -> int:
    match = _ADMIN.search(server.wait_log(r"admin listener on http://"))
    assert match, server.text()
    return int(match.group(1))


def _env(tmp_path: Path, **more: str) -> dict[str, str]:
    return {"XDG_RUNTIME_DIR": str(tmp_path / "run"), **more}


def test_health_readiness_and_metrics(tmp_path: Path) -> None:
    with serving(
        tmp_path, "--admin", "127.0.0.1:0", "--no-access-log", env=_env(tmp_path)
    ) as server:
        port = admin_port(server)
        health = request(port, path="/healthz")
        assert (health.status, health.body) == (200, b"ok\n")
        ready = request(port, path="/readyz")
        assert (ready.status, ready.body) == (200, b"ready\n")
        for _ in range(5):
            assert request(server.port, path="/hello").status == 200
        assert request(server.port, path="/status").status == 204  # 2xx too
        scrape = request(port, path="/metrics")
        assert scrape.status == 200
        text = scrape.body.decode()
        assert 'corral_app_requests_total{app="default",code="2xx",site="default"} 7.0' in text
        assert 'corral_app_workers{app="default",site="default",state="idle"} 1.0' in text
        assert re.search(
            r'corral_worker_rss_bytes\{app="default",pid="\d+",site="default",worker="1"\}', text
        ) or ("corral_worker_rss_bytes" in text)
        assert "corral_front_connections_total" in text and "process_cpu_seconds_total" in text
        promtool = require_program("promtool")
        checked = subprocess.run(
            [promtool, "check", "metrics"],
            input=scrape.body,
            capture_output=True,
            timeout=WAIT,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        # The token made in the runtime folder: 0600, its path logged.
        line = server.wait_log(r"admin token: in ")
        path = Path(line.split("admin token: in ", 1)[1].split(" (", 1)[0])
        assert path.parent == tmp_path / "run" / "corral"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        token = path.read_text().strip()
        denied = request(port, path="/api/status")
        assert denied.status == 401
        allowed = request(port, path="/api/status", headers=f"Authorization: Bearer {token}\r\n")
        assert allowed.status == 200 and b'"id": "default"' in allowed.body


def test_readyz_is_503_while_draining(tmp_path: Path) -> None:
    gate = tmp_path / "open"
    with serving(
        tmp_path,
        "--admin",
        "0",
        "--no-access-log",
        "--set",
        "shutdown_grace=20",
        "--set",
        "drain_delay=0",
        env=_env(tmp_path, CORRAL_ADMIN_TOKEN=TOKEN),
    ) as server:
        port = admin_port(server)
        assert request(port, path="/readyz").status == 200
        held: list[int] = []
        client = threading.Thread(
            target=lambda: held.append(request(server.port, path=f"/gate?{gate}").status)
        )
        client.start()
        time.sleep(0.5)  # the request holds the worker
        server.signal(signal.SIGTERM)
        server.wait_log("stopping: finishing requests in flight")
        draining = request(port, path="/readyz")
        assert draining.status == 503
        assert draining.body == b"not ready\ncorral is stopping\n"
        assert request(port, path="/healthz").status == 200  # alive all the same
        gate.write_text("")
        client.join(WAIT)
        assert held == [200]
        assert server.wait() == 0


def test_metrics_token_from_the_server_toml(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    (site / "corral.toml").write_text(
        '[server]\nadmin = "127.0.0.1:0"\nmetrics_token = "scrape-me"\n\n'
        '[apps.app]\nengine = "python"\nwsgi_app = "wsgi:application"\n'
    )
    server = CorralServer(site, args=("--no-access-log",), env=_env(tmp_path))
    try:
        server.start()
        port = admin_port(server)
        assert request(port, path="/metrics").status == 401
        scrape = request(port, path="/metrics", headers="Authorization: Bearer scrape-me\r\n")
        assert scrape.status == 200 and b"corral_app_requests_total" in scrape.body
        assert request(port, path="/healthz").status == 200
        # A reload applies a new metrics token at once, and never logs either token.
        (site / "corral.toml").write_text(
            (site / "corral.toml").read_text().replace("scrape-me", "scrape-me-too")
        )
        server.wait_log("configuration reloaded")
        fresh = request(port, path="/metrics", headers="Authorization: Bearer scrape-me-too\r\n")
        assert fresh.status == 200
        old = request(port, path="/metrics", headers="Authorization: Bearer scrape-me\r\n")
        assert old.status == 401
        assert "metrics_token (set, not shown) -> (set, not shown)" in server.text()
        assert "scrape-me" not in server.text()
    finally:
        server.stop()


def test_dashboard_in_chromium(tmp_path: Path) -> None:
    from tests.cdp import Browser

    with serving(
        tmp_path,
        "--admin",
        "127.0.0.1:0",
        "--min",
        "2",
        "--max",
        "3",
        "--no-access-log",
        env=_env(tmp_path, CORRAL_ADMIN_TOKEN=TOKEN),
    ) as server:
        port = admin_port(server)
        before = sorted(p.pid for p in server.workers())
        with Browser(f"http://127.0.0.1:{port}/?token={TOKEN}") as page:
            page.wait_for("document.querySelector('section.app[data-app=\"default\"]') !== null")
            assert page.evaluate("location.search") == ""  # the token left the address bar
            assert page.evaluate("document.cookie") == ""  # HttpOnly
            page.wait_for(
                "document.querySelectorAll('section.app[data-app=\"default\"] tbody tr[data-pid]')"
                ".length == 2"
            )
            total = (
                'document.querySelector(\'[data-app="default"] [data-field="total"]\').textContent'
            )
            start = int(str(page.evaluate(total)))
            for _ in range(25):
                assert request(server.port, path="/hello").status == 200
            page.wait_for(f"Number({total}) >= {start + 25}")
            shown = page.evaluate(
                "[...document.querySelectorAll('[data-app=\"default\"] tbody tr[data-pid]')]"
                ".map(r => Number(r.dataset.pid)).sort((a, b) => a - b)"
            )
            assert shown == before
            page.evaluate(
                'document.querySelector(\'[data-app="default"] button[data-action="restart"]\')'
                ".click()"
            )
            page.wait_for(
                'document.querySelector(\'[data-app="default"] [data-role="message"]\').textContent'
                " == 'default: restarted'"
            )
            after = sorted(p.pid for p in server.workers())
            assert len(after) == 2 and not set(after) & set(before)
            page.wait_for(
                "[...document.querySelectorAll('[data-app=\"default\"] tbody tr[data-pid]')]"
                f".every(r => {after}.includes(Number(r.dataset.pid)))"
            )
            assert request(server.port, path="/hello").status == 200
            # The worker bounds: 1 to 1 from the page, until the next reload.
            page.evaluate(
                "(() => { const s = document.querySelector('[data-app=\"default\"]');"
                " for (const [k, v] of [['min', 1], ['max', 1]]) {"
                '  const i = s.querySelector(`[data-input="${k}"]`); i.value = v;'
                "  i.dispatchEvent(new Event('input')); }"
                " s.querySelector('button[data-action=\"scale\"]').click(); })()"
            )
            page.wait_for(
                'document.querySelector(\'[data-app="default"] [data-role="message"]\')'
                ".textContent == 'default: workers 1 to 1 (until the next reload)'"
            )
            deadline = time.monotonic() + WAIT
            while len(server.workers()) != 1 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert len(server.workers()) == 1
            page.wait_for(
                'document.querySelector(\'[data-app="default"] [data-field="workers"]\')'
                ".textContent == '1 / 1\u20131'"
            )
            for _ in range(6):  # a few seconds of history for the charts
                for _ in range(10):
                    request(server.port, path="/hello")
                time.sleep(1)
            page.wait_for("document.querySelector('.chart polyline.line') !== null")
            wide = page.screenshot(tmp_path / "dashboard.png", width=1280, height=900)
            phone = page.screenshot(
                tmp_path / "dashboard-phone.png", width=390, height=844, mobile=True
            )
            overflow = page.evaluate(
                "document.documentElement.scrollWidth <= window.innerWidth + 1"
            )
            assert overflow, "the page is wider than a phone's screen"
        for shot in (wide, phone):
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        keep = os.environ.get("CORRAL_KEEP_SCREENSHOTS")
        if keep:  # how docs/dashboard.png is made
            for shot in (wide, phone):
                shutil.copy(shot, Path(keep) / shot.name)


def test_a_bad_or_busy_admin_address_is_one_line_and_exit_2(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    bad = run_corral("serve", str(site), "--listen", "127.0.0.1:0", "--admin", "here:there")
    assert bad.returncode == 2
    assert "--admin: not HOST:PORT or PORT: 'here:there'" in bad.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = run_corral(
            "serve",
            str(site),
            "--listen",
            "127.0.0.1:0",
            "--admin",
            f"127.0.0.1:{port}",
            env=_env(tmp_path, CORRAL_ADMIN_TOKEN=TOKEN),
        )
    assert busy.returncode == 2, busy.stderr
    assert f"corral: admin listener: cannot listen on 127.0.0.1:{port}" in busy.stderr


def test_a_stop_drains_first_serving_with_connection_close_while_readyz_says_no(
    tmp_path: Path,
) -> None:
    with serving(
        tmp_path,
        "--admin",
        "0",
        "--no-access-log",
        "--set",
        "drain_delay=3",
        env=_env(tmp_path, CORRAL_ADMIN_TOKEN=TOKEN),
    ) as server:
        port = admin_port(server)
        with Conn(server.port) as kept:
            kept.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            first = kept.response()
            assert first.status == 200 and first.header("connection") != "close"
            server.signal(signal.SIGTERM)
            server.wait_log(r"draining: not ready; serving for 3 s more")
            assert request(port, path="/readyz").status == 503
            # Still served, on the kept-alive connection and on a new one, each told to close.
            kept.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            again = kept.response()
            assert again.status == 200 and again.header("connection") == "close"
        fresh = request(server.port, path="/hello")
        assert fresh.status == 200 and fresh.header("connection") == "close"
        assert "stopping: finishing requests" not in server.text()  # not yet: still draining
        server.wait_log("stopping: finishing requests in flight")
        assert server.wait() == 0


def test_sigint_or_a_second_sigterm_skips_the_drain(tmp_path: Path) -> None:
    for second in (None, signal.SIGTERM):
        with serving(
            tmp_path,
            "--admin",
            "0",
            "--no-access-log",
            "--set",
            "drain_delay=60",
            env=_env(tmp_path, CORRAL_ADMIN_TOKEN=TOKEN),
        ) as server:
            admin_port(server)
            began = time.monotonic()
            if second is None:
                server.signal(signal.SIGINT)
            else:
                server.signal(signal.SIGTERM)
                server.wait_log(r"draining: not ready")
                server.signal(second)
            assert server.wait() == 0
            assert time.monotonic() - began < 20
