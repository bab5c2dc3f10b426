"""Zoo's per-application behaviours around the pool: deploy scripts (``deploy``), file-change
restarts (``watch``), error logs (``errorlog``), and configuration reloads (``reload``)."""
