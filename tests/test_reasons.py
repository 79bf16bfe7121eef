"""A reason for every move, the contribution of each balancing move, and why a guest stays."""

import numpy as np

from proxlb_opt.planner import make_plan
from proxlb_opt.reasons import explain, move_reasons
from tests.builders import cluster, fast, guest, node


def _plan(c, **settings):
    return make_plan(c, fast(**settings))


def test_every_move_has_a_reason_and_balance_moves_their_gain():
    c = cluster([node("a"), node("b"), node("c", maintenance=True)],
                [guest(1, "a", "8G"), guest(2, "a", "8G"), guest(3, "a", "8G"), guest(4, "c", "4G")])
    result = _plan(c, balanciness=0)
    found = move_reasons(result.problem, result.placement)
    moved = set(np.flatnonzero(result.placement != c.guest_node).tolist())
    assert set(found) == moved
    assert found[3].reason == "maintenance" and "leaves c" in found[3].detail
    balance = [r for r in found.values() if r.reason == "balance"]
    assert balance
    for reason in balance:
        # Each balancing move lowers the plan's spread: without it the plan would end higher.
        assert reason.spread_without > result.spread_after
        assert reason.relieves.startswith("a ")


def test_explain_a_guest_that_cannot_move():
    c = cluster([node("a"), node("b")], [guest(1, "a", "8G", tags=["plb_ignore_me"]), guest(2, "a", "8G")])
    result = _plan(c, balanciness=0)
    lines = explain(result.problem, result.placement, 0)
    assert "cannot be moved" in lines[0] and "plb_ignore_me" in lines[0]


def test_explain_a_pinned_guest_and_a_guest_with_nowhere_to_go():
    c = cluster([node("a", "32G"), node("b", "32G")],
                [guest(1, "a", "8G", tags=["plb_pin_a"]), guest(2, "a", "30G"), guest(3, "b", "30G")])
    result = _plan(c, balanciness=0)
    pinned = " ".join(explain(result.problem, result.placement, 0))
    assert "pinned" in pinned and "tags plb_pin_a" in pinned
    full = " ".join(explain(result.problem, result.placement, 1))
    assert "No other node may take it" in full and "b:" in full


def test_explain_a_guest_whose_move_would_not_help():
    c = cluster([node("a"), node("b")], [guest(1, "a", "8G"), guest(2, "b", "8G")])
    result = _plan(c, balanciness=0)
    lines = " ".join(explain(result.problem, result.placement, 0))
    assert "would not lower the spread" in lines


def test_explain_a_mover():
    c = cluster([node("a"), node("b")], [guest(1, "a", "8G"), guest(2, "a", "8G")])
    result = _plan(c, balanciness=0)
    g = int(np.flatnonzero(result.placement != c.guest_node)[0])
    assert "moves a → b" in explain(result.problem, result.placement, g)[0]
