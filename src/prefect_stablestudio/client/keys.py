"""Loading the paying key without ever echoing it.

Example:
    >>> from prefect_stablestudio.client.keys import load_signer
    >>> load_signer("0x" + "11" * 32).address
    '0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A'
"""

from __future__ import annotations

import os
import re

from eth_account.signers.local import LocalAccount
from pydantic import SecretStr

from prefect_stablestudio.client.errors import InvalidRequest
from prefect_stablestudio.client.signer import Signer

__all__ = ["ENV_PRIVATE_KEY", "load_account", "load_signer"]

ENV_PRIVATE_KEY = "STABLESTUDIO_PRIVATE_KEY"
_HEX_KEY = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")


def load_signer(private_key: str | SecretStr | None) -> Signer:
    """The `Signer` for a 0x-hex key (str or SecretStr), or for `$STABLESTUDIO_PRIVATE_KEY` when None.

    Raises:
        InvalidRequest: no key, or not 32 bytes of hex, or not a valid secp256k1 key. The message never
            contains the value.
    """
    if private_key is None:
        private_key = os.environ.get(ENV_PRIVATE_KEY)
        if not private_key:
            raise InvalidRequest(f"no private key: pass one or set {ENV_PRIVATE_KEY}", field="private_key")
    raw = private_key.get_secret_value() if isinstance(private_key, SecretStr) else private_key
    if not isinstance(raw, str) or not _HEX_KEY.match(raw.strip()):
        raise InvalidRequest("private key must be 32 bytes of hex (0x + 64 hex digits)", field="private_key")
    try:
        return Signer.from_key(bytes.fromhex(raw.strip().removeprefix("0x")))
    except ValueError:  # Signer's message never names the key either
        raise InvalidRequest("private key is not a valid secp256k1 key", field="private_key") from None


def load_account(private_key: str | SecretStr | None) -> LocalAccount:
    """The eth-account `LocalAccount` for a key, checked as `load_signer` checks it.

    Raises:
        InvalidRequest: as `load_signer`.
    """
    return load_signer(private_key).local_account()
