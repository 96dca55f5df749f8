{%- from tpldir ~ "/map.jinja" import clusters, patroni with context %}
# Everything else requires this file: bad pillar, or a DCS that does not answer, fails here, before a package, a
# file or a unit changes. The DCS may be the etcd of pillar etcd on these very members (salt/etcd): it runs
# first, on every member of a rollout at once; on hosts of its own it starts beside this run, and a member that
# runs no etcd member asks for it up to health_timeout seconds.
include:
  - etcd

Pillar patroni is valid:
  patroni_debian.pillar_valid: []
{%- for c in clusters %}

The DCS of {{ c.scope }} answers:
  patroni_debian.dcs_reachable:
    - version: {{ c.version | json }}
    - cluster: {{ c.cluster | json }}
    - wait: {{ patroni.health_timeout }}
    - require:
      - patroni_debian: Pillar patroni is valid
      - sls: etcd
{%- endfor %}
