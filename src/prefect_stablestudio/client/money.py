"""Money: int atomic units inside, `Decimal` dollars at the edges. USDC has 6 decimals. Never float.

Example:
    >>> from prefect_stablestudio.client.money import to_atomic, to_dollars
    >>> to_dollars(30_000)
    Decimal('0.03')
    >>> to_atomic("0.01")
    10000
"""

from __future__ import annotations

from decimal import Decimal

__all__ = ["USDC_DECIMALS", "format_usd", "plain_usd", "to_atomic", "to_dollars"]

USDC_DECIMALS = 6
_SCALE = Decimal(10) ** USDC_DECIMALS


def to_dollars(atomic: int) -> Decimal:
    """Atomic units -> dollars (exact)."""
    return (Decimal(atomic) / _SCALE).normalize() if atomic else Decimal(0)


def to_atomic(dollars: Decimal | str | int) -> int:
    """Dollars -> atomic units. Refuses fractions of a unit and floats.

    Raises:
        ValueError: for a float, or a value with more than 6 decimals.
    """
    if isinstance(dollars, float):
        raise ValueError("use Decimal or str for money, never float")
    scaled = Decimal(dollars) * _SCALE
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{dollars} has more than {USDC_DECIMALS} decimals")
    return int(scaled)


def format_usd(atomic: int) -> str:
    """A human string such as "$0.030000"."""
    return f"${Decimal(atomic) / _SCALE:.6f}"


def plain_usd(atomic: int) -> str:
    """Dollars as a plain decimal string for files and payloads: no exponent, no trailing zeros.

    Example:
        >>> plain_usd(10_000_000), plain_usd(40_000), plain_usd(0)
        ('10', '0.04', '0')
    """
    return f"{to_dollars(atomic):f}"
