"""Every name samexp and MLflow agree on, written once: environment variables, run tags, the
server's defaults. A module outside samexp/tracking/ that needs one imports it from here, so a
renamed tag cannot leave a reader looking for the old one (tests/tracking/test_one_home.py)."""

from __future__ import annotations

# environment: a sweep's jobs nest under its parent run, in its store (set by the sweep callback)
PARENT_ENV = "SAMEXP_PARENT_RUN_ID"
URI_ENV = "SAMEXP_TRACKING_URI"
# environment: MLflow's client logs in to a server with these (samexp.server.client sets them)
USERNAME_ENV, PASSWORD_ENV = "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"
# environment of an `mlflow server` process: its basic-auth ini, the CSRF key of its sign-up page
AUTH_CONFIG_ENV, SERVER_SECRET_ENV = "MLFLOW_AUTH_CONFIG_PATH", "MLFLOW_FLASK_SERVER_SECRET_KEY"
# environment: MLflow's progress bars while it downloads artifacts (off while a report reads runs)
PROGRESS_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"

PORT = 5000  # MLflow's own default (`make ui` and the team server both: stop one to run the other)
REST_API = "api/2.0/mlflow"  # MLflow's REST prefix, under the server's address
EXPERIMENT = "samexp"  # tracking.experiment's default: where runs go, what `make ui` opens

# MLflow's own tags
PARENT = "mlflow.parentRunId"  # a nested run's parent: a sweep's trial under the sweep
GIT_COMMIT = "mlflow.source.git.commit"
# MLflow 3's UI opens an experiment of this kind on its training runs, not on GenAI traces
# (MLflow 3.17 decides by its sidebar switch instead: the link `make ui` prints sets it)
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")

# samexp's run tags: how a run ended, and whether its process still lives (tracking.states)
STATE, INTERRUPTED, ERROR = "samexp.state", "samexp.interrupted", "samexp.error"
RESUMPTIONS = "samexp.resumptions"
HOST, PID, HEARTBEAT = "samexp.host", "samexp.pid", "samexp.heartbeat"
# containers may share a host name but not their process ids: a pid is judged only in its own space
PID_SPACE = "samexp.pid_namespace"
# torchrun's --nproc_per_node (1 without torchrun): a stale run's resume command is launched as it was
PER_NODE = "samexp.nproc_per_node"
LEASE = "samexp.lease"  # the run tag of the tag lease (tracking.lease)
OVERRIDES = "overrides"  # the command line's overrides: a run's resume command is built from them
EVALUATES = "samexp.evaluates"  # an evaluation of saved weights: the run or file it evaluates
# a run's MLflow model (tracking.registry): the registered name:version, or why there is none
REGISTERED, MODEL_ERROR = "samexp.registered_model", "samexp.model_error"

# a sweep's parent run (tracking.sweep_parent): which sweep it is, and its best child
SWEEP_KEY = "samexp.sweep_key"
SWEEP_FOLDER = "sweep"  # its artifacts: the one trial table and the plots
BEST_RUN = "best_run_id"
# an Optuna sweep's parent: which study, where it is stored, how many trials count to n_trials
STUDY, STUDY_STORAGE, STUDY_TRIALS = "study.name", "study.storage", "study.n_trials"
# a sweep trial's run: its Optuna trial, study and the trial's final state
TRIAL_NUMBER, TRIAL_STATE = "optuna.trial_number", "optuna.state"
STUDY_NAME, TRIAL_RESUMED_FROM = "optuna.study_name", "optuna.resumed_from"
