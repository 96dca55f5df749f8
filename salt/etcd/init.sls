{#- The etcd cluster of pillar etcd, the DCS of the Patroni clusters, on the minions pillar etcd:members names:
    Debian's etcd-server with /etc/default/etcd written whole (data in /var/lib/etcd/<cluster>, never the
    package's own one-member cluster), the members started together, then the cluster gated whole.
    Membership changes of a running cluster: salt-run state.orchestrate orch.etcd_member. -#}
{%- set etcd = pillar.get("etcd") %}
{%- set member = etcd is mapping and etcd.get("members") is mapping and grains.id in etcd.get("members") %}
{#- Every minion checks: one that runs a member pillar no longer declares is told so, and changes nothing. #}
Pillar etcd is valid:
  patroni_debian.etcd_pillar_valid: []
{%- if member %}

{#- In a dry run the packages are read from dpkg alone (apt's lists stay as they are) #}
etcd's server and client are installed:
{%- if opts.get("test") %}
  patroni_debian.packages_installed:
{%- else %}
  pkg.installed:
{%- endif %}
    - pkgs: ["etcd-server", "etcd-client"]
    - require:
      - patroni_debian: Pillar etcd is valid

etcd member {{ grains.id }} runs and its cluster is whole:
  patroni_debian.etcd_member_running:
    - require:
      - patroni_debian: Pillar etcd is valid
      - {{ "patroni_debian" if opts.get("test") else "pkg" }}: etcd's server and client are installed
{%- endif %}
