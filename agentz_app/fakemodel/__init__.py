"""Fake model server so the real agent CLIs run offline (tests and ``agentz demo``).

Start it with :class:`FakeModelServer` (``async with FakeModelServer(scenario) as server``)
or ``python -m agentz_app.fakemodel --port P --scenario file.json``; point the runners
at it by setting ``AGENTZ_MODEL_BASE_URL`` to ``server.base_url`` in the agent
environment. Build scenarios with :func:`issue_scenario`.
"""

from agentz_app.fakemodel.scenario import FileWrite, Scenario, ScenarioStep, issue_scenario
from agentz_app.fakemodel.server import FakeModelServer, RecordedRequest, create_app

__all__ = [
    "FakeModelServer",
    "FileWrite",
    "RecordedRequest",
    "Scenario",
    "ScenarioStep",
    "create_app",
    "issue_scenario",
]
