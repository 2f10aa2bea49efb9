"""Imported by the ``forkserver`` process only (its preload list), never by anything else.

It sets SIGINT to ignored in the forkserver before the forkserver records its signal
handlers, so every worker it forks starts with Ctrl-C ignored: a Ctrl-C sent to the
process group between a worker's fork and :func:`attnzoo.leaderboard.executors._init_worker`
would otherwise end that worker with a traceback. The driver decides what Ctrl-C means.
The driver already starts the forkserver with SIGINT ignored (executors._start_forkserver_deaf);
this keeps the workers deaf where something else started it.
"""

import signal

signal.signal(signal.SIGINT, signal.SIG_IGN)
