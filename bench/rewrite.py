"""What URL Rewrite rules cost the front per request, on the stock rule sets of the fixtures.

    .venv/bin/python bench/rewrite.py [--number 20000]

For each case: ``corral.rewrite.apply`` on the mount's rules (real ``stat`` calls for the
IsFile/IsDirectory conditions, on files in the page cache) followed by
``ConfigRouter.routed`` for the result: the work ``front/rewriting.py`` adds to a request of a
mount with rules. A mount without rules pays none of it (one attribute test in
``Exchange.start``; see tests/unit/front/microbench_front.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from corral import rewrite
from corral.app import ServeOptions, build_apps, load_config
from corral.config.rewrite import RewriteRule
from corral.front.routes import ConfigRouter, MountRules

SITES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "sites"
CASES = [
    ("WordPress, pretty URL", SITES / "rewrite-wordpress", "/2024/01/hello-world/", "p=1"),
    (
        "WordPress, static file",
        SITES / "rewrite-wordpress",
        "/wp-content/themes/twenty/style.css",
        "",
    ),
    ("Laravel, route", SITES / "rewrite-laravel" / "public", "/users/5", "tab=posts"),
    ("Laravel, trailing slash", SITES / "rewrite-laravel" / "public", "/users/5/", ""),
]


class Facts:
    def __init__(self, rules: MountRules) -> None:
        self.rules = rules

    def variable(self, name: str) -> str:
        return "localhost" if name == "HTTP_HOST" else ""

    def filename(self, path: str) -> str:
        return self.rules.root + path

    def is_file(self, filename: str) -> bool:
        return os.path.isfile(filename)

    def is_dir(self, filename: str) -> bool:
        return os.path.isdir(filename)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20000)
    args = parser.parse_args()
    for label, path, url, query in CASES:
        config = load_config(path)
        apps = build_apps(config, ServeOptions(path=path))
        routes = {(a.config.site, a.config.virtual_path, a.config.name): a.route for a in apps}
        router = ConfigRouter(config, routes, by_port=False)
        marker = router.match(b"localhost", url.encode(), 8080)
        assert marker is not None and marker.rewrite is not None
        rules = marker.rewrite
        facts = Facts(rules)
        scope = rules.rules_for(url)

        def once(
            scope: tuple[RewriteRule, ...] = scope,
            rules: MountRules = rules,
            facts: Facts = facts,
            url: str = url,
            query: str = query,
            router: ConfigRouter = router,
        ) -> None:
            decision = rewrite.apply(scope, rules.base, url, query, facts)
            if isinstance(decision, rewrite.Rewritten):
                router.routed(b"localhost", decision.path.encode(), 8080)

        seconds = timeit.timeit(once, number=args.number) / args.number
        decision = rewrite.apply(scope, rules.base, url, query, facts)
        print(f"{label:26} {seconds * 1e6:6.2f} us   ({type(decision).__name__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
