"""Reading plan files back (apply --plan): waves as the writer numbers them, and the target cluster check."""

import pytest

from proxlb_opt.apply import check_plan_target, steps_from_plan
from proxlb_opt.cli import _WaveClock
from proxlb_opt.errors import InputError


def _plan(waves, cluster="prod", nodes=("pve1", "pve2")):
    return {"version": 1, "cluster": cluster, "nodes": [{"name": n} for n in nodes],
            "migrations": [{"vmid": 100 + i, "name": f"g{i}", "from": "pve1", "to": "pve2", "wave": w,
                            "seconds": 10.0 * (i + 1)} for i, w in enumerate(waves)]}


def test_waves_from_one_are_read_as_written():
    steps = steps_from_plan(_plan([2, 1, 1]))
    assert [s.wave for s in steps] == [1, 1, 2] and [s.vmid for s in steps] == [101, 102, 100]


def test_files_from_before_count_waves_from_zero_and_keep_their_order():
    steps = steps_from_plan(_plan([1, 0, 0]))
    assert [s.wave for s in steps] == [1, 1, 2] and [s.vmid for s in steps] == [101, 102, 100]


def test_plan_writer_and_reader_agree():
    from dataclasses import replace

    from proxlb_opt.config import Settings
    from proxlb_opt.planner import make_plan
    from proxlb_opt.report import plan_dict
    from tests.builders import cluster, guest, node

    c = cluster([node("a", "32G"), node("b", "32G")], [guest(1 + i, "a", "4G") for i in range(6)])
    data = plan_dict(make_plan(c, replace(Settings(), workers=1, time_limit=2)))
    steps = steps_from_plan(data)
    assert [s.wave for s in steps] == sorted(m["wave"] for m in data["migrations"])
    assert min(s.wave for s in steps) == 1


@pytest.mark.parametrize("bad", [[-1], ["x"]])
def test_bad_waves_are_input_errors(bad):
    with pytest.raises(InputError):
        steps_from_plan(_plan(bad))


def test_the_plan_must_be_for_this_cluster():
    check_plan_target(_plan([1]), "prod", ("pve1", "pve2"), ())
    check_plan_target(_plan([1]), "prod", ("pve1", "pve2", "pve9"), ("pve9",))  # ignored nodes do not count
    with pytest.raises(InputError, match="made for cluster 'prod', but the API answers for cluster 'lab'"):
        check_plan_target(_plan([1]), "lab", ("pve1", "pve2"), ())
    with pytest.raises(InputError, match="not in the plan: pve3; not in the cluster: pve2"):
        check_plan_target(_plan([1]), "prod", ("pve1", "pve3"), ())
    with pytest.raises(InputError, match="names no cluster"):
        check_plan_target({"migrations": []}, "prod", ("pve1",), ())


def test_eta_follows_the_predicted_wave_lengths():
    now = [0.0]
    clock = _WaveClock(steps_from_plan(_plan([1, 1, 2])), clock=lambda: now[0])
    assert clock.eta() == 20.0 + 30.0  # wave 1 takes its longest step (20 s), wave 2 30 s
    clock.start(1)
    now[0] = 5.0
    assert clock.eta() == 15.0 + 30.0 and clock.label() == "wave 1/2, ETA 45 s"
    clock.start(2)
    now[0] = 100.0
    assert clock.eta() == 0.0  # late: never negative
