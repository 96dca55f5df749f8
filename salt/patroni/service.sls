{%- from tpldir ~ "/map.jinja" import clusters, patroni with context %}
include:
  - patroni.config
{%- for c in clusters %}

# Debian's automatic main (or any cluster outside Patroni) is dropped only when pillar says replace_existing.
Patroni {{ c.scope }} has no foreign cluster in its way:
  patroni_debian.no_foreign_cluster:
    - version: {{ c.version | json }}
    - cluster: {{ c.cluster | json }}
    - replace_existing: {{ c.replace_existing | json }}
    - require:
      - patroni_debian: Patroni {{ c.scope }} is configured

# A changed config is reloaded (SIGHUP), never restarted: a restart of the leader's Patroni costs a failover.
{{ c.running }}:
  patroni_debian.running:
    - version: {{ c.version | json }}
    - cluster: {{ c.cluster | json }}
    - timeout: {{ patroni.health_timeout }}
    - ready: {{ c.ready | json }}
    - require:
      - patroni_debian: Patroni {{ c.scope }} has no foreign cluster in its way
    - watch:
      - patroni_debian: Patroni {{ c.scope }} is configured
      # a renewed certificate is read on reload: Patroni's REST API when its serial changed, PostgreSQL on SIGHUP
      - sls: patroni.tls
{%- endfor %}
