"""Money, the one home of its conversions and formats. USDC has 6 decimals; never float.

Inside the project an amount is an `int` of atomic units (1 = $0.000001); `Decimal` dollars appear only at the
edges (a wallet's caps, a report's totals). Every function here names the unit it takes and the one it gives,
so that neither the reader nor the type checker has to guess which one an `int` or a `Decimal` is.

| function | takes | gives |
| --- | --- | --- |
| `dollars_from_atomic` | atomic `int` | `Decimal` dollars, exact |
| `atomic_from_dollars` | `Decimal`/`str`/`int` dollars | atomic `int` (refuses floats, sub-unit fractions) |
| `usd_from_atomic` / `usd_from_dollars` | atomic / dollars | "$0.045", "$0" for people |
| `usd_cap_from_atomic` | atomic or None | as `usd_from_atomic`, "no cap" for None |
| `usd_exact_from_atomic` | atomic | "$0.045000" (all six decimals: errors, logs) |
| `plain_dollars_from_atomic` | atomic | "0.045" for files and payloads (no sign, no exponent) |

Example:
    >>> dollars_from_atomic(30_000), atomic_from_dollars("0.01")
    (Decimal('0.03'), 10000)
    >>> usd_from_atomic(45_000), usd_exact_from_atomic(45_000), plain_dollars_from_atomic(10_000_000)
    ('$0.045', '$0.045000', '10')
"""

from __future__ import annotations

from decimal import Decimal

__all__ = [
    "USDC_DECIMALS",
    "atomic_from_dollars",
    "dollars_from_atomic",
    "plain_dollars_from_atomic",
    "usd_cap_from_atomic",
    "usd_exact_from_atomic",
    "usd_from_atomic",
    "usd_from_dollars",
]

USDC_DECIMALS = 6
_SCALE = Decimal(10) ** USDC_DECIMALS


def dollars_from_atomic(atomic: int) -> Decimal:
    """Atomic units -> dollars (exact)."""
    return (Decimal(atomic) / _SCALE).normalize() if atomic else Decimal(0)


def atomic_from_dollars(dollars: Decimal | str | int) -> int:
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


def usd_from_dollars(dollars: Decimal) -> str:
    """Dollars for people: "$0.045", "$12", "$0"."""
    value = dollars.normalize()
    return f"${value:f}" if value else "$0"


def usd_from_atomic(atomic: int) -> str:
    """Atomic units for people: "$0.045", "$0"."""
    return usd_from_dollars(dollars_from_atomic(atomic))


def usd_cap_from_atomic(atomic: int | None) -> str:
    """A cap for people: as `usd_from_atomic`, "no cap" for None."""
    return "no cap" if atomic is None else usd_from_atomic(atomic)


def usd_exact_from_atomic(atomic: int) -> str:
    """Atomic units with all six decimals, for errors and logs: "$0.030000"."""
    return f"${Decimal(atomic) / _SCALE:.6f}"


def plain_dollars_from_atomic(atomic: int) -> str:
    """Dollars as a plain decimal string for files and payloads: no exponent, no trailing zeros.

    Example:
        >>> [plain_dollars_from_atomic(a) for a in (10_000_000, 40_000, 0)]
        ['10', '0.04', '0']
    """
    return f"{dollars_from_atomic(atomic):f}"
