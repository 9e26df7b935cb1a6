# Copyright: CodeGraph Ops
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
name: fleet_address
short_description: The address the fleet reaches a host on
version_added: 2.0.0
author: CodeGraph Ops
description:
  - The one place every role and template takes another host's address from (the load
    balancer's servers, Prometheus' targets, NATS routes, the service's list of NATS
    servers, the address each host's certificate names).
  - The host's C(codegraph_fleet_address) when the inventory sets it (a host whose fleet
    traffic uses another network than the one Ansible connects on), else the IPv4 address
    of its default route from its facts.
  - Never C(ansible_host), which is where Ansible connects, not where the fleet talks.
  - Fails, naming the host, when neither is known (no variable, and its facts were not
    gathered in this run nor cached).
options:
  _input:
    description: The host's variables, C(hostvars[name]).
    type: dict
    required: true
  required:
    description: Whether an unknown address is an error; if false, an empty string is returned.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: The app hosts' fleet addresses
  ansible.builtin.debug:
    msg: "{{ groups['codegraph'] | map('extract', hostvars) | map('codegraph.ops.fleet_address') }}"
"""

RETURN = r"""
_value:
  description: An IPv4 address or a host name.
  type: string
"""

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError


def fleet_address(host_vars, required=True):
    """codegraph_fleet_address, else the default IPv4 address from the host's facts."""
    if not isinstance(host_vars, Mapping):
        kind = type(host_vars).__name__
        raise AnsibleFilterError(
            f"fleet_address takes a host's variables (hostvars[name]), not {kind}"
        )
    name = host_vars.get("inventory_hostname", "a host")
    explicit = host_vars.get("codegraph_fleet_address")
    if explicit:
        return str(explicit)
    facts = host_vars.get("ansible_facts") or {}
    address = (facts.get("default_ipv4") or {}).get("address")
    if address:
        return str(address)
    if not required:
        return ""
    raise AnsibleFilterError(
        f"{name}: its fleet address is not known: set codegraph_fleet_address for it in the "
        "inventory, or let Ansible reach it to gather its facts (it has no default IPv4 "
        "address in facts of this run or the fact cache)"
    )


class FilterModule:
    """The fleet's addresses."""

    def filters(self):
        return {"fleet_address": fleet_address}
