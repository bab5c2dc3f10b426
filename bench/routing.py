"""What routing costs the front per request: ``ConfigRouter.match`` on the fixture sites.

    .venv/bin/python bench/routing.py [--number 50000]

For each case: the first answer (the routing walk of ``corral.routing.Router``: Host, port,
virtual path, handlers; measured on a router whose cache is emptied before every call) and the
repeated answer (the bounded (Host, path, port) cache, or the one-route shortcut of a site
folder whose application takes every URL). File-handler scripts (``*.php``) are never cached.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from corral.app import ServeOptions, build_apps, load_config
from corral.front.routes import ConfigRouter

SITES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "sites"
CASES = [
    ("two sites, /blog app", SITES / "multi" / "server.toml", b"www.main.test", b"/blog/2024/x"),
    ("site folder, one app", SITES / "seed-wsgi", b"localhost", b"/anything"),
    ("PHP script", SITES / "php-site", b"localhost", b"/index.php"),
    ("PHP site, static file", SITES / "php-site", b"localhost", b"/css/site.css"),
]


def measure(router: ConfigRouter, host: bytes, target: bytes, number: int) -> tuple[float, float]:
    """Seconds per call: the routing walk (cache emptied first), then a repeated answer."""
    cache = router._cache

    def walk() -> None:
        cache.clear()
        router.match(host, target, 8080)

    walk_time = timeit.timeit(walk, number=number) - timeit.timeit(cache.clear, number=number)
    repeat_time = timeit.timeit(lambda: router.match(host, target, 8080), number=number)
    # (Clearing the cache is subtracted: for the one-route shortcut what is left is noise.)
    return max(walk_time, 0.0) / number, repeat_time / number


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=50000)
    args = parser.parse_args()
    for label, path, host, target in CASES:
        config = load_config(path)
        apps = build_apps(config, ServeOptions(path=path))
        routes = {(a.config.site, a.config.virtual_path, a.config.name): a.route for a in apps}
        router = ConfigRouter(config, routes, by_port=False)
        walk_time, repeat_time = measure(router, host, target, args.number)
        print(f"{label:24} first {walk_time * 1e6:6.2f} us   repeated {repeat_time * 1e6:6.2f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
