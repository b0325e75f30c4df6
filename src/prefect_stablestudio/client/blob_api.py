"""Finding the blob API before money is spent on it: the simulator's advertisement, and a reachability probe.

An upload pays for its ticket before its bytes go to the blob API. A blob API that cannot be reached (the
default https://vercel.com/api/blob from a wallet pointed at the local simulator, a typo, a firewall) would
turn every upload into a paid ticket thrown away. So a client probes the blob API's host once, before its
first upload is paid, and says which setting to change.

Example:
    ```python
    blob_api_url = await advertised_blob_api("http://127.0.0.1:8402")   # the simulator's, or None
    ```
"""

from __future__ import annotations

import httpx

from prefect_stablestudio.client._http import check_url, tls_context
from prefect_stablestudio.client.errors import InvalidRequest

__all__ = ["SIM_INFO_PATH", "advertised_blob_api", "probe_blob_api"]

SIM_INFO_PATH = "/_sim/info"
"""Where the simulator describes itself (`{"simulator": true, "blobApiUrl": ...}`); StableStudio has no such
route (docs/architecture.md §1.5)."""
_PROBE_SECONDS = 5.0
_INFO_SECONDS = 3.0


async def advertised_blob_api(base_url: str) -> str | None:
    """The blob API an API origin advertises at `SIM_INFO_PATH` (the simulator does); None when it does not.

    Never raises for an origin that does not answer or answers something else: None.
    """
    url = check_url(base_url.rstrip("/"), "base_url") + SIM_INFO_PATH
    try:
        async with httpx.AsyncClient(verify=tls_context(), timeout=_INFO_SECONDS) as http:
            response = await http.get(url)
        data = response.json() if response.is_success else None
    except (httpx.HTTPError, ValueError):
        return None
    advertised = data.get("blobApiUrl") if isinstance(data, dict) and data.get("simulator") is True else None
    if not isinstance(advertised, str):
        return None
    try:
        return check_url(advertised, "blob_api_url")
    except InvalidRequest:
        return None


async def probe_blob_api(http: httpx.AsyncClient, blob_api_url: str) -> None:
    """Check that the blob API's host accepts connections (one HEAD; any HTTP answer will do).

    Raises:
        InvalidRequest: field "blob_api_url": the host cannot be connected to (nothing was paid).
    """
    try:
        await http.head(blob_api_url, timeout=_PROBE_SECONDS, follow_redirects=False)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol) as exc:
        raise InvalidRequest(
            f"the blob API {blob_api_url} cannot be reached ({type(exc).__name__}), so an upload would pay "
            "for a ticket it cannot use; nothing was paid. Set the wallet's blob_api_url field (\"Blob API "
            "URL\"; `prefect-stablestudio wallet create --blob-api-url`, or $STABLESTUDIO_BLOB_API_URL): for "
            "the simulator it is <simulator>/api/blob",
            field="blob_api_url",
        ) from None
    except httpx.HTTPError:
        return  # the host answered, if badly: reachable
