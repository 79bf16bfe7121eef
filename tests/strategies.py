"""Hypothesis strategies: small random clusters with rules, as model-file mappings."""

from __future__ import annotations

from hypothesis import strategies as st

from proxlb_opt.cluster import cluster_from_dict


@st.composite
def cluster_dicts(draw, max_nodes: int = 5, max_guests: int = 14, rules: bool = True,
                  node_memory_gib: tuple[int, ...] = (16, 32, 64)):
    n_nodes = draw(st.integers(2, max_nodes))
    nodes = [{"name": f"n{i}", "cpus": draw(st.sampled_from([4, 8, 16])),
              "memory": f"{draw(st.sampled_from(node_memory_gib))}G", "disk": "500G"} for i in range(n_nodes)]
    n_guests = draw(st.integers(1, max_guests))
    guests = []
    for i in range(n_guests):
        memory_gib = draw(st.sampled_from([1, 2, 4, 6, 8]))
        guest = {"vmid": 100 + i, "node": f"n{draw(st.integers(0, n_nodes - 1))}", "memory": f"{memory_gib}G",
                 "memory_used": f"{draw(st.integers(1, memory_gib * 4)) / 4}G", "cpus": draw(st.sampled_from([1, 2])),
                 "type": draw(st.sampled_from(["vm", "vm", "ct"])),
                 "status": draw(st.sampled_from(["running", "running", "running", "stopped"])),
                 "local_disk": draw(st.booleans()), "disk": f"{draw(st.sampled_from([8, 16, 32]))}G"}
        tags = []
        if rules:
            tags += draw(st.lists(st.sampled_from(["plb_affinity_a", "plb_anti_affinity_x", "plb_anti_affinity_y",
                                                   f"plb_pin_n{draw(st.integers(0, n_nodes - 1))}", "plb_ignore_me"]),
                                  max_size=2, unique=True))
        if tags:
            guest["tags"] = tags
        if rules and draw(st.integers(0, 15)) == 0:
            guest["lock"] = "backup"
        guests.append(guest)
    data = {"version": 1, "cluster": "prop", "nodes": nodes, "guests": guests}
    return data


def build(data):
    return cluster_from_dict(data, source="<hypothesis>")
