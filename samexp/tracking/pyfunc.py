"""A fine-tuned model as an MLflow model: a pyfunc whose artifact is the ONNX export folder, so
loading or serving it needs onnxruntime and samexp, never a PyTorch model build.

Why a handler factory given to the constructor, rather than MLflow's models-from-code: the
request handling (image decoding, prompt checks, the ONNX predictor) lives in `samexp.predict`,
a layer above this one. The command that logs the model (`samexp.export`, the runner) passes
`samexp.predict.serving.onnx_handler`; cloudpickle stores this class and that module-level
function by reference (module and name), so the logged model holds no copy of samexp's code and
loads the installed samexp's, and no module here imports a higher layer. Models-from-code would
instead log a code file, a second copy of the entry point to keep in step.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel
from mlflow.types.schema import AnyType, Array, ColSpec, Schema

from samexp.config.errors import SamexpError
from samexp.tracking.store import client

log = logging.getLogger(__name__)

ARTIFACT = "model"  # the model's name under its run (MLflow 3: `name=`)
ONNX = "onnx"  # the key of the export folder in the model's artifacts

Handler = Callable[[Sequence[dict[str, Any]]], list[dict[str, Any]]]
HandlerFactory = Callable[[str], Handler]


class SamexpModel(PythonModel):
    """Rows of image + prompts in, one answer per row out (`samexp.predict.serving`)."""

    def __init__(self, handler_factory: HandlerFactory) -> None:
        self.handler_factory = handler_factory
        self.handler: Handler | None = None

    def load_context(self, context) -> None:  # noqa: ANN001 - MLflow's PythonModelContext
        self.handler = self.handler_factory(context.artifacts[ONNX])

    def predict(self, context, model_input, params=None) -> pd.DataFrame:  # noqa: ANN001
        """`model_input`: a DataFrame (what the server builds from `dataframe_records`) or a list
        of row dicts."""
        if self.handler is None:  # predict without load_context: an instance used directly
            self.load_context(context)
        rows = model_input.to_dict("records") if isinstance(model_input, pd.DataFrame) else list(model_input)  # fmt: skip
        return pd.DataFrame(self.handler(rows))


def log_model(
    run_id: str,
    onnx_folder: str | Path,
    handler_factory: HandlerFactory,
    example: list[dict[str, Any]],
    refused: dict[str, Any],
    tracking_uri: str,
    requirements: list[str],
) -> str:
    """Log the export in `onnx_folder` as run `run_id`'s MLflow model `model`, with `example`
    (rows) as its input example and the signature inferred from it, and from a `refused` row, so
    the optional columns and the answer's `error` text are typed too. Returns the model's URI."""
    client(tracking_uri)  # a team server's login, when the environment has none
    mlflow.set_tracking_uri(tracking_uri)
    rows = [*example, refused]
    answers = handler_factory(str(onnx_folder))(rows)
    if answers[-1]["error"] is None or any(a["error"] for a in answers[:-1]):
        raise SamexpError(f"the model's own example is not answered as expected: {answers}")
    with warnings.catch_warnings():  # MLflow's hints about type-hinted predict and int columns
        warnings.simplefilter("ignore", UserWarning)
        signature = mlflow.models.infer_signature(pd.DataFrame(rows), pd.DataFrame(answers))
        signature.inputs = Schema([_loose(c) for c in signature.inputs.inputs])
        with _on_run(run_id):
            info = mlflow.pyfunc.log_model(
                name=ARTIFACT,
                python_model=SamexpModel(handler_factory),
                artifacts={ONNX: str(onnx_folder)},
                signature=signature,
                input_example=pd.DataFrame(example),
                pip_requirements=requirements,
            )
    log.info("logged the MLflow model %s (run %s)", info.model_uri, run_id)
    return info.model_uri


def _loose(column: ColSpec) -> ColSpec:
    """An array column as Any: MLflow refuses `[40, 40, 200, 200]` for an Array(double) column
    (int64 -> float64 is no "safe" conversion to it), yet JSON clients write whole pixels that
    way; the handler checks boxes, points and labels as the command line's are checked."""
    if isinstance(column.type, Array):
        return ColSpec(AnyType(), column.name, required=column.required)
    return column


@contextlib.contextmanager
def _on_run(run_id: str) -> Iterator[None]:
    """The run `run_id` open in this process for the block, whatever its status (a finished run
    gets its model afterwards; MLflow reopens it and restores the status it had)."""
    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:  # the run logging its own model
        yield
        return
    status = mlflow.MlflowClient().get_run(run_id).info.status
    if status == "RUNNING":  # another process's open run: not ours to end
        raise SamexpError(f"run {run_id} is still RUNNING: log its model when it has finished "
                          "(or with tracking.log_model=true in the run)")  # fmt: skip
    mlflow.start_run(run_id=run_id)
    try:
        yield
    finally:
        mlflow.end_run(status)
