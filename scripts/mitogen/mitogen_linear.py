"""Mitogen for Ansible's linear strategy, loaded from the virtualenv's ansible_mitogen.

The Makefile points ANSIBLE_STRATEGY_PLUGINS at this folder so that `make lab`, `make test`
and `make bench` run their playbooks with Mitogen without knowing where the virtualenv
keeps its site-packages. `make ... MITOGEN=0` runs them with Ansible's own linear strategy.

Plays on the controller alone (`hosts: localhost`) run with Ansible's own linear strategy:
Mitogen gains little there, and molecule's podman driver starts its containers as async
tasks on localhost, whose jobs never finish under Mitogen 0.3.54 (podman_container).
"""

from ansible_mitogen.plugins.strategy.mitogen_linear import Base
from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule as _Mitogen


class StrategyModule(_Mitogen):
    def run(self, iterator, *args, **kwargs):
        hosts = iterator._play.hosts
        if (hosts if isinstance(hosts, list) else [hosts]) == ["localhost"]:
            return Base.run(self, iterator, *args, **kwargs)
        return super().run(iterator, *args, **kwargs)
