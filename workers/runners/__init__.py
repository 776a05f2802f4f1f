"""Agent backends behind one runner contract.

``get_runner(settings.backend_for(role), settings).run(role, prompt, workdir, ...)``
returns a :class:`RunnerResult`; ``run_log(settings, run_id, role)`` gives a log sink.
"""

from agentz_app.domain.runner import LogSink, Runner, RunnerResult
from workers.runners.logfile import run_log, run_log_path
from workers.runners.output import extract_json
from workers.runners.registry import agent_env, get_runner

__all__ = ["LogSink", "Runner", "RunnerResult", "agent_env", "extract_json", "get_runner", "run_log", "run_log_path"]
