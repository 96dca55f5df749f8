{%- from tpldir ~ "/map.jinja" import clusters with context %}
include:
  - patroni.service
{%- for c in clusters if c.dynamic %}

# bootstrap.dcs applies at the first bootstrap only; later changes in pillar reach the running cluster here.
The live settings of {{ c.scope }} are as declared:
  patroni_debian.dynamic_configured:
    - version: {{ c.version | json }}
    - cluster: {{ c.cluster | json }}
    - require:
      - patroni_debian: {{ c.running }}
{%- endfor %}
