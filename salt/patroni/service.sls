{%- from tpldir ~ "/map.jinja" import clusters, patroni with context %}
include:
  - patroni.config
{%- for c in clusters %}

# A changed config is reloaded (SIGHUP), never restarted: a restart of the leader's Patroni costs a failover.
Patroni {{ c.scope }} is running and healthy:
  patroni_debian.running:
    - version: "{{ c.version }}"
    - cluster: "{{ c.cluster }}"
    - timeout: {{ patroni.health_timeout }}
    - watch:
      - patroni_debian: Patroni {{ c.scope }} is configured
{%- endfor %}
