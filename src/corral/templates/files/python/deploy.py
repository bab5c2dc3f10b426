"""This site's deploy script (DEPLOY_FILE in web.config / deploy_file in corral.toml).

Corral runs it before the application's first request, and again whenever this file changes
or after it has failed and a file of the site changes. Meanwhile every request gets the
"deployment in progress" page, which shows what this script prints. The workers start once it
succeeds; a failure (a non-zero exit) is shown instead, and the next change retries it.

It runs with the application's environment, in the site's folder, under the engine's Python
while the virtualenv does not exist yet, then under the virtualenv's. It makes the virtualenv
named by VIRTUAL_ENV (``venv`` in this folder), installs requirements.txt into it, and for a
Django project (a manage.py here) applies the migrations and collects the static files. Add the
steps your application needs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = Path(os.environ.get("VIRTUAL_ENV") or HERE / "venv")
PYTHON = VENV / "bin" / "python"


def run(*argv: str) -> None:
    print("$", " ".join(argv), flush=True)
    subprocess.run(argv, cwd=HERE, check=True)


def main() -> int:
    if not PYTHON.exists():
        print(f"Making the virtualenv {VENV} ({sys.version.split()[0]})", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    run(str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "-r", "requirements.txt")
    if (HERE / "manage.py").exists():
        run(str(PYTHON), "manage.py", "migrate", "--noinput")
        run(str(PYTHON), "manage.py", "collectstatic", "--noinput")
    print("Deployed.", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as error:
        print(f"Failed: {' '.join(error.cmd)} exited with {error.returncode}", flush=True)
        sys.exit(1)
