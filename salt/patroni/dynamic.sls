{%- from tpldir ~ "/map.jinja" import clusters, rollout with context %}
include:
  - patroni.service
{#- not in the orchestration's first phase: a bootstrap is under way, its settings come from this very config #}
{%- for c in clusters if rollout.get("phase") != "first" %}

# bootstrap.dcs applies at the first bootstrap only; later changes in pillar reach the running cluster here.
The live settings of {{ c.scope }} are as declared:
  patroni_debian.dynamic_configured:
    - version: {{ c.version | json }}
    - cluster: {{ c.cluster | json }}
    - require:
      - patroni_debian: Patroni {{ c.scope }} is running and healthy
{%- endfor %}
