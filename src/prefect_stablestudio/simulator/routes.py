"""StableStudio's routes: generate and upload (paid), jobs and upload confirm (SIWX), blob API, blobs."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from prefect_stablestudio.simulator.blob import BlobRefused
from prefect_stablestudio.simulator.dialect import validation_failed
from prefect_stablestudio.simulator.discovery import input_schema, not_found
from prefect_stablestudio.simulator.encoding import b64_json, iso
from prefect_stablestudio.simulator.faults import FaultRule
from prefect_stablestudio.simulator.generate import SPECS, generate_route, serve_generated
from prefect_stablestudio.simulator.paid import (
    PaidRoute,
    apply_request_fault,
    challenge_headers,
    handle_paid,
    mpp_offer,
)
from prefect_stablestudio.simulator.render import render_result
from prefect_stablestudio.simulator.responses import NO_STORE, json_response, malformed, payment_required
from prefect_stablestudio.simulator.settings import UPLOAD_OPERATION
from prefect_stablestudio.simulator.siwx import SiwxRefused
from prefect_stablestudio.simulator.state import SimulatorState
from prefect_stablestudio.simulator.validation import validate_edit, validate_upload

JOB_STATUSES = ("pending", "loading", "complete", "failed")
NOT_FOUND = {"error": "not_found", "message": "Not found"}


def _edit_route(state: SimulatorState, model: str, operation: str) -> PaidRoute:
    job_type = f"{model}-{operation}"

    def create(
        params: dict[str, Any], body: Any, payer: str, fault: FaultRule | None
    ) -> tuple[str, dict[str, Any]]:
        reference = state.blob_pathname(params["images"][0]) or ""
        job = state.jobs.create_job(
            job_type,
            payer,
            body,
            params,
            reference_pathname=reference,
            fails=fault is not None and fault.kind == "job_failure",
        )
        return job.job_id, {
            "type": job_type,
            "jobId": job.job_id,
            "status": "pending",
            "success": True,
            "pollUrl": f"{state.origin}/api/jobs/{job.job_id}",
        }

    return PaidRoute(
        name=f"{model}/{operation}",
        counter=f"POST /api/generate/{model}/{operation}",
        description=f"{model} - {operation}",
        validate=lambda body: validate_edit(body, state.blob_pathname),
        tier=lambda body: str(body["resolution"]),
        price_key=f"{model}/{operation}",
        create=create,
        input_schema=input_schema(f"{model}/{operation}"),
    )


def _upload_route(state: SimulatorState) -> PaidRoute:
    def create(
        body: dict[str, Any], _: Any, payer: str, fault: FaultRule | None
    ) -> tuple[str, dict[str, Any]]:
        upload = state.jobs.create_upload(payer, body["filename"], body["contentType"])
        expired = fault is not None and fault.kind == "expired_upload_token"
        valid_until = time.time() + (-1.0 if expired else state.settings.upload_token_ttl_seconds)
        token = state.blobs.issue_token(
            upload.pathname, [upload.content_type], state.settings.max_upload_bytes, valid_until=valid_until
        )
        return upload.upload_id, {
            "uploadId": upload.upload_id,
            "clientToken": token,
            "pathname": upload.pathname,
            "expiresAt": iso(valid_until),
        }

    return PaidRoute(
        name=UPLOAD_OPERATION,
        counter="POST /api/upload",
        description="Upload a file",
        validate=lambda body: (body, validate_upload(body, state.settings.max_upload_bytes)),
        tier=lambda body: "default",
        price_key=UPLOAD_OPERATION,
        create=create,
        tag="Upload",
        input_schema=input_schema(UPLOAD_OPERATION),
        priced_by_body=False,
    )


# The Flux 2 Pro edit has its own schema and renderer; the other generate routes are in generate.SPECS.
EDIT_OPERATIONS = {("flux-2-pro", "edit")}
EDIT_TYPES = {f"{model}-{operation}" for model, operation in EDIT_OPERATIONS}

SiwxHandler = Callable[[Request, str], Awaitable[Response]]
SIWX_DESCRIPTIONS = {"job": "Get a job", "jobs": "List your jobs", "upload-confirm": "Confirm an upload"}


async def _with_siwx(
    state: SimulatorState, request: Request, name: str, counter: str, handler: SiwxHandler
) -> Response:
    state.ledger.count(state.ledger.requests, counter)
    header = request.headers.get("sign-in-with-x")
    early, broken = await apply_request_fault(state, name, paid=header is not None)
    if early is not None:
        return early
    url = f"{state.origin}{request.url.path}" + (f"?{request.url.query}" if request.url.query else "")
    if header is None:
        challenge = state.siwx.challenge(url, SIWX_DESCRIPTIONS.get(name, "Wallet sign-in"))
        # As the router: a zero-amount MPP charge beside the challenge, and the DID-auth header.
        response = payment_required(
            challenge, challenge, challenge_headers(state, request, mpp_offer(state, request, 0))
        )
    else:
        try:
            address = state.siwx.verify(header)
        except SiwxRefused as exc:
            state.ledger.count(state.ledger.siwx_failures, exc.reason)
            # The router's refusal carries no new challenge: a client asks for one with an unsigned request.
            response = json_response({"error": exc.reason, "message": exc.message}, 402)
        else:
            response = await handler(request, address)
    return malformed(response) if broken else response


def build_routes(state: SimulatorState) -> list[Route]:
    """The StableStudio routes over ``state``."""
    upload_route = _upload_route(state)

    async def generate(request: Request) -> Response:
        model, operation = request.path_params["model"], request.path_params["operation"]
        key = f"{model}/{operation}"
        if key not in state.settings.prices:
            return not_found(state, request)
        if (model, operation) in EDIT_OPERATIONS:
            return await handle_paid(state, request, _edit_route(state, model, operation))
        spec = SPECS.get(key)
        if spec is None:
            return not_found(state, request)
        return await handle_paid(state, request, generate_route(state, model, operation, spec))

    async def upload(request: Request) -> Response:
        return await handle_paid(state, request, upload_route)

    async def job(request: Request) -> Response:
        async def read(_: Request, address: str) -> Response:
            found = state.jobs.job_for(request.path_params["job_id"], address)
            if found is None:
                return json_response(NOT_FOUND, 404, NO_STORE)
            view = found.view(time.time(), state.origin, timestamps=state.settings.job_timestamps)
            return json_response(view, 200, NO_STORE)

        return await _with_siwx(state, request, "job", "GET /api/jobs/{id}", read)

    async def jobs(request: Request) -> Response:
        async def read(_: Request, address: str) -> Response:
            try:
                limit = min(100, max(1, int(request.query_params.get("limit", "20"))))
            except ValueError:
                limit = 20
            wanted = request.query_params.get("status")
            now = time.time()
            views = []
            for found in state.jobs.jobs_of(address):
                view = found.view(now, state.origin, timestamps=state.settings.job_timestamps)
                if wanted in (None, "", view["status"]):
                    views.append(view)
                if len(views) >= limit:
                    break
            return json_response({"jobs": views}, 200, NO_STORE)

        return await _with_siwx(state, request, "jobs", "GET /api/jobs", read)

    async def confirm(request: Request) -> Response:
        async def handle(_: Request, address: str) -> Response:
            try:
                body = json.loads(await request.body())
            except (json.JSONDecodeError, UnicodeDecodeError):
                body = None
            if (
                not isinstance(body, dict)
                or not isinstance(body.get("uploadId"), str)
                or not isinstance(body.get("blobUrl"), str)
            ):
                issue = {"path": ["uploadId"], "message": "Expected uploadId and blobUrl strings"}
                return json_response(validation_failed([issue]), 400)
            found = state.jobs.upload_for(body["uploadId"], address)
            if found is None:
                return json_response(NOT_FOUND, 404)
            blob = state.blobs.get(found.pathname)
            if blob is None or state.blob_pathname(body["blobUrl"]) != found.pathname:
                issue = {"path": ["blobUrl"], "message": "Expected the URL of this upload's stored blob"}
                return json_response(validation_failed([issue]), 400)
            found.confirmed, found.size = True, len(blob.data)
            return json_response(
                {
                    "success": True,
                    "upload": {
                        "id": found.upload_id,
                        "blobUrl": body["blobUrl"],
                        "pathname": found.pathname,
                        "contentType": blob.content_type,
                        "size": len(blob.data),
                    },
                }
            )

        return await _with_siwx(state, request, "upload-confirm", "POST /api/upload/confirm", handle)

    async def blob_put(request: Request) -> Response:
        state.ledger.count(state.ledger.requests, "PUT /api/blob")
        early, broken = await apply_request_fault(state, "blob-put", paid=False)
        if early is not None:
            return early
        auth = request.headers.get("authorization", "")
        pathname = request.query_params.get("pathname", "")
        content_type = request.headers.get("x-content-type") or request.headers.get("content-type", "")
        data = await request.body()
        try:
            blob = state.blobs.put(auth.removeprefix("Bearer ").strip(), pathname, content_type, data)
        except BlobRefused as exc:
            state.ledger.count(state.ledger.events, f"blob_refused:{exc.code}")
            return json_response({"error": {"code": exc.code, "message": exc.message}}, exc.status)
        url = state.blob_url(blob.pathname)
        filename = blob.pathname.rsplit("/", 1)[-1]
        response = json_response(
            {
                "url": url,
                "downloadUrl": f"{url}?download=1",
                "pathname": blob.pathname,
                "contentType": blob.content_type,
                "contentDisposition": f'inline; filename="{filename}"',
                "etag": blob.etag,
            }
        )
        return malformed(response) if broken else response

    async def blob_get(request: Request) -> Response:
        state.ledger.count(state.ledger.requests, "GET /blobs")
        early, _ = await apply_request_fault(state, "blob-get", paid=False)
        if early is not None:
            return early
        pathname = request.path_params["pathname"]
        if pathname.startswith("generated/"):
            return await _result(state, pathname)
        blob = state.blobs.get(pathname)
        if blob is None:
            return json_response(NOT_FOUND, 404)
        return Response(blob.data, 200, {"ETag": blob.etag}, media_type=blob.content_type)

    return [
        Route("/api/generate/{model}/{operation}", generate, methods=["POST"]),
        Route("/api/upload", upload, methods=["POST"]),
        Route("/api/upload/confirm", confirm, methods=["POST"]),
        Route("/api/jobs", jobs, methods=["GET"]),
        Route("/api/jobs/{job_id}", job, methods=["GET"]),
        Route("/api/blob", blob_put, methods=["PUT"]),
        Route("/api/blob/", blob_put, methods=["PUT"]),
        Route("/blobs/{pathname:path}", blob_get, methods=["GET"]),
    ]


async def _result(state: SimulatorState, pathname: str) -> Response:
    """A result: rendered on first read (in a worker thread), gone (410) once its URL expired."""
    job_id = pathname.removeprefix("generated/").split(".", 1)[0]
    job = state.jobs.job(job_id)
    now = time.time()
    if (
        job is None
        or pathname not in (job.result_pathname, job.thumbnail_pathname)
        or job.status(now)[0] != "complete"
    ):
        return json_response(NOT_FOUND, 404)
    if now > job.done_at + state.settings.result_ttl_seconds:
        return json_response({"error": "expired", "message": "This result URL has expired"}, 410)
    if job.type not in EDIT_TYPES:
        return await serve_generated(state, job, pathname)
    reference = state.blobs.get(job.reference_pathname)
    if reference is None:
        return json_response(NOT_FOUND, 404)
    body = job.params
    key = b64_json(
        [
            reference.etag,
            body["prompt"],
            body["aspect_ratio"],
            body["resolution"],
            body["output_format"],
            body["output_quality"],
        ]
    )

    def render() -> tuple[bytes, str]:
        return render_result(
            reference.data,
            prompt=body["prompt"],
            aspect_ratio=body["aspect_ratio"],
            resolution=body["resolution"],
            output_format=body["output_format"],
            output_quality=body["output_quality"],
        )

    data, content_type = await anyio.to_thread.run_sync(state.renders.get_or_render, key, render)
    return Response(data, 200, media_type=content_type)
