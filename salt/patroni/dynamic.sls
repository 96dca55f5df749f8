{%- from tpldir ~ "/map.jinja" import clusters with context %}
include:
  - patroni.service
{%- for c in clusters %}

# bootstrap.dcs applies at the first bootstrap only; later changes in pillar reach the running cluster here.
The live settings of {{ c.scope }} are as declared:
  patroni_debian.dynamic_configured:
    - version: "{{ c.version }}"
    - cluster: "{{ c.cluster }}"
    - require:
      - patroni_debian: Patroni {{ c.scope }} is running and healthy
{%- endfor %}
