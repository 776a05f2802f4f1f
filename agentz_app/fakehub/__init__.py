"""In-package fake GitHub for tests and the demo.

``FakeHub`` serves the REST subset Agent-Z calls over real HTTP, keeps real bare git
repositories, runs simulated CI on pushes and sends signed webhooks, with optional faults.

Layers, each importing only those before it: :mod:`.core` (state, the App, webhook emission,
faults, counters); :mod:`.resources` (one class per GitHub resource owning its records and
GitHub's refusal rules: ``hub.apps``, ``hub.repos``, ``hub.issues``, ``hub.comments``,
``hub.reactions``, ``hub.pulls``, ``hub.reviews``, ``hub.checks``, ``hub.statuses``,
``hub.pushes``, ``hub.actions``); :mod:`.model` (composes them); :mod:`.routes` and
:mod:`.server` (HTTP); :mod:`.hub` (``FakeHub``: the model served, with start and stop).
"""

from agentz_app.fakehub.errors import ApiError
from agentz_app.fakehub.faults import FaultConfig
from agentz_app.fakehub.hub import FakeHub
from agentz_app.fakehub.webhooks import sign

__all__ = ["ApiError", "FakeHub", "FaultConfig", "sign"]
