"""`prefect-stablestudio quote`: what editing these images would cost and whether the wallet can carry it.

Nothing is paid and no flow run is started: the quote asks the server's 402s (free), reads the caps from
Prefect's server and the balance from the wallet's RPC, as the pre-flight of a batch flow does.

Example:
    ```python
    from prefect_stablestudio.quoting import quote_images

    quote, report = await quote_images("my-wallet", ["a.png", "b.png"], "make it snow", EditOptions())
    print(quote.total_usd, report.lines())
    ```
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.table import Table

    from prefect_stablestudio.flows.models import EditOptions
    from prefect_stablestudio.flows.preflight import PreflightReport
    from prefect_stablestudio.flows.quotes import BatchQuote

__all__ = ["quote_images", "quote_table"]


async def quote_images(
    wallet_name: str,
    images: list[str],
    prompt: str,
    options: EditOptions,
    *,
    intent_store_url: str | None = None,
) -> tuple[BatchQuote, PreflightReport]:
    """Quote editing `images` with `prompt` and check it against every cap and the balance.

    Raises:
        CliError: no wallet block of that name.
        RpcError: the wallet's RPC answered the balance read badly.
    """
    from prefect_stablestudio.flows.intents import IntentStore
    from prefect_stablestudio.flows.preflight import NEXT_RUN, preflight
    from prefect_stablestudio.flows.quotes import quote_batch
    from prefect_stablestudio.wallets import load_wallet_or_explain

    wallet = await load_wallet_or_explain(wallet_name)
    quote = await quote_batch(wallet, images, prompt, options, store=IntentStore(intent_store_url))
    return quote, await preflight(wallet, quote, wallet.budget(NEXT_RUN))


def quote_table(quote: BatchQuote) -> Table:
    """The quote as a terminal table: one row per upload and edit, then the total."""
    from rich.table import Table

    table = Table(show_edge=False, header_style="bold")
    for column in ("#", "what", "image", "price", "source"):
        table.add_column(column, justify="right" if column == "price" else "left")
    for row in quote.rows():
        table.add_row(row["item"], row["what"], row["image"][-48:], row["price"], row["source"][:70])
    return table
