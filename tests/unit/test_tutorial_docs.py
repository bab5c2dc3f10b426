"""docs/tutorial.md shows the template's files as they are: every block marked
``<!-- template: PATH -->`` equals ``src/corral/templates/files/PATH``."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FILES = ROOT / "src" / "corral" / "templates" / "files"
MARKED = re.compile(r"<!-- template: (?P<path>\S+) -->\n```\w*\n(?P<body>.*?)```\n", re.DOTALL)


def test_the_tutorial_shows_the_templates_files_as_they_are() -> None:
    text = (ROOT / "docs" / "tutorial.md").read_text(encoding="utf-8")
    blocks = list(MARKED.finditer(text))
    assert {m["path"] for m in blocks} >= {
        "django/web.config",
        "django/static/web.config",
        "django/corral.toml",
        "python/deploy.py",
    }
    for match in blocks:
        expected = (FILES / match["path"]).read_text(encoding="utf-8")
        assert match["body"] == expected, f"docs/tutorial.md: {match['path']} differs"


def test_the_readme_points_to_the_tutorial() -> None:
    assert "docs/tutorial.md" in (ROOT / "README.md").read_text(encoding="utf-8")
