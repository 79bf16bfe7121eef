"""max_migrations auto: the budget chosen from a sampled trade-off curve (tradeoff.choose_budget, pure)."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings, strategies as st

from proxlb_opt.tradeoff import budgets, choose_budget


@dataclass
class Point:
    spread_after: float
    moves: int
    bound: float | None = None


def curve(spread_of):
    """A sample function over spread_of(budget) (every budget used in full), recording what was asked."""
    asked: list[int] = []

    def sample(budget: int, left: int) -> Point:
        asked.append(budget)
        return Point(spread_of(budget), budget)

    return sample, asked


def never() -> bool:
    return False


def test_the_fewest_moves_to_the_target_then_only_moves_worth_their_gain():
    # 3 pp per move down to 10 pp at budget 10, then 0.2 pp per move: the target (15 pp) needs 9 moves
    # (40 - 3*9 = 13 <= 15 but 40 - 3*8 = 16 > 15); the 10th still gains 3 pp, none after it 1 pp.
    sample, _ = curve(lambda b: 40 - 3 * b if b <= 10 else max(0.0, 10 - 0.2 * (b - 10)))
    choice = choose_budget(sample, 100, never, min_gain_per_move=1.0, target_spread=15.0)
    assert choice.budget == 10
    assert "needs budget 9" in choice.why


def test_moves_past_the_target_are_taken_while_each_gains_enough():
    # The target is reached at 5 moves, but moves keep gaining 2 pp each up to budget 12.
    spread_of = lambda b: max(4.0, 30 - 2 * b)  # noqa: E731
    sample, _ = curve(spread_of)
    choice = choose_budget(sample, 64, never, min_gain_per_move=1.0, target_spread=20.0)
    assert choice.budget >= 13 and spread_of(choice.budget) == 4.0
    # With a higher threshold the same curve stops at the target: 2 pp per move is not worth 3.
    choice = choose_budget(curve(spread_of)[0], 64, never, min_gain_per_move=3.0, target_spread=20.0)
    assert choice.budget == 5


def test_a_target_out_of_reach_still_moves_towards_it():
    # A large cluster: each move gains 0.05 pp, far below min_gain_per_move, and 5 pp is never reached.
    # Balancing was called for: the plan goes as far as the curve goes, not stopping at zero moves.
    sample, _ = curve(lambda b: max(14.0, 20.5 - 0.05 * b))
    choice = choose_budget(sample, 10_000, never, min_gain_per_move=1.0, target_spread=5.0)
    spread = 20.5 - 0.05 * choice.budget
    assert choice.budget > 0
    assert spread <= 14.0 + 1.0 + 1e-9  # within one move's worth of the lowest spread found
    assert "was not reached" in choice.why


def test_without_a_target_a_flat_curve_moves_nothing():
    sample, _ = curve(lambda b: 20.0 - 0.01 * min(b, 8))
    choice = choose_budget(sample, 100, never, min_gain_per_move=1.0, target_spread=None)
    assert choice.budget == 1  # the move that helps most is made; the rest gain 0.01 pp each


def test_the_curve_is_not_sampled_past_the_deadline():
    calls = {"n": 0}

    def expired() -> bool:
        calls["n"] += 1
        return calls["n"] >= 3

    sample, asked = curve(lambda b: 30.0 - 0.1 * b)
    choose_budget(sample, 1000, expired, min_gain_per_move=1.0, target_spread=5.0)
    assert len(asked) <= 3 + 1


@settings(max_examples=200, deadline=None)
@given(drops=st.lists(st.floats(min_value=0, max_value=10, allow_nan=False), min_size=1, max_size=12),
       start=st.floats(min_value=1, max_value=100, allow_nan=False),
       target=st.one_of(st.none(), st.floats(min_value=0, max_value=100, allow_nan=False)),
       min_gain=st.floats(min_value=0.01, max_value=5, allow_nan=False))
def test_the_choice_is_a_sampled_point_that_no_smaller_budget_dominates(drops, start, target, min_gain):
    """Whatever the (non-increasing) curve: the chosen budget was sampled, and when the target was reached
    the chosen plan reaches it too."""
    points = budgets(2 ** len(drops))
    spreads = {}
    level = start
    steps = [0.0] + drops
    for i, b in enumerate(points):
        d = steps[i] if i < len(steps) else 0.0
        level = max(0.0, level - d)
        spreads[b] = level

    def spread_of(b: int) -> float:
        return spreads[max(p for p in points if p <= b)]

    sample, asked = curve(spread_of)
    choice = choose_budget(sample, points[-1], never, min_gain_per_move=min_gain, target_spread=target)
    assert choice.budget in asked
    chosen = spread_of(choice.budget)
    if target is not None and min(spreads.values()) <= target:
        assert chosen <= target + 1e-9
    if target is not None and min(spreads.values()) > target:
        assert chosen <= min(spreads.values()) + min_gain + 1e-9


# ----------------------------------------------------------------------------- the planner's ladder


def test_a_starved_ladder_reads_the_rest_of_the_curve_off_the_greedy_path(monkeypatch):
    """When full plans overrun their share of the time (forced here: every sample counts as starved), the
    later budgets are the unit greedy's path points and the chosen budget gets one full plan: valid, and
    no worse than the path's point it was chosen from."""
    from proxlb_opt import check, planner
    from proxlb_opt.planner import make_plan
    from tests.builders import cluster, fast, guest, node

    monkeypatch.setattr(planner, "STARVED_MIN_OVERRUN_S", -10.0)
    monkeypatch.setattr(planner, "STARVED_PACE", 1e9)
    c = cluster([node(n, "64G") for n in "abcdef"],
                [guest(i, "ab"[i % 2], f"{1 + i % 3}G", memory_used=f"{1 + i % 3}G") for i in range(1, 41)])
    result = make_plan(c, fast(time_limit=5.0))
    note = next(n for n in result.notes if n.startswith("max_migrations auto"))
    assert "read off the unit greedy's path" in note
    assert not check.violations(result.problem, result.placement)
    chosen = dict((b, spread) for b, spread, _ in result.budget_choice.sampled)[result.budget_choice.budget]
    assert result.spread_after <= chosen + 1e-6
    assert result.spread_after < check.spread(result.problem, c.guest_node)
