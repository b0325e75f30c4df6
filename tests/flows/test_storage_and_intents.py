"""Storage through fsspec (local and S3 on moto) and the payment-intent store."""

from __future__ import annotations

import hashlib
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fsspec.core import url_to_fs

from prefect_stablestudio.client.errors import InvalidRequest
from prefect_stablestudio.client.payment import Payment, PaymentOutcome, Settlement
from prefect_stablestudio.flows.intents import IntentHooks, IntentStore, PaymentIntent, intent_key
from prefect_stablestudio.flows.storage import (
    content_type_for,
    exists_with_checksum,
    join_uri,
    presign,
    read_bytes,
    read_input,
    sha256_hex,
    write_bytes,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


async def test_local_roundtrip_is_atomic_and_checksummed(tmp_path: Path) -> None:
    target = str(tmp_path / "deep" / "out.png")
    assert await write_bytes(PNG, target) == target
    assert Path(target).read_bytes() == PNG
    assert [p.name for p in (tmp_path / "deep").iterdir()] == ["out.png"]  # no temp file left behind
    assert await exists_with_checksum(target, sha256_hex(PNG))
    assert not await exists_with_checksum(target, sha256_hex(b"other"))
    image = await read_input(target)
    assert (image.uri, image.filename, image.content_type, image.sha256) == (
        target, "out.png", "image/png", sha256_hex(PNG)
    )
    assert await presign(target) is None


async def test_s3_roundtrip_with_explicit_options_and_a_presigned_url(
    s3_bucket: str, s3_storage_options: dict[str, Any]
) -> None:
    uri = f"s3://{s3_bucket}/a/b/out.png"
    await write_bytes(PNG, uri, s3_storage_options)
    image = await read_input(uri, s3_storage_options)
    assert image.content_type == "image/png" and (image.size, image.sha256) == (len(PNG), sha256_hex(PNG))
    assert image.data == PNG and image.source == PNG  # small: held, so the upload sends what was hashed
    assert await exists_with_checksum(uri, sha256_hex(PNG), s3_storage_options)
    url = await presign(uri, s3_storage_options, expires=3600)
    assert url is not None and url.startswith("http://127.0.0.1:")
    assert httpx.get(url).content == PNG


async def test_s3_reached_through_aws_endpoint_url_alone(s3_bucket: str, s3fs_filesystem: Any) -> None:
    # The session fixture exported AWS_ENDPOINT_URL; botocore honours it without any storage_options.
    await write_bytes(PNG, f"s3://{s3_bucket}/env.png")
    assert s3fs_filesystem.cat_file(f"{s3_bucket}/env.png") == PNG


async def test_an_object_written_after_a_listing_is_read_in_the_same_process(
    s3_bucket: str, s3fs_filesystem: Any, s3_storage_options: dict[str, Any]
) -> None:
    # A long-lived worker lists a prefix (s3fs caches the listing in its shared instance)...
    fs, _ = url_to_fs(f"s3://{s3_bucket}/in/", **s3_storage_options)
    s3fs_filesystem.pipe_file(f"{s3_bucket}/in/old.png", PNG)
    assert [p.rsplit("/", 1)[-1] for p in fs.ls(f"{s3_bucket}/in/")] == ["old.png"]
    # ...then another writer adds an object the cached listing does not know.
    new = PNG + b"new"
    s3fs_filesystem.pipe_file(f"{s3_bucket}/in/new.png", new)
    uri = f"s3://{s3_bucket}/in/new.png"
    assert fs.exists(f"{s3_bucket}/in/new.png") is False  # the stale cache this test is about

    image = await read_input(uri, s3_storage_options)
    assert (image.size, image.sha256) == (len(new), sha256_hex(new))
    fs.ls(f"{s3_bucket}/in/")  # and again after a fresh listing goes stale
    s3fs_filesystem.pipe_file(f"{s3_bucket}/in/later.png", new)
    assert await read_bytes(f"s3://{s3_bucket}/in/later.png", s3_storage_options) == new
    fs.ls(f"{s3_bucket}/in/")
    s3fs_filesystem.pipe_file(f"{s3_bucket}/in/last.png", new)
    assert await exists_with_checksum(f"s3://{s3_bucket}/in/last.png", sha256_hex(new), s3_storage_options)


async def test_inputs_over_the_upload_limit_are_refused_from_their_size_alone(tmp_path: Path) -> None:
    huge = tmp_path / "huge.png"
    with huge.open("wb") as handle:
        handle.write(PNG)
        handle.truncate(300 * 2**20)  # sparse: 300 MiB on paper, nothing on disk
    with pytest.raises(InvalidRequest, match="268435456-byte \\(256 MiB\\) upload limit") as info:
        await read_input(str(huge))
    assert "314572800 bytes" in str(info.value)
    with pytest.raises(InvalidRequest, match="upload limit"):
        await read_input(PNG + b"\0" * 100, max_bytes=64)


async def test_a_large_input_is_hashed_in_chunks_not_held(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    size = 96 * 2**20
    with big.open("wb") as handle:
        handle.write(PNG)
        handle.truncate(size)
    expected = hashlib.sha256()
    with big.open("rb") as handle:
        while chunk := handle.read(2**20):
            expected.update(chunk)
    tracemalloc.start()
    try:
        image = await read_input(str(big))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (image.size, image.sha256, image.data) == (size, expected.hexdigest(), None)
    assert peak < 16 * 2**20  # a whole read would have allocated the 96 MiB


def test_content_types_and_joins() -> None:
    assert content_type_for(b"\xff\xd8\xff\xe0rest") == "image/jpeg"
    assert content_type_for(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert content_type_for(b"??", "x.gif") == "image/gif"
    assert join_uri("s3://b/prefix/", "x.png") == "s3://b/prefix/x.png"
    assert join_uri("/tmp/out", "x.png") == "/tmp/out/x.png"


def test_intent_keys_are_deterministic_and_input_sensitive() -> None:
    base: dict[str, Any] = dict(inputs=[("s3://b/cat.png", "ab" * 32)], params={"prompt": "snow"})
    key = intent_key("flux-2-pro/edit", "0xAbC", **base)
    assert key == intent_key("flux-2-pro/edit", "0xabc", **base)  # address case does not matter
    assert len(key) == 64
    assert key != intent_key("flux-2-pro/edit", "0xabc", **base, user_key="again")
    assert key != intent_key("flux-2-pro/edit", "0xabc", inputs=[("s3://b/cat.png", "cd" * 32)],
                             params={"prompt": "snow"})
    assert key != intent_key("flux-2-pro/edit", "0xabc", inputs=base["inputs"], params={"prompt": "rain"})


def _payment() -> Payment:
    return Payment(
        header="header-value", nonce="0x" + "11" * 32, amount=30_000, asset="0xA", network="eip155:8453",
        pay_to="0xB", payer="0xC", resource_url="http://x/api", body_sha256="00" * 32, valid_before=1,
        signed_at=datetime.now(UTC),
    )


@pytest.mark.parametrize("where", ["local", "s3"])
async def test_intent_store_roundtrip(
    where: str, tmp_path: Path, s3_bucket: str, s3_storage_options: dict[str, Any]
) -> None:
    store = (
        IntentStore(str(tmp_path / "intents"))
        if where == "local"
        else IntentStore(f"s3://{s3_bucket}/intents", s3_storage_options)
    )
    key = intent_key("op", "0xabc", inputs=[], params={})
    assert await store.get(key) is None
    first = await store.put(PaymentIntent(key=key, wallet="0xabc", status="signed", payment=_payment()))
    again = await store.get(key)
    assert again is not None and again.payment == first.payment and again.status == "signed"
    await store.put(again.model_copy(update={"status": "submitted", "job_id": "job-1"}))
    latest = await store.get(key)
    assert latest is not None and (latest.status, latest.job_id) == ("submitted", "job-1")
    with pytest.raises(ValueError):
        await store.get("../../etc/passwd")


async def test_local_records_are_appended_and_survive_a_torn_append(
    tmp_path: Path,
) -> None:
    store = IntentStore(str(tmp_path / "intents"))
    key = intent_key("op", "0xabc", inputs=[], params={"n": 1})
    path = tmp_path / "intents" / f"{key}.json"
    payment = _payment()
    await store.put(PaymentIntent(key=key, wallet="0xabc", status="new"))
    await store.put(PaymentIntent(key=key, wallet="0xabc", status="signed", payment=payment))
    assert len(path.read_bytes().strip().splitlines()) == 2  # appended, not rewritten
    assert path.stat().st_mode & 0o777 == 0o600  # it holds a signed authorization

    # A crash in the middle of an append leaves a torn last line: the record before it stands.
    with path.open("ab") as handle:
        handle.write(b'\n{"key": "' + key.encode() + b'", "status": "submi')  # a prefix of an append
    torn = await store.get(key)
    assert torn is not None and torn.status == "signed" and torn.payment == payment

    await store.put(torn.model_copy(update={"status": "submitted", "job_id": "job-1"}))
    latest = await store.get(key)  # the append after the torn one is read whole
    assert latest is not None and (latest.status, latest.job_id) == ("submitted", "job-1")

    await store.put(latest.model_copy(update={"status": "complete", "output_uri": "out.png"}))
    assert len(path.read_bytes().strip().splitlines()) == 5  # the final record is appended too
    done = await store.get(key)
    assert done is not None and (done.status, done.output_uri) == ("complete", "out.png")
    assert done.payment == payment and done.job_id == "job-1"
    assert list((tmp_path / "intents").iterdir()) == [path]  # no temporary files left


async def test_a_record_written_as_one_indented_document_is_read_and_garbage_is_never_no_record(
    tmp_path: Path,
) -> None:
    store = IntentStore(str(tmp_path))
    key = intent_key("op", "0xabc", inputs=[], params={"n": 2})
    record = PaymentIntent(key=key, wallet="0xabc", status="signed", payment=_payment())
    (tmp_path / f"{key}.json").write_text(record.model_dump_json(indent=1))  # the format before appends
    read = await store.get(key)
    assert read is not None and read.payment == record.payment

    (tmp_path / f"{key}.json").write_bytes(b"not json\n")
    with pytest.raises(ValueError, match="unreadable"):  # never None: None would pay again
        await store.get(key)

    # An empty file is one created and not yet written (or killed there): no record, nothing paid under it.
    (tmp_path / f"{key}.json").write_bytes(b"")
    assert await store.get(key) is None


async def test_deferred_hooks_keep_a_settlement_for_the_next_write_and_write_refusals_at_once(
    tmp_path: Path,
) -> None:
    store = IntentStore(str(tmp_path))
    key = intent_key("op", "0xabc", inputs=[], params={"n": 3})
    payment = _payment()
    hooks = IntentHooks(store, PaymentIntent(key=key, wallet="0xabc"), defer_settled=True)
    await hooks.after_signing(payment)
    assert (await store.get(key)).status == "signed"  # type: ignore[union-attr]  # before sending: on disk

    settled = PaymentOutcome(status="settled", settlement=Settlement(success=True, transaction="0xfeed"))
    await hooks.after_outcome(payment, settled)
    on_disk = await store.get(key)
    assert on_disk is not None and on_disk.transaction is None  # kept for the caller's next write...
    assert hooks.intent.transaction == "0xfeed"
    await hooks.flush()  # ...or written when the caller fails before it
    flushed = await store.get(key)
    assert flushed is not None and (flushed.status, flushed.transaction) == ("signed", "0xfeed")

    refused = IntentHooks(store, flushed, defer_settled=True)
    await refused.after_outcome(payment, PaymentOutcome(status="rejected", reason="insufficient_funds"))
    latest = await store.get(key)
    assert latest is not None and (latest.status, latest.reason) == ("rejected", "insufficient_funds")
