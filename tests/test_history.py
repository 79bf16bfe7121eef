"""The service's memory between rounds: cooldown after balancing moves, guests moved by hand left alone."""

from proxlb_opt.history import History, MoveRecord
from proxlb_opt.planner import make_plan
from tests.builders import cluster, fast, guest, node

HOUR = 3600.0


def test_balancing_moves_are_held_for_the_cooldown():
    h = History().after_round({1: "b", 2: "a"}, [MoveRecord(1, "a", "b", 0.0, "balance")], now=0.0, cooldown=HOUR)
    assert 1 in h.held({1: "b", 2: "a"}, now=HOUR / 2, cooldown=HOUR)
    assert h.held({1: "b", 2: "a"}, now=HOUR + 1, cooldown=HOUR) == {}
    # Mandatory moves are not held (they were not for balance), nor a guest that has moved on since.
    m = History().after_round({1: "b"}, [MoveRecord(1, "a", "b", 0.0, "maintenance")], now=0.0, cooldown=HOUR)
    assert m.held({1: "b"}, now=1.0, cooldown=HOUR) == {}
    assert h.held({1: "c"}, now=1.0, cooldown=HOUR) == {}


def test_a_guest_moved_by_hand_is_left_where_the_admin_put_it():
    h = History().after_round({1: "a", 2: "a"}, [], now=0.0, cooldown=HOUR)
    h = h.notice_manual_moves({1: "b", 2: "a"}, now=10.0)
    held = h.held({1: "b", 2: "a"}, now=20.0, cooldown=HOUR)
    assert list(held) == [1] and "moved by hand" in held[1]
    assert h.held({1: "b", 2: "a"}, now=10.0 + HOUR, cooldown=HOUR) == {}


def test_state_round_trips_and_bad_state_is_empty():
    h = History().after_round({1: "b"}, [MoveRecord(1, "a", "b", 5.0, "balance")], now=5.0, cooldown=HOUR)
    assert History.from_dict(h.to_dict()) == h
    assert History.from_dict({"version": 99}) == History()
    assert History.from_dict({"version": 1, "moves": [{"vmid": "x"}]}) == History()
    assert History.from_dict("garbage") == History()


def test_old_records_are_dropped():
    h = History().after_round({1: "b"}, [MoveRecord(1, "a", "b", 0.0, "balance")], now=0.0, cooldown=HOUR)
    later = h.after_round({1: "b"}, [], now=10 * HOUR, cooldown=HOUR)
    assert later.moves == ()


def test_held_guests_stay_unless_they_must_move():
    # g1 and g2 are held; g2 sits on a maintenance node and must leave anyway.
    c = cluster([node("a"), node("b"), node("c", maintenance=True)],
                [guest(1, "a", "16G"), guest(2, "c", "4G"), guest(3, "a", "4G")])
    result = make_plan(c, fast(balanciness=0), held={1: "cooldown", 2: "cooldown"})
    assert result.placement[0] == 0  # held: the best balancing move (the 16G guest) is not made
    assert result.placement[1] != 2  # mandatory: leaves the maintenance node
    assert result.held == {1: "cooldown", 2: "cooldown"}


def test_a_hostile_state_file_gives_an_empty_history(tmp_path):
    from proxlb_opt.service import load_history

    for text in ("[" * 100000, '{"version": 1, "moves": [{"vmid": 1e400, "from": "a", "to": "b", "at": 1, "reason": "x"}]}',
                 '{"version": 1, "moves": [{"vmid": 1, "from": "a", "to": "b", "at": Infinity, "reason": "x"}]}',
                 '{"version": 1, "moves": [{"vmid": 1, "from": "a", "to": "b", "at": 1e400, "reason": "x"}]}',
                 "\udcff", '{"version": 1, "last_seen": {"x": 1}}'):
        path = tmp_path / "state.json"
        path.write_text(text, errors="surrogateescape")
        assert load_history(str(path)).moves == ()
