"""`python -m samexp`, except that rank FAIL_RANK fails as training starts, alone: the way a
corrupt file in its shard or an out-of-memory on its GPU would. FAIL_WITH picks a samexp error
(one line) or a bug (a traceback). Launched by torchrun from tests/config/test_distributed.py."""

import os
import runpy

import samexp.runner
from samexp.config.errors import SamexpError


def fit(*args, **kwargs):
    if os.environ["RANK"] == os.environ["FAIL_RANK"]:
        kind = SamexpError if os.environ["FAIL_WITH"] == "samexp" else RuntimeError
        raise kind("this rank's shard holds a broken image")
    return real_fit(*args, **kwargs)


real_fit, samexp.runner.fit = samexp.runner.fit, fit

if __name__ == "__main__":
    runpy.run_module("samexp", run_name="__main__", alter_sys=True)  # as `python -m samexp`
