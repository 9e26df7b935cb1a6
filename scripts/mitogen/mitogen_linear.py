"""Mitogen for Ansible's linear strategy, loaded from the virtualenv's ansible_mitogen.

The Makefile points ANSIBLE_STRATEGY_PLUGINS at this folder so that `make lab`, `make test`
and `make bench` run their playbooks with Mitogen without knowing where the virtualenv
keeps its site-packages. `make ... MITOGEN=0` runs them with Ansible's own linear strategy.
"""

from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule  # noqa: F401
