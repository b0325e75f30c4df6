"""The public import surface, pinned: a name added to or dropped from an `__all__` must be a decision.

As httpx's `test_exported_members`: every exported name resolves, and the lists below change only on purpose
(update them with the change, and say so in the README if users see it).
"""

from __future__ import annotations

import importlib

import pytest

PUBLIC: dict[str, list[str]] = {
    "prefect_stablestudio": [
        "StableStudioWallet",
        "edit_image",
        "edit_images",
        "edit_new_images",
    ],
    "prefect_stablestudio.client": [
        "AssetInfo",
        "AuthenticationFailed",
        "BASE_USDC",
        "BudgetExceeded",
        "CATALOG",
        "CatalogEntry",
        "ClientStats",
        "EditRequest",
        "GenerationRequest",
        "InvalidRequest",
        "Job",
        "JobFailed",
        "JobNotFound",
        "JobResult",
        "JobTimeout",
        "NoHooks",
        "Payment",
        "PaymentHooks",
        "PaymentOutcome",
        "PaymentOutcomeUnknown",
        "PaymentRejected",
        "PaymentRequired",
        "PaymentUnrecovered",
        "PolicyRefused",
        "ProtocolError",
        "Quote",
        "RateLimited",
        "Requirement",
        "ResultTooLarge",
        "Settlement",
        "StableStudioClient",
        "StableStudioError",
        "SubmittedJob",
        "UnexpectedMediaType",
        "UntrustedChallenge",
        "UntrustedServerValue",
        "UploadResult",
        "UploadTicket",
        "UpstreamError",
        "WalletPolicy",
        "atomic_from_dollars",
        "build_request",
        "catalog_entry",
        "dollars_from_atomic",
        "tls_context",
        "usd_exact_from_atomic",
    ],
    "prefect_stablestudio.blocks": [
        "StableStudioWallet",
    ],
    "prefect_stablestudio.flows": [
        "BatchQuote",
        "BatchResult",
        "EditBatchFailed",
        "EditFailed",
        "EditItem",
        "EditOptions",
        "EditOutcome",
        "GenerationOutcome",
        "IntentStore",
        "PaidJob",
        "PaymentIntent",
        "PipelineReport",
        "QuoteLine",
        "SavedResult",
        "ShardedReport",
        "UnreconciledPayment",
        "UploadFailedAfterPaying",
        "UploadedImage",
        "edit_image",
        "edit_image_sync",
        "edit_images",
        "edit_images_sync",
        "edit_new_images",
        "edit_shard",
        "edit_sharded",
        "generate",
        "intent_key",
        "quote_edits",
        "quote_edits_flow",
        "save_media",
        "save_result",
        "submit_edit",
        "submit_generation",
        "upload_image",
        "wait_for_job",
    ],
    "prefect_stablestudio.simulator": [
        "BASE_NETWORK",
        "BASE_USDC",
        "FaultPlan",
        "FaultRule",
        "Simulator",
        "SimulatorSettings",
        "SimulatorState",
        "create_app",
        "parse_fault_spec",
        "run_simulator",
        "run_simulator_in_thread",
        "serve_forever",
    ],
}


@pytest.mark.parametrize("module_name", sorted(PUBLIC))
def test_exported_members(module_name: str) -> None:
    module = importlib.import_module(module_name)
    exported = list(getattr(module, "__all__", []))
    assert sorted(exported) == PUBLIC[module_name]
    assert len(set(exported)) == len(exported), "a name is exported twice"
    for name in exported:
        assert getattr(module, name) is not None, f"{module_name}.{name} does not resolve"
        assert name in dir(module)


def test_the_everyday_names_are_the_ones_their_packages_export() -> None:
    import prefect_stablestudio
    from prefect_stablestudio import blocks, flows

    assert prefect_stablestudio.StableStudioWallet is blocks.StableStudioWallet
    for name in ("edit_image", "edit_images", "edit_new_images"):
        assert getattr(prefect_stablestudio, name) is getattr(flows, name)
