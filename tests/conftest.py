"""Shared fixtures: real services are required in CI and skipped (with a reason) elsewhere."""

from __future__ import annotations

import os
import signal

import pytest

# A suite started in the background by a shell without job control (`bash .ci/run &`) inherits
# SIGINT ignored, and an ignored signal stays ignored across exec: every mlpack process the
# tests start would shrug off the Ctrl-C they send it. Restore the default here, so children
# start with it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# .ci/run sets MLPACK_CI=1 after it has installed and started every service the tests use;
# there a missing service is a failure, never a silent skip.
IN_CI = os.environ.get("MLPACK_CI") == "1"


def require(condition: bool, what: str) -> None:
    """Skip locally, fail in CI, when a real dependency the test needs is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but missing; .ci/run should provide it")
    pytest.skip(f"{what} not available on this machine")
