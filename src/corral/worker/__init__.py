"""Corral's Python worker: a FastCGI responder serving one WSGI application (PEP 3333).

Runs inside the application's own interpreter (``python -m corral.worker``), which may be a
virtualenv without Corral's dependencies: it imports only the stdlib, ``corral.protocol.fastcgi``
and ``corral.errors``. Importing this package imports nothing.

- ``__main__``: the command line (``--bind``, ``--threads``, ``--app``, ``--liveness-fd``,
  ``--stderr-to-front``), exit codes from ``corral.errors.ExitCode``.
- ``loader``: which application to serve and how to import it (never ``eval``).
- ``wsgi``: the PEP 3333 machinery, transport-free (environ, wsgi.input, start_response...).
- ``server``: sockets, threads, the FastCGI event loop per connection, graceful stop, liveness.
- ``info``: the service-information page (also importable by applications).
"""
