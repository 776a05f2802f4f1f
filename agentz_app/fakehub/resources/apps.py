"""The App itself: its key, permissions and events, installation tokens and manifest conversion."""

from __future__ import annotations

import re
import secrets
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from agentz_app.fakehub import grants, render
from agentz_app.fakehub.core import HubCore
from agentz_app.fakehub.errors import ApiError
from agentz_app.fakehub.render import AppInfo
from agentz_app.fakehub.state import Record, iso


class Apps:
    """The App's identity and grants, and the installation tokens it mints."""

    def __init__(self, core: HubCore, *, private_key_pem: str | None = None) -> None:
        self.core = core
        self.public_key_pem: bytes | None = None
        """The App's public key; when set, App JWTs must be signed with the matching private key."""
        if private_key_pem:
            key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
            self.public_key_pem = key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def grant(self, manifest: Record) -> None:
        """Give the App the permissions and event subscriptions of an App manifest (422 if GitHub refuses it)."""
        permissions = manifest.get("default_permissions") or {}
        events = manifest.get("default_events") or []
        if not isinstance(permissions, dict) or not isinstance(events, list):
            raise ApiError(422, "Invalid GitHub App configuration")
        unsupported = grants.unsupported_events(permissions, [str(e) for e in events])
        if unsupported:
            raise ApiError(422, "Validation Failed",
                           errors=["Default events are not supported by permissions: " + ", ".join(unsupported)])
        app = self.core.app
        app.permissions = {str(k): str(v) for k, v in permissions.items()}
        app.permissions.setdefault("metadata", "read")
        app.events = [str(e) for e in events]

    def subscribe(self, *events: str) -> None:
        """Subscribe the App to more events (a test's App settings change)."""
        app = self.core.app
        app.events = list(dict.fromkeys([*app.events, *events]))

    def issue_token(self, installation_id: int) -> Record:
        """Create an installation access token."""
        state = self.core.state
        state.installation(installation_id)
        token = "ghs_" + secrets.token_urlsafe(27)
        expires = time.time() + 3600
        state.data["tokens"][token] = {"installation_id": installation_id, "expires_at": expires}
        self.core.changed()
        return {"token": token, "expires_at": iso(expires), "permissions": render.app(self.core.ctx)["permissions"],
                "repository_selection": "all"}

    def token_installation(self, token: str) -> int | None:
        """The installation a live token belongs to, or None."""
        rec = self.core.state.data["tokens"].get(token)
        if rec is None or rec["expires_at"] < time.time():
            return None
        return int(rec["installation_id"])

    def create_manifest_code(self, manifest: Record) -> str:
        """Register an App manifest and return the one-time code GitHub would redirect with."""
        code = secrets.token_hex(10)
        self.core.state.data["manifest_codes"][code] = {"manifest": manifest}
        self.core.changed()
        return code

    def convert_manifest(self, code: str) -> Record:
        """Exchange a manifest code for the new App's credentials; the fake adopts that App."""
        core = self.core
        entry = core.state.data["manifest_codes"].pop(code, None)
        if entry is None:
            raise ApiError(404, "Not Found")
        manifest = entry["manifest"]
        self.grant(manifest)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode()
        name = str(manifest.get("name") or "agent-z")
        slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "agent-z"
        webhook_secret = secrets.token_hex(20)
        core.app = AppInfo(id=core.state.new_id(), slug=slug, name=name, permissions=core.app.permissions,
                           events=core.app.events)
        self.public_key_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        core.emitter.app_id = core.app.id
        hook = manifest.get("hook_attributes") or {}
        core.set_webhook(url=hook.get("url") or None, secret=webhook_secret)
        core.changed()
        out = render.app(core.ctx)
        out.update({"pem": pem, "webhook_secret": webhook_secret, "client_id": f"Iv1.{secrets.token_hex(8)}",
                    "client_secret": secrets.token_hex(20)})
        return out
