"""`python tests/launched/entry.py ARGS...` is `python -m pipelines ARGS...`, for tests that start it under a
launcher, with a fault or a rule switched on by an environment variable:

    TEST_SCORE_IS_RANK=1   the judge gives every response its process' rank as score (0.0 on rank 0, 1.0 on rank 1),
                           so a logged score of 0.5 shows the mean over both ranks
    TEST_FAIL_RANK=K       process K raises at its second logged step
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipelines.runtime import distributed, tracking
from pipelines.stages.ppo import train as ppo  # noqa: E402
from pipelines.cli import main  # noqa: E402

if os.environ.get("TEST_SCORE_IS_RANK"):
    ppo.SharedRoles.judge_scores = lambda self, sequences, pad_id: [float(distributed.rank())] * len(sequences)

if os.environ.get("TEST_FAIL_RANK"):
    failing_rank = int(os.environ["TEST_FAIL_RANK"])
    real_log = tracking.Tracker.log

    def log_then_fail(self, step, metrics):
        real_log(self, step, metrics)
        if distributed.rank() == failing_rank and step >= 2:
            raise RuntimeError(f"injected failure on rank {failing_rank} at step {step}")

    tracking.Tracker.log = log_then_fail

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
