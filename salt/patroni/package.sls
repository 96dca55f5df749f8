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

{#- A dry run changes nothing, apt's package lists included: Salt's pkg.installed runs apt-get update in test mode
    (it asks apt for the latest versions, refreshing first), so the prediction reads dpkg alone. #}
PostgreSQL, Patroni and the DCS client are installed:
{%- if opts.get("test") %}
  patroni_debian.packages_installed:
{%- else %}
  pkg.installed:
{%- endif %}
    - pkgs: {{ packages | json }}
    - require:
      - file: Debian's automatic main cluster stays off
