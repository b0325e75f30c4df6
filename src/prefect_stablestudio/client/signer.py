"""`Signer`: the wallet's secp256k1 key, parsed once, signing message hashes directly.

eth-account's `LocalAccount` re-parses its key and rebuilds the public key on every signature (eth-keys makes
a new coincurve key each time); a client signs about five times per edit, so the key is parsed here once and
each signature is one libsecp256k1 call. Signatures are RFC 6979 deterministic, so they are byte-identical to
eth-account's (tests/client/test_signer.py checks it): r || s || v with v = 27 or 28.

The key never leaves this object through repr, str, pickling or an exception message.

Example:
    >>> from prefect_stablestudio.client.signer import Signer
    >>> signer = Signer.from_key(bytes.fromhex("11" * 32))
    >>> signer
    Signer(address='0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A')
    >>> len(signer.sign_personal_message("hello"))
    65
"""

from __future__ import annotations

from typing import NoReturn

import coincurve
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_hash.auto import keccak
from eth_utils.address import to_checksum_address

__all__ = ["Signer", "as_signer", "personal_message_digest"]


def personal_message_digest(text: str) -> bytes:
    """The EIP-191 "personal_sign" hash of `text` (what `encode_defunct(text=...)` signs)."""
    body = text.encode("utf-8")
    return keccak(b"\x19Ethereum Signed Message:\n" + str(len(body)).encode() + body)


class Signer:
    """One wallet's key, parsed once. Build it with `from_key` or `from_account`, or `keys.load_signer`."""

    __slots__ = ("_key", "address")

    def __init__(self, key: coincurve.PrivateKey, address: str) -> None:
        self._key = key
        self.address: str = address  # checksummed

    @classmethod
    def from_key(cls, secret: bytes) -> Signer:
        """The signer for a 32-byte secret.

        Raises:
            ValueError: not a valid secp256k1 secret (the message never contains it).
        """
        try:
            key = coincurve.PrivateKey(bytes(secret)) if len(secret) == 32 else None  # coincurve pads
        except Exception:
            key = None  # a library message might contain the secret: raise ours outside this block
        if key is None:
            raise ValueError("not a valid secp256k1 private key")
        public = key.public_key.format(compressed=False)[1:]
        return cls(key, to_checksum_address(keccak(public)[-20:]))

    @classmethod
    def from_account(cls, account: LocalAccount) -> Signer:
        """The signer for an eth-account `LocalAccount` (same key, same address)."""
        return cls(coincurve.PrivateKey(bytes(account.key)), str(account.address))

    def sign_hash(self, digest: bytes) -> bytes:
        """Sign a 32-byte message hash: 65 bytes r || s || v, v = 27 or 28 (eth-account's encoding)."""
        if len(digest) != 32:
            raise ValueError("a message hash is 32 bytes")
        signature = self._key.sign_recoverable(digest, hasher=None)
        return signature[:64] + bytes((signature[64] + 27,))

    def sign_personal_message(self, text: str) -> bytes:
        """Sign `text` the EIP-191 "personal_sign" way (as `sign_message(encode_defunct(text=text))`)."""
        return self.sign_hash(personal_message_digest(text))

    def local_account(self) -> LocalAccount:
        """An eth-account `LocalAccount` with this key, for libraries that need one (pympp signs MPP so)."""
        account: LocalAccount = Account.from_key(self._key.secret)
        return account

    def __repr__(self) -> str:
        return f"Signer(address={self.address!r})"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        # Pickling would write the key wherever the pickle goes (a result store, a task cache): refuse.
        raise TypeError("a Signer holds a private key and cannot be pickled or copied")


def as_signer(account: Signer | LocalAccount) -> Signer:
    """`account` itself if it is a `Signer`, else a `Signer` for the `LocalAccount`'s key (parsed again)."""
    return account if isinstance(account, Signer) else Signer.from_account(account)
