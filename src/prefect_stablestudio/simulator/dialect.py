"""How @agentcash/router words its answers, as pure builders (no I/O).

StableStudio runs on that framework; the shapes below are the ones measured against its 1.20.0 release
(docs/architecture.md, section 1; tests/conformance/ checks them against the framework itself): refusals with
the machine code in ``reason`` and prose in ``error``, zod-style validation errors, the optional DID-auth
challenge of every 402, the route-not-found envelope and the bazaar extension of a quote.

Example:
    >>> payment_rejected("requirements_mismatch", "no match")["reason"]
    'requirements_mismatch'
    >>> validation_failed([{"path": ["resolution"], "message": "bad"}])["issues"][0]["code"]
    'custom'
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

from prefect_stablestudio.simulator.encoding import iso

__all__ = [
    "AGENT_IDENTITY_TTL_SECONDS",
    "INVALID_JSON",
    "agent_identity",
    "bazaar_extension",
    "payment_rejected",
    "route_not_found",
    "validation_failed",
]

AGENT_IDENTITY_TTL_SECONDS = 30
INVALID_JSON: dict[str, Any] = {"success": False, "error": "Invalid JSON", "issues": []}


def payment_rejected(reason: str, message: str) -> dict[str, Any]:
    """The body of a refused payment: the code in ``reason``, the prose (which repeats it) in ``error``.

    Example:
        >>> payment_rejected("invalid_exact_evm_nonce_already_used", "used")["error"]
        'Payment rejected (invalid_exact_evm_nonce_already_used): used'
    """
    return {"error": f"Payment rejected ({reason}): {message}", "reason": reason}


def validation_failed(issues: list[dict[str, Any]]) -> dict[str, Any]:
    """The 400 body for a body that fails the route's schema: zod issues ``{code, path, message}``."""
    return {
        "success": False,
        "error": "Validation failed",
        "issues": [
            {"code": issue.get("code", "custom"), "path": issue["path"], "message": issue["message"]}
            for issue in issues
        ],
    }


def agent_identity(domain: str, route: str, now: float) -> str:
    """The ``X-Agent-Identity`` header of a 402: base64url JSON of a DID-auth challenge (optional to answer).

    Example:
        >>> import base64, json
        >>> header = agent_identity("127.0.0.1", "/api/upload", 0.0)
        >>> json.loads(base64.urlsafe_b64decode(header + "=="))["challenge"]["route"]
        '/api/upload'
    """
    challenge = {
        "domain": domain,
        "route": route,
        "nonce": secrets.token_hex(32),
        "issuedAt": iso(now),
        "expirationTime": iso(now + AGENT_IDENTITY_TTL_SECONDS),
    }
    raw = json.dumps({"v": 1, "challenge": challenge}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def route_not_found(origin: str, requested_url: str) -> dict[str, Any]:
    """The 404 body for a path (or method) no route serves: where to rediscover the API."""
    return {
        "success": False,
        "code": "route_not_found",
        "error": "Route not found. Rediscover this origin and retry with the current discovery document.",
        "requestedUrl": requested_url,
        "discovery": {"openapi": f"{origin}/openapi.json", "llmsTxt": f"{origin}/llms.txt"},
    }


def bazaar_extension(method: str, body_schema: dict[str, Any]) -> dict[str, Any]:
    """The ``bazaar`` extension of a quote: how to call the route, with its input body's JSON schema."""
    return {
        "info": {"input": {"type": "http", "method": method, "bodyType": "json", "body": {}}},
        "schema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "input": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string", "const": "http"},
                        "method": {"type": "string", "enum": ["POST", "PUT", "PATCH"]},
                        "bodyType": {"type": "string", "enum": ["json", "form-data", "text"]},
                        "body": body_schema,
                    },
                    "required": ["type", "method", "bodyType", "body"],
                    "additionalProperties": False,
                }
            },
            "required": ["input"],
        },
    }
