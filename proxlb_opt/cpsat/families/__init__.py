"""One module per rule family; each has `encode(ctx) -> Terms`. The list is a literal tuple, no discovery.

models/FORMULATION.md ("Rule families") lists, per family, its declaration (rules.py / loads.py), its
checker (check.py), its encoder (here) and its feasibility question (feasibility.py).
"""

from __future__ import annotations

from proxlb_opt.cpsat.families import affinity, anti_affinity, capacity, maintenance, migrations, pinning, spread

FAMILIES = (capacity, affinity, anti_affinity, pinning, maintenance, migrations, spread)
