import json

import numpy as np
import pytest

from proxlb_opt.cluster import cluster_to_dict, cluster_from_dict, load_model, save_model, with_guest, with_placement, without_nodes
from proxlb_opt.errors import ModelError
from tests.builders import cluster, guest, node


def small():
    return cluster([node("a", memory="64G"), node("b", memory="32G", memory_used="10G")],
                   [guest(101, "a", memory="8G", memory_used="6G", tags="plb_affinity_x;plb_ignore_y"),
                    guest(102, "b", memory="4G", type="ct", status="stopped", local_disk=True, disk="10G")])


def test_units_and_defaults():
    c = small()
    assert c.node_mem_mib.tolist() == [65536, 32768]
    assert c.node_mem_used_mib.tolist() == [6144, 10240]  # a: sum of running guests; b: as given
    assert c.guest_mem_used_mib.tolist() == [6144, 4096]  # default used = assigned
    assert c.guest_cpu_used_milli.tolist() == [2000, 2000]
    assert c.guest_tags[0] == ("plb_affinity_x", "plb_ignore_y")
    assert c.guest_is_ct.tolist() == [False, True]
    assert c.guest_running.tolist() == [True, False]
    assert c.node_disk_used_mib.tolist() == [0, 10240]


def test_arrays_are_read_only():
    c = small()
    with pytest.raises(ValueError):
        c.guest_node[0] = 1


def test_roundtrip_yaml_and_json(tmp_path):
    c = small()
    for suffix in (".yaml", ".json"):
        path = tmp_path / f"m{suffix}"
        save_model(c, path)
        again = load_model(path)
        assert cluster_to_dict(again) == cluster_to_dict(c)
    json.loads((tmp_path / "m.json").read_text())


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["guests"].append(dict(d["guests"][0])), "duplicate vmid"),
    (lambda d: d["guests"][0].update(node="zzz"), r"guests\[0\] \(vmid 101\)\.node: unknown node 'zzz'"),
    (lambda d: d["guests"][0].update(memory="-4G"), r"guests\[0\] \(vmid 101\)\.memory"),
    (lambda d: d["nodes"][0].update(memory="lots"), r"nodes\[0\] \(a\)\.memory"),
    (lambda d: d["nodes"].append(dict(d["nodes"][0])), "duplicate node name"),
    (lambda d: d["guests"][0].update(vmid="abc"), r"guests\[0\]\.vmid"),
    (lambda d: d["guests"][0].update(memroy="1G"), "did you mean 'memory'"),
    (lambda d: d.update(version=2), "unsupported model version"),
    (lambda d: d.update(nodes=[]), "nodes: must be a non-empty list"),
    (lambda d: d["guests"][0].update(status="exploded"), "status: must be one of"),
    (lambda d: d["nodes"][0].update(cpus=0), "cpus: must be positive"),
    (lambda d: d.update(ha_rules=[{"rule": "r", "type": "node-affinity", "resources": "vm:101"}]), "nodes: is required"),
])
def test_bad_models_name_field(mutate, message):
    data = cluster_to_dict(small())
    mutate(data)
    with pytest.raises(ModelError, match=message):
        cluster_from_dict(data, source="m.yaml")


def test_file_errors(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("nodes: [\n  - {name: a\n")
    with pytest.raises(ModelError, match="bad.yaml: not valid YAML/JSON at line"):
        load_model(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ModelError, match="expected a mapping"):
        load_model(scalar)


def test_tags_from_pve_string():
    c = cluster([node("a")], [guest(1, "a", tags="plb_Pin_a; web,db")])
    assert c.guest_tags[0] == ("db", "plb_pin_a", "web")


def test_with_placement_moves_usage():
    c = small()
    moved = with_placement(c, np.array([1, 1]))
    assert moved.node_mem_used_mib.tolist() == [0, 16384]
    assert moved.guest_node.tolist() == [1, 1]


def test_without_nodes_drops_guests():
    c = without_nodes(small(), ["b"])
    assert c.node_names == ("a",) and c.guest_vmid.tolist() == [101]


def test_with_guest_counts_new_usage():
    c = with_guest(small(), {"vmid": 900, "node": "a", "memory": "2G"})
    assert c.n_guests == 3 and c.node_mem_used_mib[0] == 6144 + 2048
