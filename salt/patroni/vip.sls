{%- from tpldir ~ "/map.jinja" import clusters with context %}
include:
  - patroni.service
{%- for c in clusters if c.vip %}

The VIP of {{ c.scope }} follows its leader:
  patroni_debian.vip_running:
    - version: {{ c.version | json }}
    - cluster: {{ c.cluster | json }}
    - require:
      - patroni_debian: {{ c.running }}
{%- endfor %}
