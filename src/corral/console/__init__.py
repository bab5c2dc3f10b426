"""The web console (``CONSOLE_URL``): a terminal in the browser, running a shell with an
application's environment (its interpreter and virtualenv first on PATH, its variables, its
folder), for ``pip install``, ``manage.py migrate`` and the like. See docs/console.md.

- ``build``: an application's console route, from its configuration and its workers' launch plan;
- ``endpoint``: who may open it (the admin token, the switchboard, same origin) and what each URL
  answers (in-process, as the front's ``InProcess``);
- ``page``: the page and its files (``assets/``: xterm.js, package data);
- ``terminal``: the WebSocket, at the other end of the front's tunnel;
- ``session``: the PTY, the shell's processes, idle timeout and kill;
- ``shell``: which shell, with which environment and start-up script (pure).
"""
