"""In-package fake GitHub for tests and the demo.

``FakeHub`` serves the REST subset Agent-Z calls over real HTTP, keeps real bare git
repositories, runs simulated CI on pushes and sends signed webhooks, with optional faults.
"""

from agentz_app.fakehub.errors import ApiError
from agentz_app.fakehub.faults import FaultConfig
from agentz_app.fakehub.hub import FakeHub
from agentz_app.fakehub.webhooks import sign

__all__ = ["ApiError", "FakeHub", "FaultConfig", "sign"]
