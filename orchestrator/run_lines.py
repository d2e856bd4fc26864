"""Lines a study driver prints that the Jobs client (``orchestrator/cluster/jobs.py``) reads back from a job's
log: its queue state (``ResourceWatch``, the device probes) and its run id (``study_runner``)."""
from __future__ import annotations

import re

QUEUE_PREFIX = "Queue:"  # a study driver's output lines about its trials waiting for resources
RUN_LINE = re.compile(r"^Run (\S+): \d+ trials", re.M)  # the driver's first line about its run
