"""A team's tracking pair on one machine, started and stopped by one command: PostgreSQL (MLflow's
runs and Optuna's studies) and an MLflow server in front of it, both on 127.0.0.1.

`python -m samexp.server start|stop|status` (`make server`); sweep workers then point at it with
`tracking.tracking_uri=http://127.0.0.1:5000 hydra.sweeper.storage=postgresql+psycopg://...`.
"""

from samexp.server.control import Server, start, status, stop

__all__ = ["Server", "start", "status", "stop"]
