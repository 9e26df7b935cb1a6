"""The fleet_address filter: the inventory's address first, then the facts' default
IPv4, never ansible_host; an unknown address is an error that names the host.

Run by `ansible-test units` on the installed collection (tests/test_collection.py)."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.codegraph.ops.plugins.filter.fleet_address import (
    FilterModule,
    fleet_address,
)

FACTS = {"default_ipv4": {"address": "10.1.0.5", "interface": "eth0"}}


def test_the_inventory_address_wins_over_the_facts():
    host = {"inventory_hostname": "app1", "codegraph_fleet_address": "10.2.0.5"}
    assert fleet_address({**host, "ansible_facts": FACTS}) == "10.2.0.5"


def test_the_default_route_address_from_the_facts_otherwise():
    host = {"inventory_hostname": "app1", "ansible_host": "192.0.2.7", "ansible_facts": FACTS}
    assert fleet_address(host) == "10.1.0.5"
    assert fleet_address({**host, "codegraph_fleet_address": ""}) == "10.1.0.5"


@pytest.mark.parametrize(
    "facts", [None, {}, {"default_ipv4": {}}], ids=["not gathered", "no network", "no route"]
)
def test_an_unknown_address_names_the_host_and_never_falls_back_to_ansible_host(facts):
    host = {"inventory_hostname": "app7", "ansible_host": "192.0.2.7"}
    if facts is not None:
        host["ansible_facts"] = facts
    with pytest.raises(AnsibleFilterError, match="app7: its fleet address is not known"):
        fleet_address(host)
    assert fleet_address(host, required=False) == ""


def test_it_takes_a_hosts_variables_not_a_name():
    with pytest.raises(AnsibleFilterError, match="not str"):
        fleet_address("app1")


def test_it_is_registered_under_its_name():
    assert FilterModule().filters()["fleet_address"] is fleet_address
