"""The ``orchestrator`` command: a thin layer over the library (``orchestrator.Study``, ``Search``, ``runs``,
``cluster.jobs``). Every error maps to its exit code in ``main`` (``orchestrator.errors.exit_code``):
0 success, 1 some trials failed or the store could not be written, 2 bad input (one line; nothing started),
130 interrupted.
"""
from __future__ import annotations

import os
import signal
import threading

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter, if a trial loads it here


def build_parser():
    from orchestrator.cli import jobs_commands, search_commands, study_commands
    from orchestrator.cli.arguments import OneLineParser

    from orchestrator import __version__

    parser = OneLineParser(prog="orchestrator", description="Hardware and architecture studies for "
                                     "skin-lesion classification on a Ray cluster.")
    parser.add_argument("--version", action="version", version=f"orchestrator {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    study_commands.add_commands(sub)
    search_commands.add_commands(sub)
    jobs_commands.add_commands(sub)
    return parser


def _terminate(signum, frame) -> None:
    """SIGTERM ends a command like Ctrl-C: cleanup runs (the embedded Ray is shut down) and the exit code is 130."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    from orchestrator.cli.output import error_line
    from orchestrator.errors import Interrupted, OrchestratorError, exit_code
    from workers.storage import StorageError

    args = build_parser().parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None  # end like Ctrl-C
    try:
        return args.func(args)
    except (OrchestratorError, StorageError) as err:
        error_line(str(err))
        return exit_code(err)
    except KeyboardInterrupt:
        error_line("interrupted; finished trials are stored; continue with 'orchestrator resume RUN'")
        return exit_code(Interrupted())
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
