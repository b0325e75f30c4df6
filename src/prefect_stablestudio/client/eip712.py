"""EIP-712 hashing of the one struct the client signs: EIP-3009 `TransferWithAuthorization`.

eth-account's generic `encode_typed_data` walks the type tree and ABI-encodes every field on each call; this
struct's layout is fixed, so it is hashed here directly (typehash and six 32-byte words), and the domain
separator is computed once per token domain. The digests equal eth-account's (tests/client/test_signer.py).

Example:
    >>> from prefect_stablestudio.client.eip712 import domain_separator
    >>> usdc = domain_separator("USD Coin", "2", 8453, "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913")
    >>> usdc.hex()[:16]
    '02fa7265e7c5d811'
"""

from __future__ import annotations

import re
from functools import lru_cache

from eth_hash.auto import keccak

__all__ = ["TRANSFER_WITH_AUTHORIZATION", "domain_separator", "transfer_authorization_digest"]

TRANSFER_WITH_AUTHORIZATION = (
    "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,"
    "bytes32 nonce)"
)
_TRANSFER_TYPEHASH = keccak(TRANSFER_WITH_AUTHORIZATION.encode())
_DOMAIN_TYPEHASH = keccak(
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
_HEX_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_UINT256_LIMIT = 1 << 256


def _address_word(address: str) -> bytes:
    # eth-abi (eth-utils >= 5) takes any hex case and does not check EIP-55 checksums; neither do we.
    if not isinstance(address, str) or not _HEX_ADDRESS.match(address):
        raise ValueError(f"not a valid address: {str(address)[:50]!r}")
    return bytes(12) + bytes.fromhex(address[2:])


def _uint_word(value: int) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _UINT256_LIMIT:
        raise ValueError(f"not a uint256: {str(value)[:80]!r}")
    return value.to_bytes(32, "big")


@lru_cache(maxsize=256, typed=True)
def domain_separator(name: str, version: str, chain_id: int, verifying_contract: str) -> bytes:
    """The EIP-712 domain separator of (name, version, chainId, verifyingContract), computed once per domain.

    Raises:
        ValueError: a field is not of its EIP-712 type (string, string, uint256, address).
    """
    if not isinstance(name, str) or not isinstance(version, str):
        raise ValueError("EIP-712 domain name and version must be strings")
    return keccak(
        _DOMAIN_TYPEHASH
        + keccak(name.encode("utf-8"))
        + keccak(version.encode("utf-8"))
        + _uint_word(chain_id)
        + _address_word(verifying_contract)
    )


def transfer_authorization_digest(
    domain: bytes,
    *,
    payer: str,
    pay_to: str,
    value: int,
    valid_after: int,
    valid_before: int,
    nonce: bytes,
) -> bytes:
    """The EIP-712 hash to sign for a TransferWithAuthorization under the `domain` separator.

    Raises:
        ValueError: an address, amount, time or the 32-byte nonce is malformed.
    """
    if len(domain) != 32 or not isinstance(nonce, bytes) or len(nonce) != 32:
        raise ValueError("the domain separator and the nonce are 32 bytes each")
    struct_hash = keccak(
        _TRANSFER_TYPEHASH
        + _address_word(payer)
        + _address_word(pay_to)
        + _uint_word(value)
        + _uint_word(valid_after)
        + _uint_word(valid_before)
        + nonce
    )
    return keccak(b"\x19\x01" + domain + struct_hash)
