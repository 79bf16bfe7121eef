"""One module per rule family; each has `encode(ctx) -> Terms`. The list is a literal tuple, no discovery."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Terms:
    primary: list = field(default_factory=list)  # balance (spread) terms
    secondary: list = field(default_factory=list)  # tie-breakers: migration cost, soft preferences


from proxlb_opt.cpsat.families import (  # noqa: E402  (Terms must exist before the families import it)
    affinity,
    anti_affinity,
    capacity,
    maintenance,
    migrations,
    pinning,
    spread,
)

FAMILIES = (capacity, affinity, anti_affinity, pinning, maintenance, migrations, spread)
