{%- from tpldir ~ "/map.jinja" import clusters with context %}
include:
  - patroni.package
  - patroni.program
{%- for c in clusters %}

Patroni {{ c.scope }} is configured:
  patroni_debian.configured:
    - version: "{{ c.version }}"
    - cluster: "{{ c.cluster }}"
    - require:
      - sls: patroni.package
      - sls: patroni.program
{%- endfor %}
