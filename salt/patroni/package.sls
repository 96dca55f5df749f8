{%- from tpldir ~ "/map.jinja" import packages with context %}
include:
  - patroni.validate

# Before postgresql-<version> is installed: Debian would otherwise create and start <version>/main itself,
# under postgresql@, beside the cluster Patroni must create.
Debian's automatic main cluster stays off:
  file.managed:
    - name: /etc/postgresql-common/createcluster.d/patroni-debian.conf
    - makedirs: True
    - mode: "0644"
    - contents: |
        # Patroni creates its clusters itself (Salt formula patroni)
        create_main_cluster = false
    - require:
      - sls: patroni.validate

PostgreSQL, Patroni and the DCS client are installed:
  pkg.installed:
    - pkgs: {{ packages | json }}
{%- if opts.get("test") %}
    # a dry run changes nothing, apt's package lists included: no apt-get update
    - refresh: False
{%- endif %}
    - require:
      - file: Debian's automatic main cluster stays off
