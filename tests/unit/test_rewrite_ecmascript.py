"""The ECMAScript patterns of URL Rewrite rules, translated to Python `re`, against a real
ECMAScript engine (Node.js): the same captures for every pattern and input."""

from __future__ import annotations

import json
import random
import subprocess

from conftest import require_program
from corral.config.rewrite import compile_pattern

#: Patterns from stock rule sets (WordPress, Laravel, Drupal, Django/IIS guides) and the
#: constructs the translation rewrites (`.`, `$`, named groups, `\cX`, classes with `[`).
PATTERNS = [
    "^(.*)$",
    "^(.*)/$",
    ".*",
    "^",
    "^api/(.*)",
    "^(\\d{4})/(\\d{2})/([^/]+)/?$",
    "\\.(engine|inc|install|module|profile|po|sh|.*sql|theme|twig|tpl(\\.php)?|xtmpl|yml)"
    "(~|\\.sw[op]|\\.bak|\\.orig|\\.save)?$|^(\\..*|Entries.*|Repository|Root|Tag|Template|"
    "composer\\.(json|lock))$|^#.*#$|\\.php(~|\\.sw[op]|\\.bak|\\.orig|\\.save)$",
    "favicon\\.ico",
    "^(?<first>[a-z]+)/\\k<first>$",
    "a.b",
    "a$",
    "^$",
    "[[a]+",
    "[\\]a]+",
    "\\w+\\s\\d",
    "(a)|(b)",
    "(?:x|y)+z",
    "a(?=b)",
    "a(?!b)",
    "(?<=a)b",
    "(?<!a)b",
    "\\bword\\b",
    "\\cJ",
    "\\x41\\u0042",
    "[^/]+\\.(png|jpe?g|gif)$",
    "^static/(.*)",
    "(.)\\1",
    "a{2,3}",
    "a{,3}",
    "x*?y",
]

ALPHABET = "ab/.xyzAB019_-#~\n\r é[]wordWORD"


def inputs(rng: random.Random) -> list[str]:
    fixed = [
        "",
        "a",
        "2024/01/hello-world/",
        "2024/01/hello-world",
        "core/x.module",
        "composer.json",
        ".git",
        "#x#",
        "index.php~",
        "favicon.ico",
        "abc/abc",
        "a\nb",
        "xa\n",
        "[a[",
        "]a]",
        "w 1",
        "aab",
        "ab",
        "cb",
        "a word here",
        "\n",
        "AB",
        "api/users/1",
        "static/css/x.css",
        "img/photo.JPG",
        "aa",
        "a{,3}",
        "xxy",
    ]
    return fixed + ["".join(rng.choices(ALPHABET, k=rng.randint(0, 12))) for _ in range(60)]


NODE = r"""
const cases = JSON.parse(require("fs").readFileSync(0, "utf8"));
const out = cases.map(([pattern, flags, input]) => {
  const found = new RegExp(pattern, flags).exec(input);
  return found === null ? null : Array.from(found, (g) => (g === undefined ? "" : g));
});
process.stdout.write(JSON.stringify(out));
"""


def test_translated_patterns_capture_what_ecmascript_captures() -> None:
    node = require_program("node", "nodejs")
    rng = random.Random(15)
    cases: list[tuple[str, str, str]] = []
    for pattern in PATTERNS:
        for text in inputs(rng):
            cases.append((pattern, "", text))
            if text.isascii():
                cases.append((pattern, "i", text))
    result = subprocess.run(
        [node, "-e", NODE],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    expected = json.loads(result.stdout)
    mismatches = []
    for (pattern, flags, text), want in zip(cases, expected, strict=True):
        got = compile_pattern(pattern, "ECMAScript", flags == "i").captures(text)
        if (None if got is None else list(got)) != want:
            mismatches.append((pattern, flags, text, got, want))
    assert not mismatches, mismatches[:10]
