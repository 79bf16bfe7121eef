"""What the service remembers between rounds, so that guests are not moved back and forth (pure).

The service keeps a small state file (path `optimizer.state_file`, default under /var/lib/proxlb-opt/):
the migrations it made, with time and reason, and where every guest was at the end of its last round.
From that, before each round:
* a guest it moved **for balance** within `optimizer.cooldown` is not moved again for balance;
* a guest found on another node than where the last round left it, without a migration of ours, was
  **moved by hand**: it stays where the admin put it for `optimizer.cooldown` after it was noticed.
Mandatory moves (maintenance, pins, broken rules) are never held back (`Problem.keep_in_place` is
only applied to guests that need not move). This module does no I/O: the service reads and writes
the file (`to_dict` / `from_dict`, JSON).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

STATE_VERSION = 1
#: Records older than this many cooldowns are dropped when the state is saved.
KEEP_COOLDOWNS = 4


@dataclass(frozen=True)
class MoveRecord:
    vmid: int
    source: str
    target: str
    at: float  # seconds since the epoch
    reason: str  # balance | maintenance | pin | affinity | anti-affinity | capacity | manual


@dataclass(frozen=True)
class History:
    moves: tuple[MoveRecord, ...] = ()
    last_seen: dict[int, str] = field(default_factory=dict)  # vmid → node at the end of the last round

    def held(self, placement: dict[int, str], now: float, cooldown: float) -> dict[int, str]:
        """vmid → why it stays where it is this round (cooldown after a balancing move, or moved by hand)."""
        out: dict[int, str] = {}
        for record in self.moves:
            if now - record.at >= cooldown or placement.get(record.vmid) != record.target:
                continue
            until = record.at + cooldown
            if record.reason == "balance":
                out[record.vmid] = (f"moved for balance {record.source} → {record.target} {_ago(now - record.at)} ago; "
                                    f"not moved again for balance for another {_ago(until - now)} "
                                    f"(optimizer.cooldown)")
            elif record.reason == "manual":
                out[record.vmid] = (f"moved by hand to {record.target} (noticed {_ago(now - record.at)} ago); left "
                                    f"where it was put for another {_ago(until - now)} (optimizer.cooldown)")
        return out

    def notice_manual_moves(self, placement: dict[int, str], now: float) -> "History":
        """Record guests that are not where the last round left them as moved by hand, now."""
        found = [MoveRecord(vmid, self.last_seen[vmid], node, now, "manual")
                 for vmid, node in sorted(placement.items())
                 if vmid in self.last_seen and self.last_seen[vmid] != node]
        return replace(self, moves=self.moves + tuple(found)) if found else self

    def after_round(self, placement: dict[int, str], applied: list[MoveRecord], now: float,
                    cooldown: float) -> "History":
        """The state to save after a round: its migrations added, old records dropped, placement remembered."""
        keep = [m for m in self.moves + tuple(applied) if now - m.at < KEEP_COOLDOWNS * max(cooldown, 1.0)]
        return History(moves=tuple(keep), last_seen=dict(placement))

    def to_dict(self) -> dict[str, Any]:
        return {"version": STATE_VERSION,
                "moves": [{"vmid": m.vmid, "from": m.source, "to": m.target, "at": m.at, "reason": m.reason}
                          for m in self.moves],
                "last_seen": {str(vmid): node for vmid, node in sorted(self.last_seen.items())}}

    @staticmethod
    def from_dict(data: Any) -> "History":
        """The state from a file's JSON; anything unreadable gives an empty history (never an error)."""
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            return History()
        try:
            moves = tuple(MoveRecord(int(m["vmid"]), str(m["from"]), str(m["to"]), float(m["at"]), str(m["reason"]))
                          for m in data.get("moves", []))
            seen = {int(vmid): str(node) for vmid, node in dict(data.get("last_seen", {})).items()}
        except (KeyError, TypeError, ValueError, OverflowError):
            return History()
        if not all(math.isfinite(m.at) for m in moves):
            return History()
        return History(moves=moves, last_seen=seen)


def _ago(seconds: float) -> str:
    """A duration for people: 45 s, 12 min, 3.5 h."""
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
