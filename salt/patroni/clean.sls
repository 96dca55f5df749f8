{%- from tpldir ~ "/map.jinja" import clusters with context %}
# Takes this minion's members of the pillar's clusters off: units stopped and disabled, configs removed. The data
# stays unless the cluster's pillar says purge: true. Not part of init.sls: apply it on purpose
# (salt pg3 state.apply patroni.clean).
{%- for c in clusters %}

Patroni {{ c.scope }} is gone from this host:
  patroni_debian.absent:
    - version: {{ c.version | json }}
    - cluster: {{ c.cluster | json }}
    - purge: {{ c.purge | json }}
{%- endfor %}
