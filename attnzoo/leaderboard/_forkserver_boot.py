"""Imported by the ``forkserver`` process only (its preload list), never by anything else.

It sets SIGINT to ignored in the forkserver before the forkserver records its signal
handlers, so every worker it forks starts with Ctrl-C ignored: a Ctrl-C sent to the
process group between a worker's fork and :func:`attnzoo.leaderboard.executors._init_worker`
would otherwise end that worker with a traceback. The driver decides what Ctrl-C means.
The driver starts the forkserver with SIGINT and SIGTERM blocked (executors._start_forkserver_deaf),
so a Ctrl-C during its imports waits: ignoring SIGINT here drops it, and the mask goes back to normal
so the workers' SIGTERM and Lightning's handler of it work as anywhere.
"""

import signal

signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
