import pytest

from proxlb_opt.config import Settings, load_settings, settings_from_dict
from proxlb_opt.errors import ConfigError

PROXLB_EXAMPLE = """
proxmox_api:
  hosts: ['virt01.example.com', '10.10.10.10', 'fe01:bad:code::cafe']
  user: root@pam
  pass: crazyPassw0rd!
  ssl_verification: True
  timeout: 10
proxmox_cluster:
  maintenance_nodes: ['virt66.example.com']
  maintenance_nodes_schedule: {duration: 3, pre-migration: 10, schedules: {}}
  ignore_nodes: []
  overprovisioning: True
balancing:
  enable: True
  enforce_affinity: False
  enforce_pinning: False
  parallel: False
  parallel_jobs: 1
  live: True
  with_local_disks: True
  with_conntrack_state: True
  cpu_overcommit: 2.0
  max_node_inflow: 1
  balance_types: ['vm', 'ct']
  max_job_validation: 1800
  memory_threshold: 75
  cpu_threshold: 75
  balanciness: 5
  method: memory
  mode: used
  balance_larger_guests_first: False
  node_resource_reserve:
    defaults: {memory: 4}
    node01: {memory: 6}
  pools:
    dev: {type: affinity}
    de-nbg01-db: {type: anti-affinity, pin: [virt66, virt77], strict: False}
service:
  daemon: True
  enable_ha: True
  schedule: {interval: 12, format: hours}
  delay: {enable: False, time: 1, format: hours}
  log_level: INFO
"""


def test_proxlb_example_loads(tmp_path):
    path = tmp_path / "proxlb.yaml"
    path.write_text(PROXLB_EXAMPLE)
    s = load_settings(path)
    assert s.balanciness == 5 and s.overprovisioning is True
    assert s.maintenance_nodes == ("virt66.example.com",)
    assert s.node_resource_reserve["node01"]["memory"] == 6
    assert s.pools["de-nbg01-db"] == {"strict": False, "type": "anti-affinity", "pin": ("virt66", "virt77")}
    assert s.api.hosts[2] == "fe01:bad:code::cafe"
    assert "crazyPassw0rd" not in repr(s) and "crazyPassw0rd" not in repr(s.api)
    assert s.api.password.reveal() == "crazyPassw0rd!"


def test_maintenance_only_config_needs_no_api():
    s = settings_from_dict({"proxmox_cluster": {"maintenance_nodes": ["pve2"]}})
    assert s.maintenance_nodes == ("pve2",) and s.api is None


@pytest.mark.parametrize("data, message", [
    ({"balancing": {"balanciness_": 3}}, r"balancing\.balanciness_: unknown key \(did you mean balancing\.balanciness\?\)"),
    ({"balancng": {}}, "did you mean balancing"),
    ({"balancing": {"method": "memroy"}}, "did you mean 'memory'"),
    ({"balancing": {"mode": "pressure"}}, "must be one of used, assigned, psi"),
    ({"balancing": {"psi": {"nodes": {}}}}, r"balancing\.psi\.guests: is required"),
    ({"balancing": {"psi": {"nodes": {"memory": {"pressure_full": 1, "pressure_some": 1}}, "guests": {}}}},
     r"psi\.nodes\.memory\.pressure_spikes: is required"),
    ({"proxmox_api": {"hosts": ["h"], "user": "u@pve", "pass": "p", "token_id": "t", "token_secret": "s"}},
     "pass and token_secret are both set"),
    ({"proxmox_cluster": {"maintenance_nodes_schedule": {"schedules": {"pve1": ["Mnday, 8:00"]}}}},
     r"maintenance_nodes_schedule\.schedules\.pve1: cannot read 'Mnday, 8:00'"),
    ({"service": {"delay": {"enable": True, "time": 1, "format": "days"}}}, "service.delay.format: must be one of"),
    ({"solver": {"enabel": True}}, r"solver\.enabel: unknown key \(did you mean solver\.enable\?\)"),
    ({"balancing": {"balanciness": -1}}, "at least 0"),
    ({"balancing": {"parallel": "maybe"}}, "true or false"),
    ({"optimizer": {"max_migrations": -3}}, "max_migrations"),
    ({"optimizer": {"weights": {"memory": 0}}}, "at least one weight"),
    ({"proxmox_api": {"hosts": ["h"], "user": "root@pam"}}, "give either pass"),
    ({"proxmox_api": {"hosts": ["h"], "user": "u@pve", "token_id": "t"}}, "token_secret: is required"),
    ({"proxmox_api": {"hosts": ["h"], "user": "u@pve", "pass_env": "NOPE_NOT_SET"}}, "NOPE_NOT_SET is not set"),
])
def test_bad_config(data, message):
    with pytest.raises(ConfigError, match=message):
        settings_from_dict(data, env={})


def test_secret_from_env_and_file(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text("s3cret\n")
    s = settings_from_dict({"proxmox_api": {"hosts": ["h"], "user": "u@pve", "token_id": "t",
                                            "token_secret_file": str(secret_file)}})
    assert s.api.token_secret.reveal() == "s3cret"
    s = settings_from_dict({"proxmox_api": {"hosts": ["h"], "user": "u@pve", "pass_env": "PW"}}, env={"PW": "x"})
    assert s.api.password.reveal() == "x"


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("balancing: [\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_settings(bad)


def test_defaults_match_proxlb():
    s = Settings()
    assert (s.balanciness, s.cpu_overcommit, s.overprovisioning, s.method, s.mode) == (10.0, 2.0, False, "memory", "used")
    assert (s.enable, s.daemon, s.schedule_seconds, s.delay_seconds, s.enable_ha) == (False, True, 12 * 3600, 0, False)
    assert s.parallel_limit == 1
    assert Settings(parallel=True, parallel_jobs=3).parallel_limit == 3
