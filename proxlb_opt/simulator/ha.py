"""The simulated HA manager's decisions, as pure functions over a state Snapshot.

Owns how PVE's CRM reads HA rules (re-expressed from pve-ha-manager's Rules/NodeAffinity.pm,
Rules/ResourceAffinity.pm and Manager.pm::select_service_node, queue_resource_motion): where a
service may run and where it prefers to, which partners block a migration (negative resource
affinity) or move along with it (positive), and which node the CRM picks when it moves a service
itself. state.py turns the decisions into tasks and HA states; views.py only reports.

What PVE does with a migrate request for an HA guest, and so what the simulator does:

* negative resource affinity with a partner on the target: the `hamigrate` task fails
  (`ha-manager migrate` dies with "cannot migrate resource ..."), the CRM drops the queued
  command, the guest stays;
* positive resource affinity: nothing is refused, the partners are migrated along;
* node affinity (strict, or non-strict with failback): nothing is refused, the migration runs,
  and the CRM's next round moves the guest back onto a node the rule allows (prefers).

Node-affinity rules with `affinity: negative` (PVE 9.2.6) name the nodes to avoid; PVE treats them
as a positive rule over the complement of those nodes, and so does this module.

Where the PVE 9.2 names come from: the negative node-affinity rule is the pve-devel patch series
"negative node affinity rules" (v2; the property is the rule's `affinity`, `positive` by default,
priorities rejected for `negative`); it is not yet in the pve-ha-manager 5.2.0 sources read here,
so its exact API rendering is inferred from that patch. The datacenter `crs` keys are pve-cluster's
(state.CRS_FORMAT) and the per-resource `auto-rebalance` flag is in the 9.2 API schema.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Mapping

from proxlb_opt.cluster import HaRule

if TYPE_CHECKING:  # state.py imports this module; these names are only for annotations
    from proxlb_opt.simulator.state import GuestRec, Snapshot


def active_nodes(snap: Snapshot) -> frozenset[str]:
    """Nodes the CRM may place services on: online and not in HA maintenance (as far as the
    simulated CRM acts on it: see NodeRec.crm_maintenance)."""
    return frozenset(n.name for n in snap.nodes if snap.is_online(n.name) and not n.crm_maintenance)


def node_rules(rules: Iterable[HaRule]) -> dict[int, HaRule]:
    """vmid → its node-affinity rule. Like PVE, rules sharing a resource are all ignored."""
    enabled = [r for r in rules if r.type == "node-affinity" and not r.disabled]
    seen: dict[int, int] = {}
    for rule in enabled:
        for vmid in set(rule.vmids):
            seen[vmid] = seen.get(vmid, 0) + 1
    valid = [r for r in enabled if all(seen[v] == 1 for v in r.vmids)]
    return {vmid: rule for rule in valid for vmid in rule.vmids}


def _priorities(rule: HaRule, all_nodes: Iterable[str]) -> dict[str, int]:
    """node → priority as the CRM compiles a rule; absent nodes are forbidden."""
    if rule.affinity == "negative":
        avoided = {n for n, _ in rule.node_priorities}
        prio = {n: 0 for n in all_nodes if n not in avoided}
        rest = avoided
    else:
        prio = {n: p for n, p in rule.node_priorities}
        rest = {n for n in all_nodes if n not in prio}
    if not rule.strict:
        prio.update({n: -1 for n in rest})  # a non-strict rule still allows every node, last
    return prio


def node_affinity(snap: Snapshot, vmid: int, online: frozenset[str]) -> tuple[frozenset[str], frozenset[str]]:
    """(allowed, preferred) online nodes of a service: every online node when no rule applies."""
    rule = node_rules(snap.ha_rules).get(vmid)
    if rule is None:
        return online, online
    prio = {n: p for n, p in _priorities(rule, (n.name for n in snap.nodes)).items() if n in online}
    if not prio:
        return frozenset(), frozenset()
    top = max(prio.values())
    return frozenset(prio), frozenset(n for n, p in prio.items() if p == top)


def partners(snap: Snapshot, vmid: int) -> tuple[frozenset[int], frozenset[int]]:
    """(together, separate): HA guests in positive resource affinity with `vmid` (overlapping rules
    merged, as PVE does) and those it must stay apart from (including the partners' own)."""
    rules = [r for r in snap.ha_rules if r.type == "resource-affinity" and not r.disabled]
    group = {vmid}
    grown = True
    while grown:  # overlapping positive rules act as one
        grown = False
        for rule in rules:
            if rule.affinity == "positive" and group & set(rule.vmids) and not set(rule.vmids) <= group:
                group |= set(rule.vmids)
                grown = True
    apart = {v for rule in rules if rule.affinity == "negative" and group & set(rule.vmids) for v in rule.vmids}
    managed = {v for v, g in snap.guests.items() if g.ha}
    return frozenset((group - {vmid}) & managed), frozenset((apart - group) & managed)


def _used_nodes(guest: GuestRec) -> tuple[str, ...]:
    return (guest.node, guest.target) if guest.target else (guest.node,)


def blocking(snap: Snapshot, vmid: int, target: str) -> list[int]:
    """Partners in negative affinity that are on `target` and staying there (PVE looks at node and
    migration target together: one on its way in or out does not block)."""
    _, separate = partners(snap, vmid)
    return sorted(v for v in separate if snap.guests[v].node == target and snap.guests[v].target in (None, target))


def comigrating(snap: Snapshot, vmid: int, target: str) -> list[int]:
    """Partners in positive affinity that the CRM moves to `target` along with `vmid`."""
    together, _ = partners(snap, vmid)
    return sorted(v for v in together if target not in _used_nodes(snap.guests[v]))


def _placement_counts(snap: Snapshot, vmid: int, online: frozenset[str]) -> tuple[dict[str, int], set[str]]:
    """Where the partners are: node → number of positive partners (by target while they move),
    and the nodes a negative partner uses."""
    together, separate = partners(snap, vmid)
    counts: dict[str, int] = {}
    for v in together:
        g = snap.guests[v]
        node = g.target or g.node
        if node in online:
            counts[node] = counts.get(node, 0) + 1
    apart = {n for v in separate for n in _used_nodes(snap.guests[v]) if n in online}
    return counts, apart


def select_node(snap: Snapshot, vmid: int, failback: bool) -> str | None:
    """The node the CRM wants a started service on (its own node when it may stay); None: nowhere.

    Follows select_service_node with preference 'none': stay if allowed (and not failing back),
    else the maintenance fallback node, else the current node if preferred, else the best-scored
    preferred node.
    """
    guest = snap.guests[vmid]
    online = active_nodes(snap)
    allowed, preferred = node_affinity(snap, vmid, online)
    if not preferred:
        return None
    together, apart = _placement_counts(snap, vmid, online)
    current = guest.node
    if not failback and current in allowed and (together.get(current) or current not in apart):
        return current
    candidates = set(preferred) - apart
    together = {n: c for n, c in together.items() if n in candidates}
    if together:
        majority = max(sorted(together), key=lambda n: together[n])
        candidates &= {majority}
    if guest.ha_fallback in candidates:
        return guest.ha_fallback
    if current in candidates:
        return current
    if not candidates:
        return None
    scores = _scores(snap, vmid)
    return min(sorted(candidates), key=lambda n: scores[n])


def _scores(snap: Snapshot, vmid: int) -> Mapping[str, float]:
    """Lower is better. `basic` CRS counts HA services per node; `static`/`dynamic` look at memory
    used after placing the guest (a simplification of PVE's TOPSIS-weighted CPU and memory)."""
    guest = snap.guests[vmid]
    if (snap.crs.get("ha") or "basic") == "basic":
        counts = {n.name: 0 for n in snap.nodes}
        for g in snap.guests.values():
            if g.ha and g.vmid != vmid:
                for node in _used_nodes(g):  # a moving service counts on both ends, as in PVE
                    counts[node] += 1
        return counts
    out = {}
    for node in snap.nodes:
        used = snap.usage[node.name].mem_used_mib + (guest.mem_used_mib if node.name != guest.node else 0)
        out[node.name] = used / node.mem_mib if node.mem_mib else float("inf")
    return out
