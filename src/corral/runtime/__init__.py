"""Zoo's per-application behaviours around the pool, and the host's configuration reload.

- ``controller``: ``AppController``, one application's deploy gate, file watcher and error log;
- ``policy``: pure, what requests and file changes do in each phase of an application;
- ``deploy``: running DEPLOY_FILE (output to DEPLOY_LOG, the triggering browser, the log);
- ``gate``: what the front gets while the deploy script holds an application back;
- ``watch``: which file changes matter (pure rules) and the watchfiles-based watcher;
- ``errorlog``: ERROR_LOG_DIR files, size-rotated, written off the event loop;
- ``reload``: pure, what a new configuration changes, and which files to watch for one.
"""
