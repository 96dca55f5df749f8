{%- from tpldir ~ "/map.jinja" import clusters with context %}
include:
  - patroni.package
  - patroni.program
  - patroni.tls
{%- for c in clusters %}

Patroni {{ c.scope }} is configured:
  patroni_debian.configured:
    - version: {{ c.version | json }}
    - cluster: {{ c.cluster | json }}
    - require:
      - sls: patroni.package
      - sls: patroni.program
      - sls: patroni.tls
{%- endfor %}
{%- for c in clusters %}

# The formula's own list of what it runs here: a minion that later loses the cluster from pillar is found by it
# (orch.patroni targets G@patroni_debian_clusters) and leaves the cluster (patroni_debian.leave_undeclared).
This minion's clusters list {{ c.scope }}:
  grains.list_present:
    - name: patroni_debian_clusters
    - value: {{ c.scope | json }}
    - require:
      - patroni_debian: Patroni {{ c.scope }} is configured
{%- endfor %}
